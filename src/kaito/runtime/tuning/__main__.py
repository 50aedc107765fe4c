"""``python -m kaito.runtime.tuning --config FILE [--data-dir /mnt/data] [--output-dir DIR] [--model DIR]
[--push-image REF --push-docker-config FILE]``.

The tuning Job's main container. With ``--push-image`` (the Workspace's ``tuning.output.image``) the adapter is
pushed as an OCI artifact once training succeeded; the registry and the push secret are checked *before* training,
so a wrong secret costs seconds, not a training run. Exit codes (the tuning controller maps them to condition
reasons):

=====  ==============================================================
0      the adapter and the completion marker are written (and pushed)
1      training failed (e.g. out of memory); see the log
2      the config is invalid (or bad command-line arguments)
3      the dataset is missing, empty or malformed
4      the base model could not be found or loaded
5      the output image cannot be pushed (registry unreachable, secret rejected)
=====  ==============================================================

On every failure after the config was read, :data:`FAILURE_MARKER` is written into the output dir with the error,
so a push sidecar waiting for the completion marker (``oci push --wait-for ... --abort-if ...``) stops too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:  # pragma: no cover
    from kaito.runtime.tuning.config import TuningConfig

EXIT_OK = 0
EXIT_TRAINING_FAILED = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_MODEL = 4
EXIT_PUSH = 5

FAILURE_MARKER = "fine_tuning_failed.txt"
"""Written into the output dir when the job fails (JSON: exit code, event, error)."""


def _configure_logging() -> None:
    # One JSON object per line on stderr: what `kubectl logs` shows and the controller's log tail quotes.
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    # "Loading weights" progress bars are noise in pod logs (read by transformers when it is imported later).
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m kaito.runtime.tuning", description="Kaito LoRA/QLoRA tuning job")
    p.add_argument("--config", required=True, help="training_config.yaml (the ConfigMap mounted at /mnt/config)")
    p.add_argument("--data-dir", default="/mnt/data", help="where the dataset files are (default /mnt/data)")
    p.add_argument("--output-dir", help="overrides TrainingArguments.output_dir (where the adapter is written)")
    p.add_argument(
        "--model",
        help="base model directory, or the CPU preset's name smollm2-135m-instruct; overrides "
        "ModelConfig.pretrained_model_name_or_path",
    )
    p.add_argument("--method", choices=("lora", "qlora"), help="enforce the Workspace's tuning.method on the config")
    p.add_argument("--metrics-port", type=int, default=5000, help="/metrics port; -1 disables (default 5000)")
    p.add_argument("--metrics-host", default="0.0.0.0", help="bind address of the metrics server")
    p.add_argument("--push-image", help="push the adapter to this OCI reference after training (output.image)")
    p.add_argument("--push-docker-config", help="docker config.json with the registry credentials (imagePushSecret)")
    p.add_argument("--push-plain-http", action="store_true", help="HTTP registry (localhost only)")
    p.add_argument("--model-name", help="sh.kaito.model.name annotation of the pushed image (default: --model's name)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, set up JSON logging on stderr and :func:`run` the job; returns the exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging()
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the tuning job for parsed ``args`` with the caller's logging setup; returns the exit code (module
    docstring). Every failure is logged as one event (``tuning.config_invalid``, ``tuning.dataset_invalid``,
    ``tuning.model_unavailable``, ``tuning.push_failed``, ``tuning.failed``) whose ``error`` says what to fix."""
    log = structlog.get_logger("kaito.runtime.tuning")

    from kaito.runtime.tuning.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, output_dir=args.output_dir, method=args.method)
    except ConfigError as e:
        log.error("tuning.config_invalid", error=str(e))
        return EXIT_CONFIG
    out = Path(cfg.training.output_dir or ".")
    code, event, error = _train_and_push(args, cfg)
    if code != EXIT_OK:
        if code != EXIT_TRAINING_FAILED:  # a training failure was logged with its traceback where it was caught
            log.error(event, error=error)
        try:
            out.mkdir(parents=True, exist_ok=True)
            (out / FAILURE_MARKER).write_text(json.dumps({"exit_code": code, "event": event, "error": error}) + "\n")
        except OSError as e:
            log.warning("tuning.failure_marker_unwritable", path=str(out / FAILURE_MARKER), error=str(e))
    return code


def _train_and_push(args: argparse.Namespace, cfg: TuningConfig) -> tuple[int, str, str]:
    from kaito.runtime import oci
    from kaito.runtime.tuning.datasets import DatasetError
    from kaito.runtime.tuning.progress import TuningMetrics, serve_metrics
    from kaito.runtime.tuning.trainer import ADAPTER_FILES, ModelLoadError, resolve_model, run_tuning

    log = structlog.get_logger("kaito.runtime.tuning")
    out = Path(cfg.training.output_dir or ".")
    (out / FAILURE_MARKER).unlink(missing_ok=True)
    try:
        model_dir = resolve_model(args.model, cfg)
    except ModelLoadError as e:
        return EXIT_MODEL, "tuning.model_unavailable", str(e)
    push_ref = None
    if args.push_image:
        try:
            push_ref = oci.parse_reference(args.push_image)
            docker_config = oci.load_docker_config(args.push_docker_config) if args.push_docker_config else {}
            oci.check_access(
                push_ref,
                oci.credentials_for(docker_config, push_ref.registry),
                plain_http=args.push_plain_http,
                push=True,
            )
        except ValueError as e:
            return EXIT_CONFIG, "tuning.config_invalid", f"--push-image: {e}"
        except oci.OCIError as e:
            return EXIT_PUSH, "tuning.push_failed", str(e)

    metrics = TuningMetrics()
    server = None
    if args.metrics_port >= 0:
        server, port = serve_metrics(metrics, args.metrics_port, args.metrics_host)
        log.info("tuning.metrics_serving", host=args.metrics_host, port=port)
    try:
        result = run_tuning(cfg, model_dir=model_dir, data_dir=args.data_dir, metrics=metrics)
    except DatasetError as e:
        return EXIT_DATA, "tuning.dataset_invalid", str(e)
    except ModelLoadError as e:
        return EXIT_MODEL, "tuning.model_unavailable", str(e)
    except Exception as e:  # anything else is a training failure: report it and exit non-zero
        log.exception("tuning.failed", error=f"{type(e).__name__}: {e}")
        return EXIT_TRAINING_FAILED, "tuning.failed", f"{type(e).__name__}: {e}"
    finally:
        if server is not None:
            server.shutdown()
    if push_ref is not None:
        try:
            pushed = oci.push(
                result.output_dir,
                args.push_image,
                docker_config=args.push_docker_config,
                model_name=args.model_name or Path(str(args.model or model_dir)).name,
                files=ADAPTER_FILES,
                plain_http=args.push_plain_http,
            )
        except (ValueError, oci.OCIError) as e:
            return EXIT_PUSH, "tuning.push_failed", str(e)
        log.info("tuning.pushed", image=pushed.reference, digest=pushed.digest)
    return EXIT_OK, "tuning.completed", ""


if __name__ == "__main__":
    sys.exit(main())
