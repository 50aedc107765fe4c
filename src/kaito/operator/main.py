"""``kaito-operator``: one kreconcile :class:`~kreconcile.manager.Manager` hosting kaito's controllers and webhook.

What runs (each can be turned off, see ``kaito-operator --help`` and :mod:`kaito.operator.options`):

- the Workspace controller, the NodeClaim (machine) controller with the chosen provider, the tuning controller
  (leader-only when ``--leader-elect``: exactly one replica reconciles);
- the admission webhook over HTTPS on every replica (``--webhook-bind-address``), its certificate made by
  :mod:`kaito.operator.certs`;
- ``/metrics`` (controller-runtime's metric names) on ``--metrics-bind-address`` and ``/healthz`` ``/readyz`` on
  ``--health-probe-bind-address``.

SIGTERM or SIGINT stops it gracefully (``--graceful-shutdown-timeout``); a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from kaito.controllers import setup_controllers
from kaito.operator.certs import ensure_certificate, inject_ca_bundle
from kaito.operator.options import OperatorOptions, OptionError, parse_options
from kaito.provisioner.base import Provider
from kaito.provisioner.local import LocalProvider
from kreconcile import metrics
from kreconcile.client import Client
from kreconcile.clock import Clock
from kreconcile.config import ConfigError, RestConfig, load_config
from kreconcile.healthz import parse_bind_address
from kreconcile.log import configure_logging
from kreconcile.manager import Manager

log = structlog.get_logger("kaito.operator")


class WebhookRunnable:
    """The admission webhook as a manager runnable: on every replica (not leader-only), in the ``webhooks`` group.

    At start, with ``manage_certs``, it makes sure the certificate Secret holds a usable bundle
    (:func:`~kaito.operator.certs.ensure_certificate`), writes it to ``cert_dir`` and injects the CA into kaito's
    webhook configurations; then it serves :class:`~kaito.webhook.server.WebhookServer` until stopped.

    Args:
        client: uncached kreconcile client (Secrets and webhook configurations are read live).
        host, port: bind address; port 0 picks a free one (see ``server.port`` once ready).
        cert_dir: where ``tls.crt``/``tls.key`` are (written here with ``manage_certs``).
        namespace, service_name, secret_name: where the certificate Secret lives and the Service it is for.
        auto_provisioning: False when the operator runs without a provider (every Workspace is BYO).
        registry: Prometheus registry for the webhook's controller-runtime metrics (None: none).
    """

    runnable_group = "webhooks"

    def __init__(
        self,
        client: Any,
        *,
        host: str,
        port: int,
        cert_dir: Path,
        namespace: str,
        service_name: str,
        secret_name: str,
        manage_certs: bool = True,
        auto_provisioning: bool = True,
        registry: Any = None,
    ) -> None:
        self.client = client
        self.host, self.port = host, port
        self.cert_dir = cert_dir
        self.namespace, self.service_name, self.secret_name = namespace, service_name, secret_name
        self.manage_certs = manage_certs
        self.auto_provisioning = auto_provisioning
        self.registry = registry
        self.server: Any = None
        self.ready = asyncio.Event()

    def needs_leader_election(self) -> bool:
        """False: every replica serves admission requests behind the Service."""
        return False

    async def start(self, stop: asyncio.Event) -> None:
        """Settle the certificate, serve until ``stop``."""
        from kaito.webhook.server import WebhookServer

        if self.manage_certs:
            bundle = await ensure_certificate(
                self.client, namespace=self.namespace, secret_name=self.secret_name, service_name=self.service_name
            )
            bundle.write(self.cert_dir)
            patched = await inject_ca_bundle(self.client, bundle.ca)
            if patched:
                log.info("webhook caBundle injected", configurations=patched)
        sub = attach_registry(self.registry) if self.registry is not None else None
        try:
            self.server = WebhookServer(
                cert_dir=self.cert_dir, host=self.host, port=self.port, auto_provisioning=self.auto_provisioning,
                registry=sub,
            )
            await self.server.start()
            self.ready.set()
            log.info("webhook serving", url=self.server.url)
            try:
                await stop.wait()
            finally:
                await self.server.stop()
        finally:
            if sub is not None:
                detach_registry(self.registry, sub)


def attach_registry(parent: CollectorRegistry) -> CollectorRegistry:
    """A fresh registry whose metrics ``parent`` serves (so a component's metrics can be removed again with
    :func:`detach_registry`, and a restarted component in the same process registers its names anew).

    Raises:
        ValueError: a registry with the same metric names is already attached (two webhooks in one process).
    """
    sub = CollectorRegistry(auto_describe=True)
    parent.register(sub)
    return sub


def detach_registry(parent: CollectorRegistry, sub: CollectorRegistry) -> None:
    """Undo :func:`attach_registry` (no error when already detached)."""
    with contextlib.suppress(KeyError):
        parent.unregister(sub)


def make_provider(opts: OperatorOptions, client: Any, *, clock: Clock | None = None) -> Provider | None:
    """The provider ``--provider`` names, or None for ``none`` (bring your own nodes).

    Raises:
        OptionError: ``azure`` is asked for but ``kaito.provisioner.azure`` is not in this build (or its SDK extra
            is not installed: ``pip install 'kaito-py[azure]'``).
    """
    if opts.provider == "none":
        return None
    if opts.provider == "local":
        return LocalProvider(client, launch_delay=opts.local_launch_delay, clock=clock)
    try:
        azure = importlib.import_module("kaito.provisioner.azure")
    except ModuleNotFoundError as exc:
        raise OptionError(
            f"--provider azure is not available: {exc.name} cannot be imported; install kaito-py[azure] "
            "(and use a build that contains kaito.provisioner.azure), or use --provider none with your own nodes"
        ) from None
    provider: Provider = azure.AzureProvider(
        subscription_id=opts.azure_subscription_id,
        resource_group=opts.azure_resource_group,
        cluster_name=opts.azure_cluster_name,
        node_client=client,
    )
    return provider


@dataclass
class Operator:
    """A built operator: the manager, what was registered on it, and the provider (None: BYO)."""

    options: OperatorOptions
    manager: Manager
    provider: Provider | None
    controllers: list[Any] = field(default_factory=list)
    webhook: WebhookRunnable | None = None


def build_operator(
    opts: OperatorOptions,
    config_or_client: RestConfig | Client | None = None,
    *,
    prober: Any = None,
    identity: str | None = None,
    skip_name_validation: bool = False,
    clock: Clock | None = None,
    version: str | None = None,
) -> Operator:
    """The manager with the enabled controllers and the webhook registered, not started.

    Args:
        opts: parsed options.
        config_or_client: connection (default: from ``--kubeconfig``/``--context``, in-cluster, ~/.kube/config).
        prober: the Workspace controller's endpoint prober (default: in-cluster DNS ``<svc>.<ns>.svc``).
        identity: leader-election identity (default ``hostname_uuid``).
        skip_name_validation: several operators in one process (tests of leader election).

    Raises:
        ConfigError: no API server configuration found.
        OptionError / ValueError: invalid options (the message names the flag).
    """
    cfg = config_or_client if config_or_client is not None else load_config(opts.kubeconfig, opts.context)
    try:
        manager = Manager(
            cfg,
            metrics_bind_address=opts.metrics_bind_address,
            health_probe_bind_address=opts.health_probe_bind_address,
            leader_election=opts.leader_elect,
            leader_election_id=opts.leader_election_id,
            leader_election_namespace=opts.namespace,
            lease_duration=opts.lease_duration,
            renew_deadline=opts.renew_deadline,
            retry_period=opts.retry_period,
            graceful_shutdown_timeout=opts.graceful_shutdown_timeout,
            namespaces=list(opts.watch_namespaces) or None,
            identity=identity,
            clock=clock,
        )
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    # with the machine controller off, the provider is still passed: Workspaces keep creating NodeClaims (another
    # process provisions them) and setup_controllers only skips the machine controller
    provider = make_provider(opts, manager.client, clock=clock)
    auto = provider is not None
    controllers = setup_controllers(
        manager,
        provider=provider,
        enable_workspace=opts.enable_workspace_controller,
        enable_machine=opts.enable_machine_controller,
        enable_tuning=opts.enable_tuning_controller,
        prober=prober,
        version=version,
        skip_name_validation=skip_name_validation,
        tuning_template_namespace=opts.namespace,
        clock=clock,
    )
    webhook: WebhookRunnable | None = None
    if opts.webhook:
        bind = parse_bind_address(opts.webhook_bind_address)
        if bind is None:
            raise OptionError("--webhook-bind-address 0 disables nothing: use --no-webhook to turn the webhook off")
        webhook = WebhookRunnable(
            manager.api_reader,
            host=bind[0],
            port=bind[1],
            cert_dir=Path(opts.webhook_cert_dir),
            namespace=opts.namespace,
            service_name=opts.webhook_service_name,
            secret_name=opts.webhook_secret_name,
            manage_certs=opts.webhook_manage_certs,
            auto_provisioning=auto,
            registry=metrics.REGISTRY,
        )
        manager.add(webhook)
        hook = webhook

        async def webhook_ready() -> None:
            if not hook.ready.is_set():
                raise RuntimeError("webhook server not serving yet")

        manager.add_readyz_check("webhook", webhook_ready)
    return Operator(options=opts, manager=manager, provider=provider, controllers=controllers, webhook=webhook)


def run(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Parse options, configure logs, run the operator until SIGTERM/SIGINT; returns the exit code (2: bad
    options or no API server configuration; 1: the manager failed)."""
    try:
        opts = parse_options(argv, environ)
        configure_logging(opts.log_format, opts.log_level)  # type: ignore[arg-type]
        operator = build_operator(opts)
    except (OptionError, ConfigError, ValueError) as exc:
        print(f"kaito-operator: {exc}", file=sys.stderr)
        return 2
    log.info(
        "starting",
        provider=opts.provider,
        controllers=[type(c).__name__ for c in operator.controllers],
        webhook=opts.webhook,
        leader_elect=opts.leader_elect,
        namespaces=list(opts.watch_namespaces) or "all",
        feature_gates=opts.feature_gates,
    )
    try:
        asyncio.run(operator.manager.run_until_signal())
    except Exception as exc:  # the manager's fatal error: report it, exit non-zero
        log.error("operator failed", error=str(exc), exc_info=True)
        return 1
    with contextlib.suppress(Exception):
        log.info("stopped")
    return 0
