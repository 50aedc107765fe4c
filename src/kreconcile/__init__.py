"""kreconcile: controller-runtime for Python asyncio.

Shared informer caches, a de-duplicating rate-limited workqueue, level-based reconcilers with bounded concurrency,
a manager with health probes, Prometheus metrics and Lease leader election. See ``docs/kreconcile.md``; the
building blocks live in one module each (``kreconcile.workqueue``, ``kreconcile.cache``, ...) and the names most
controllers need are re-exported here. ``kreconcile.testing`` holds the API server emulator and test fakes.
"""

from kreconcile import predicates
from kreconcile.builder import Builder
from kreconcile.cache import Cache, ObjectSelector
from kreconcile.cachedclient import CachedClient
from kreconcile.client import Client, Ref
from kreconcile.clock import Clock, FakeClock, RealClock
from kreconcile.conditions import get_condition, is_true, remove_condition, set_condition
from kreconcile.config import RestConfig, load_config
from kreconcile.controller import CacheSyncTimeoutError, Controller, ReconcileTimeoutError
from kreconcile.errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    Invalid,
    NotFound,
    ServerError,
    TooManyRequests,
    UnsupportedMediaType,
    ignore_not_found,
)
from kreconcile.events import EventRecorder
from kreconcile.finalizers import add_finalizer, has_finalizer, remove_finalizer
from kreconcile.gvk import GVK, GVR
from kreconcile.handler import EnqueueRequestForObject, EnqueueRequestForOwner, EnqueueRequestsFromMapFunc
from kreconcile.informer import SharedInformer
from kreconcile.labels import Selector, parse_selector, selector_from_dict
from kreconcile.leaderelection import LeaderElectionConfig, LeaderElectionLost
from kreconcile.log import configure_logging, get_logger
from kreconcile.manager import Manager, RunnableFunc
from kreconcile.ownerrefs import AlreadyOwnedError, get_controller_of, set_controller_reference, set_owner_reference
from kreconcile.ratelimiter import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    default_controller_rate_limiter,
)
from kreconcile.reconcile import Reconciler, Request, Result, TerminalError
from kreconcile.util import OperationResult, create_or_patch, create_or_update
from kreconcile.workqueue import PRIORITY_LOW, PRIORITY_NORMAL, ShutDown, WorkQueue

__all__ = [
    "GVK",
    "GVR",
    "PRIORITY_LOW",
    "PRIORITY_NORMAL",
    "AlreadyExists",
    "AlreadyOwnedError",
    "ApiError",
    "BadRequest",
    "BucketRateLimiter",
    "Builder",
    "Cache",
    "CacheSyncTimeoutError",
    "CachedClient",
    "Client",
    "Clock",
    "Conflict",
    "Controller",
    "EnqueueRequestForObject",
    "EnqueueRequestForOwner",
    "EnqueueRequestsFromMapFunc",
    "EventRecorder",
    "Expired",
    "FakeClock",
    "Forbidden",
    "Invalid",
    "ItemExponentialFailureRateLimiter",
    "LeaderElectionConfig",
    "LeaderElectionLost",
    "Manager",
    "MaxOfRateLimiter",
    "NotFound",
    "ObjectSelector",
    "OperationResult",
    "RateLimiter",
    "RealClock",
    "ReconcileTimeoutError",
    "Reconciler",
    "Ref",
    "Request",
    "RestConfig",
    "Result",
    "RunnableFunc",
    "Selector",
    "ServerError",
    "SharedInformer",
    "ShutDown",
    "TerminalError",
    "TooManyRequests",
    "UnsupportedMediaType",
    "WorkQueue",
    "add_finalizer",
    "configure_logging",
    "create_or_patch",
    "create_or_update",
    "default_controller_rate_limiter",
    "get_condition",
    "get_controller_of",
    "get_logger",
    "has_finalizer",
    "ignore_not_found",
    "is_true",
    "load_config",
    "parse_selector",
    "predicates",
    "remove_condition",
    "remove_finalizer",
    "selector_from_dict",
    "set_condition",
    "set_controller_reference",
    "set_owner_reference",
]
