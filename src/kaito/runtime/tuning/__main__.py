"""``python -m kaito.runtime.tuning --config FILE [--data-dir /mnt/data] [--output-dir DIR] [--model DIR]``.

The tuning Job's main container. Exit codes (the tuning controller maps them to condition reasons):

=====  ==============================================================
0      the adapter and the completion marker are written
1      training failed (e.g. out of memory); see the log
2      the config is invalid (or bad command-line arguments)
3      the dataset is missing, empty or malformed
4      the base model could not be found or loaded
=====  ==============================================================
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import structlog

EXIT_OK = 0
EXIT_TRAINING_FAILED = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_MODEL = 4


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
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, set up JSON logging on stderr and :func:`run` the job; returns the exit code."""
    args = build_parser().parse_args(argv)
    _configure_logging()
    return run(args)


def run(args: argparse.Namespace) -> int:
    """Run the tuning job for parsed ``args`` with the caller's logging setup; returns the exit code (module
    docstring). Every failure is logged as one event (``tuning.config_invalid``, ``tuning.dataset_invalid``,
    ``tuning.model_unavailable``, ``tuning.failed``) whose ``error`` says what to fix."""
    log = structlog.get_logger("kaito.runtime.tuning")

    from kaito.runtime.tuning.config import ConfigError, load_config
    from kaito.runtime.tuning.datasets import DatasetError

    try:
        cfg = load_config(args.config, output_dir=args.output_dir, method=args.method)
    except ConfigError as e:
        log.error("tuning.config_invalid", error=str(e))
        return EXIT_CONFIG

    from kaito.runtime.tuning.progress import TuningMetrics, serve_metrics
    from kaito.runtime.tuning.trainer import ModelLoadError, resolve_model, run_tuning

    metrics = TuningMetrics()
    server = None
    if args.metrics_port >= 0:
        server, port = serve_metrics(metrics, args.metrics_port, args.metrics_host)
        log.info("tuning.metrics_serving", host=args.metrics_host, port=port)
    try:
        model_dir = resolve_model(args.model, cfg)
        run_tuning(cfg, model_dir=model_dir, data_dir=args.data_dir, metrics=metrics)
    except DatasetError as e:
        log.error("tuning.dataset_invalid", error=str(e))
        return EXIT_DATA
    except ModelLoadError as e:
        log.error("tuning.model_unavailable", error=str(e))
        return EXIT_MODEL
    except Exception as e:  # anything else is a training failure: report it and exit non-zero
        log.exception("tuning.failed", error=f"{type(e).__name__}: {e}")
        return EXIT_TRAINING_FAILED
    finally:
        if server is not None:
            server.shutdown()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
