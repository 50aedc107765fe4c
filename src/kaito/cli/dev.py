"""kaito dev up [FILES...] / kaito dev down / kaito dev status: the whole of kaito on this machine.

up starts a local cluster (state in ./.kaito/), installs the CRDs, runs the operator with the local provider and
the admission webhook, writes ./.kaito/kubeconfig, applies FILES, shows progress (nodes, pods, model loading) and
prints each ready Workspace's endpoint with ready-to-paste curl lines. It stays up until Ctrl-C (or kaito dev down
from another shell), then stops every process it started.
"""
# The docstring above is plain text, no reStructuredText markup: argparse prints it as the help of `kaito dev`.

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add ``dev`` with its ``up``, ``down`` and ``status`` sub-commands."""
    parser = subparsers.add_parser("dev", help="run kaito locally: cluster + operator + real CPU inference",
                                   description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="dev_command", metavar="up|down|status")
    state = {"type": Path, "default": Path(".kaito"), "help": "state directory (default ./.kaito)"}

    up = sub.add_parser("up", help="start everything and apply FILES; Ctrl-C stops it")
    up.add_argument("files", nargs="*", type=Path, metavar="FILE",
                    help="Workspace YAML files or directories, e.g. examples/inference/smollm2-local.yaml")
    up.add_argument("--state-dir", **state)
    up.add_argument("--launch-delay", type=float, default=2.0,
                    help="seconds a local machine takes to appear (default 2, like a fast cloud)")
    up.add_argument("--metrics-bind-address", default="127.0.0.1:0",
                    help="operator /metrics address (default a free port on 127.0.0.1; see `kaito dev status`)")
    up.add_argument("--operator-arg", action="append", default=[], metavar="FLAG",
                    help="extra kaito-operator flag, repeatable (e.g. --operator-arg=--no-enable-tuning-controller)")
    up.set_defaults(func=_up)

    down = sub.add_parser("down", help="stop the running `kaito dev up`")
    down.add_argument("--state-dir", **state)
    down.add_argument("--purge", action="store_true", help="also delete the state directory (all objects)")
    down.set_defaults(func=_down)

    status = sub.add_parser("status", help="is it running; kubeconfig, metrics URL, workspaces and endpoints")
    status.add_argument("--state-dir", **state)
    status.set_defaults(func=_status)
    parser.set_defaults(func=lambda _a: (parser.print_help(), 2)[1])


def _up(args: argparse.Namespace) -> int:
    from kaito.dev.session import DevSession, run_until_signal

    session = DevSession(files=args.files, state_dir=args.state_dir, launch_delay=args.launch_delay,
                         metrics_address=args.metrics_bind_address, operator_args=args.operator_arg)
    return run_until_signal(session)


def _down(args: argparse.Namespace) -> int:
    from kaito.dev.session import down

    return down(args.state_dir, purge=args.purge)


def _status(args: argparse.Namespace) -> int:
    from kaito.dev.session import status

    return status(args.state_dir)
