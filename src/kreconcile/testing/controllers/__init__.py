"""LocalCluster's built-in controllers, each a kreconcile controller: Deployment, StatefulSet, Job, endpoints,
the scheduler, the kubelet router, node heartbeats and the Service proxy. ``setup_*`` functions register them
with a :class:`~kreconcile.manager.Manager`; :class:`~kreconcile.testing.localcluster.LocalCluster` wires them all.
"""

from kreconcile.testing.controllers.deployment import DeploymentReconciler, setup_deployment_controller
from kreconcile.testing.controllers.endpoints import EndpointsReconciler, setup_endpoints_controller
from kreconcile.testing.controllers.job import JobReconciler, setup_job_controller
from kreconcile.testing.controllers.node import (
    ClientKubeletBackend,
    KubeletReconciler,
    NodeHeartbeat,
    node_object,
    register_node,
    setup_kubelet_controller,
)
from kreconcile.testing.controllers.scheduling import SchedulerReconciler, setup_scheduler
from kreconcile.testing.controllers.serviceproxy import ServiceProxy, setup_service_proxy
from kreconcile.testing.controllers.statefulset import StatefulSetReconciler, setup_statefulset_controller

__all__ = [
    "ClientKubeletBackend",
    "DeploymentReconciler",
    "EndpointsReconciler",
    "JobReconciler",
    "KubeletReconciler",
    "NodeHeartbeat",
    "SchedulerReconciler",
    "ServiceProxy",
    "StatefulSetReconciler",
    "node_object",
    "register_node",
    "setup_deployment_controller",
    "setup_endpoints_controller",
    "setup_job_controller",
    "setup_kubelet_controller",
    "setup_scheduler",
    "setup_service_proxy",
    "setup_statefulset_controller",
]
