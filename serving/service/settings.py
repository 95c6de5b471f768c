"""The service's settings: each from a command-line flag, else an environment variable, else the embedded default
(after ``make demo``, the demo's MLflow under ``data/``). ``python -m serving.service --help`` lists them."""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields
from pathlib import Path


def _data_dir() -> Path:
    return Path(os.environ.get("COBUY_DATA_DIR") or "data").resolve()


def _default_tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{_data_dir() / 'mlflow.db'}"


# (field, environment variable, help); defaults live on the dataclass
HELP = {
    "tracking_uri": ("MLFLOW_TRACKING_URI", "MLflow tracking/registry URI (default: sqlite under COBUY_DATA_DIR, "
                                            "the embedded set-up `make demo` writes)"),
    "model_name": ("COBUY_SERVE_MODEL", "registered model served"),
    "alias": ("COBUY_SERVE_ALIAS", "its alias that names the version served"),
    "host": ("COBUY_SERVE_HOST", "address to listen on"),
    "port": ("COBUY_SERVE_PORT", "port to listen on"),
    "poll_seconds": ("COBUY_SERVE_POLL_S", "how often the alias is read; a move is served within this plus the load"),
    "cache_dir": ("COBUY_SERVE_CACHE", "where versions are downloaded (default: COBUY_DATA_DIR/serving)"),
    "max_cart_items": ("COBUY_SERVE_MAX_CART_ITEMS", "larger carts get 413"),
    "max_k": ("COBUY_SERVE_MAX_K", "largest k a request may ask for"),
    "max_body_bytes": ("COBUY_SERVE_MAX_BODY_BYTES", "larger request bodies get 413"),
    "threads": ("COBUY_SERVE_THREADS", "ONNX Runtime threads per session, and BLAS threads unless "
                                       "OMP_NUM_THREADS is set"),
    "workers": ("COBUY_SERVE_WORKERS", "uvicorn worker processes (each loads the model and follows the alias "
                                       "itself; /metrics is per process)"),
    "related_cache_mb": ("COBUY_SERVE_RELATED_CACHE_MB", "memory for items' related lists kept per process "
                                                         "(made once per item and version; 0: score every request)"),
    "related_warm_s": ("COBUY_SERVE_RELATED_WARM_S", "seconds spent at load making the most-bought items' "
                                                     "related lists"),
    "token": ("COBUY_SERVE_TOKEN", "bearer token required on the API when set (off when empty; /healthz, /readyz, "
                                   "/metrics and the page stay open)"),
    "log_level": ("COBUY_SERVE_LOG_LEVEL", "log level of the JSON request log"),
}


@dataclass
class ServiceSettings:
    """See ``HELP`` (flag, environment variable, meaning) for each field."""

    # what is served
    tracking_uri: str = ""
    model_name: str = "cobuy-serving"
    alias: str = "champion"
    poll_seconds: float = 15.0
    cache_dir: str = ""
    # where
    host: str = "127.0.0.1"
    port: int = 8000
    # limits
    max_cart_items: int = 100  # a cart above it: 413
    max_k: int = 100  # k above it: 422
    max_body_bytes: int = 65536  # a body above it: 413
    threads: int = 1  # per ONNX Runtime session
    workers: int = 1
    related_cache_mb: float = 64.0
    related_warm_s: float = 2.0
    # access and logs
    token: str = ""
    log_level: str = "info"

    def __post_init__(self) -> None:
        self.tracking_uri = self.tracking_uri or _default_tracking_uri()
        self.cache_dir = self.cache_dir or str(_data_dir() / "serving")

    @classmethod
    def parser(cls) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(
            prog="python -m serving.service", description="cobuy's live recommendation service (FastAPI on "
            "uvicorn), answering from MLflow's <model>@<alias>. Each flag falls back to the environment variable "
            "named, then to the default shown.")
        for f in fields(cls):
            env, text = HELP[f.name]
            default = f.default
            shown = {"tracking_uri": _default_tracking_uri(), "cache_dir": str(_data_dir() / "serving"),
                     "token": "(unset: auth off)"}.get(f.name, default)
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=type(default) if default != "" else str,
                           default=None, help=f"{text} [env {env}; default {shown}]")
        return p

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> "ServiceSettings":
        ns = cls.parser().parse_args(argv)
        values = {}
        for f in fields(cls):
            given = getattr(ns, f.name)
            env = os.environ.get(HELP[f.name][0])
            if given is not None:
                values[f.name] = given
            elif env not in (None, "") and f.name != "tracking_uri":  # tracking_uri's env is read in __post_init__
                try:
                    values[f.name] = type(f.default)(env)
                except ValueError:
                    raise SystemExit(f"{HELP[f.name][0]}={env!r}: expected a {type(f.default).__name__} for "
                                     f"--{f.name.replace('_', '-')}") from None
        return cls(**values)
