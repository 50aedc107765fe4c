"""The operator's command-line options: every flag has an environment equivalent and a documented default.

Precedence: a flag on the command line, then its environment variable, then the default. Booleans read from the
environment accept ``1/true/yes/on`` and ``0/false/no/off`` (case-insensitive).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PROVIDERS = ("azure", "local", "none")
"""``--provider`` values: ``azure`` (AKS agent pools), ``local`` (Nodes registered in the API server, for
``kaito dev`` and tests), ``none`` (bring your own nodes: no NodeClaims, no machine controller)."""

DEFAULT_NAMESPACE = "kaito-workspace"
"""Namespace of the operator in ``manifests/`` (upstream Kaito's Helm release namespace)."""
DEFAULT_LEADER_ELECTION_ID = "kaito-operator.kaito.sh"
"""Name of the Lease the replicas compete for."""

FEATURE_GATES: dict[str, bool] = {
    "disableNodeAutoProvisioning": False,
    "webhook": True,
}
"""Known feature gates and their defaults. ``disableNodeAutoProvisioning`` (upstream Kaito's gate): every
Workspace must use existing nodes (same as ``--provider none``). ``webhook``: serve the admission webhook
(same as ``--no-webhook`` when false)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class OptionError(ValueError):
    """A flag or environment value is invalid; the message names it and the fix."""


@dataclass(frozen=True)
class _Opt:
    flag: str
    env: str
    default: Any
    help: str
    kind: str = "str"  # str | int | float | bool | choice
    choices: tuple[str, ...] = ()
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


OPTIONS: tuple[_Opt, ...] = (
    # connection and scope
    _Opt("--kubeconfig", "KUBECONFIG", None, "kubeconfig file; unset: in-cluster service account, then "
         "~/.kube/config", metavar="PATH"),
    _Opt("--context", "KAITO_CONTEXT", None, "kubeconfig context (default: current-context)"),
    _Opt("--watch-namespaces", "WATCH_NAMESPACES", "", "comma-separated namespaces whose Workspaces are "
         "reconciled; empty (default) = all namespaces", metavar="NS[,NS...]"),
    _Opt("--namespace", "POD_NAMESPACE", DEFAULT_NAMESPACE, "namespace the operator runs in: its leader-election "
         "Lease, webhook Service and certificate Secret live there"),
    # provider
    _Opt("--provider", "KAITO_PROVIDER", "none", "node provider for auto-provisioned Workspaces: azure (AKS agent "
         "pools), local (Node objects only: kaito dev and tests, never a real cluster) or none (bring your own "
         "nodes; the safe default)", kind="choice", choices=PROVIDERS),
    _Opt("--azure-subscription-id", "AZURE_SUBSCRIPTION_ID", None, "Azure subscription of the AKS cluster "
         "(--provider azure)"),
    _Opt("--azure-resource-group", "AZURE_RESOURCE_GROUP", None, "resource group of the AKS cluster "
         "(--provider azure)"),
    _Opt("--azure-cluster-name", "AZURE_CLUSTER_NAME", None, "name of the AKS cluster (--provider azure)"),
    _Opt("--local-launch-delay", "KAITO_LOCAL_LAUNCH_DELAY", 0.0, "seconds a local machine takes to appear "
         "(--provider local)", kind="float", metavar="SECONDS"),
    # controllers
    _Opt("--enable-workspace-controller", "KAITO_ENABLE_WORKSPACE_CONTROLLER", True, "run the Workspace "
         "(inference) controller", kind="bool"),
    _Opt("--enable-machine-controller", "KAITO_ENABLE_MACHINE_CONTROLLER", True, "run the NodeClaim (machine) "
         "controller (needs a provider)", kind="bool"),
    _Opt("--enable-tuning-controller", "KAITO_ENABLE_TUNING_CONTROLLER", True, "run the tuning controller "
         "(when present in this build)", kind="bool"),
    # webhook
    _Opt("--webhook", "KAITO_WEBHOOK", True, "serve the validating admission webhook", kind="bool"),
    _Opt("--webhook-bind-address", "WEBHOOK_BIND_ADDRESS", ":9443", "where the webhook listens (HTTPS)",
         metavar="[HOST]:PORT"),
    _Opt("--webhook-cert-dir", "WEBHOOK_CERT_DIR", "/tmp/k8s-webhook-server/serving-certs", "directory of "
         "tls.crt/tls.key; filled from the certificate Secret", metavar="DIR"),
    _Opt("--webhook-service-name", "WEBHOOK_SERVICE_NAME", "kaito-webhook", "Service in --namespace that "
         "fronts the webhook (the certificate's DNS names)"),
    _Opt("--webhook-secret-name", "WEBHOOK_SECRET_NAME", "kaito-webhook-cert", "Secret in --namespace holding "
         "the self-signed CA and serving certificate (created when missing or expiring)"),
    _Opt("--webhook-manage-certs", "WEBHOOK_MANAGE_CERTS", True, "create/rotate the certificate Secret and patch "
         "the caBundle of the webhook configurations; false when cert-manager does it", kind="bool"),
    # manager
    _Opt("--metrics-bind-address", "METRICS_BIND_ADDRESS", ":8080", "where /metrics listens; 0 disables",
         metavar="[HOST]:PORT"),
    _Opt("--health-probe-bind-address", "HEALTH_PROBE_BIND_ADDRESS", ":8081", "where /healthz and /readyz listen;"
         " 0 disables", metavar="[HOST]:PORT"),
    _Opt("--leader-elect", "LEADER_ELECT", False, "campaign for a Lease so that only one replica reconciles (on "
         "in manifests/)", kind="bool"),
    _Opt("--leader-election-id", "LEADER_ELECTION_ID", DEFAULT_LEADER_ELECTION_ID, "name of the Lease"),
    _Opt("--lease-duration", "LEASE_DURATION", 15.0, "seconds a standby waits before taking over an unrenewed "
         "Lease (client-go default 15)", kind="float", metavar="SECONDS"),
    _Opt("--renew-deadline", "RENEW_DEADLINE", 10.0, "seconds the leader keeps retrying renewal before giving up "
         "(client-go default 10)", kind="float", metavar="SECONDS"),
    _Opt("--retry-period", "RETRY_PERIOD", 2.0, "seconds between Lease attempts (client-go default 2)",
         kind="float", metavar="SECONDS"),
    _Opt("--graceful-shutdown-timeout", "GRACEFUL_SHUTDOWN_TIMEOUT", 30.0, "seconds in-flight reconciles get "
         "after SIGTERM (controller-runtime default 30)", kind="float", metavar="SECONDS"),
    # logs and features
    _Opt("--log-format", "LOG_FORMAT", "json", "json (one object per line) or console", kind="choice",
         choices=("json", "console")),
    _Opt("--log-level", "LOG_LEVEL", "info", "debug, info, warning, error or critical", kind="choice",
         choices=("debug", "info", "warning", "error", "critical")),
    _Opt("--feature-gates", "FEATURE_GATES", "", "comma-separated NAME=true|false; known: "
         + ", ".join(f"{k} (default {str(v).lower()})" for k, v in FEATURE_GATES.items()), metavar="GATES"),
)


def _env_value(opt: _Opt, raw: str) -> Any:
    try:
        return _convert(opt, raw)
    except OptionError as exc:
        raise OptionError(f"environment variable {opt.env}: {exc}") from None


def _convert(opt: _Opt, raw: str) -> Any:
    if opt.kind == "bool":
        low = raw.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise OptionError(f"{raw!r} is not a boolean; use true or false")
    if opt.kind == "int":
        try:
            return int(raw)
        except ValueError:
            raise OptionError(f"{raw!r} is not an integer") from None
    if opt.kind == "float":
        try:
            return float(raw)
        except ValueError:
            raise OptionError(f"{raw!r} is not a number of seconds") from None
    if opt.kind == "choice" and raw not in opt.choices:
        raise OptionError(f"{raw!r} is not one of {', '.join(opt.choices)}")
    return raw


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The ``kaito-operator`` parser; defaults come from ``environ`` (default ``os.environ``).

    Raises:
        OptionError: an environment variable holds an invalid value (the message names it).
    """
    env = os.environ if environ is None else environ
    parser = argparse.ArgumentParser(
        prog="kaito-operator",
        description="Kaito's operator: the Workspace, NodeClaim and tuning controllers and the admission webhook "
        "in one kreconcile manager. Every flag can be set by the environment variable shown; a flag wins.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for opt in OPTIONS:
        default = _env_value(opt, env[opt.env]) if opt.env in env and env[opt.env] != "" else opt.default
        help_text = f"{opt.help} [env {opt.env}]"
        if opt.kind == "bool":
            parser.add_argument(opt.flag, dest=opt.dest, default=default, help=help_text,
                                action=argparse.BooleanOptionalAction)
        elif opt.kind == "choice":
            parser.add_argument(opt.flag, dest=opt.dest, default=default, help=help_text, choices=opt.choices)
        else:
            typ: Any = {"int": int, "float": float}.get(opt.kind, str)
            parser.add_argument(opt.flag, dest=opt.dest, default=default, help=help_text, type=typ,
                                metavar=opt.metavar)
    return parser


def parse_feature_gates(spec: str) -> dict[str, bool]:
    """``"a=true,b=false"`` → the known gates with those values applied over :data:`FEATURE_GATES`.

    Raises:
        OptionError: an unknown gate or a value that is not true/false (the message lists the known gates).
    """
    gates = dict(FEATURE_GATES)
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, sep, value = item.partition("=")
        name = name.strip()
        if name not in gates:
            raise OptionError(f"--feature-gates: unknown gate {name!r}; known gates: {', '.join(sorted(gates))}")
        low = value.strip().lower() if sep else "true"
        if low not in _TRUE | _FALSE:
            raise OptionError(f"--feature-gates: {name}={value!r} is not a boolean; use {name}=true or {name}=false")
        gates[name] = low in _TRUE
    return gates


@dataclass(frozen=True)
class OperatorOptions:
    """Validated options (see :data:`OPTIONS` for each field's meaning and default)."""

    kubeconfig: str | None
    context: str | None
    watch_namespaces: tuple[str, ...]
    namespace: str
    provider: str
    azure_subscription_id: str | None
    azure_resource_group: str | None
    azure_cluster_name: str | None
    local_launch_delay: float
    enable_workspace_controller: bool
    enable_machine_controller: bool
    enable_tuning_controller: bool
    webhook: bool
    webhook_bind_address: str
    webhook_cert_dir: str
    webhook_service_name: str
    webhook_secret_name: str
    webhook_manage_certs: bool
    metrics_bind_address: str
    health_probe_bind_address: str
    leader_elect: bool
    leader_election_id: str
    lease_duration: float
    renew_deadline: float
    retry_period: float
    graceful_shutdown_timeout: float
    log_format: str
    log_level: str
    feature_gates: dict[str, bool]


def parse_options(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> OperatorOptions:
    """Parse ``argv`` over ``environ`` and check the combinations.

    Raises:
        OptionError: an invalid environment value, an unknown feature gate, ``--provider azure`` without the
            subscription, resource group and cluster name, or leader-election durations out of order.
        SystemExit: argparse's own errors (unknown flag, bad choice) and ``--help``.
    """
    args = build_parser(environ).parse_args(argv)
    values = vars(args)
    values["watch_namespaces"] = tuple(ns.strip() for ns in (values["watch_namespaces"] or "").split(",") if ns.strip())
    values["feature_gates"] = parse_feature_gates(values["feature_gates"] or "")
    if values["feature_gates"]["disableNodeAutoProvisioning"]:
        values["provider"] = "none"
    if not values["feature_gates"]["webhook"]:
        values["webhook"] = False
    if values["provider"] == "azure":
        missing = [o.flag for o in OPTIONS if o.flag.startswith("--azure-") and not values[o.dest]]
        if missing:
            raise OptionError(f"--provider azure needs {', '.join(missing)} (or their environment variables)")
    durations = values["lease_duration"], values["renew_deadline"], values["retry_period"]
    if values["leader_elect"] and not (durations[0] > durations[1] > 1.2 * durations[2]):
        raise OptionError(
            "leader election needs --lease-duration > --renew-deadline > 1.2 × --retry-period "
            f"(got {values['lease_duration']} / {values['renew_deadline']} / {values['retry_period']})"
        )
    if values["local_launch_delay"] < 0:
        raise OptionError("--local-launch-delay must be >= 0 seconds")
    return OperatorOptions(**values)
