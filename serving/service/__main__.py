"""``python -m serving.service [--flags]`` (``make serve``): the service on uvicorn. ``--help`` lists the settings."""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import fields

from serving.service.settings import HELP, ServiceSettings


def configure_logging(level: str) -> None:
    """JSON lines on stderr (the request log formats its own JSON; uvicorn's access log is off)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("cobuy.serving")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    settings = ServiceSettings.from_args(argv)
    configure_logging(settings.log_level)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads: a request's
        os.environ.setdefault(name, str(settings.threads))  # small products gain nothing from BLAS threads that spin
    import uvicorn

    from serving.service.app import create_app
    from training.tracking import redact_url

    logging.getLogger("cobuy.serving").info(
        f'{{"event": "start", "url": "http://{settings.host}:{settings.port}/", "tracking_uri": '
        f'"{redact_url(settings.tracking_uri)}", "model": "{settings.model_name}@{settings.alias}", '
        f'"auth": {"true" if settings.token else "false"}}}')
    common = {"host": settings.host, "port": settings.port, "access_log": False, "log_level": "warning",
              "timeout_graceful_shutdown": 10}  # uvloop and httptools when installed (uvicorn[standard])
    if settings.workers <= 1:
        uvicorn.run(create_app(settings), **common)
        return
    # worker processes build the app themselves from the environment: hand them every setting through it
    for f in fields(ServiceSettings):
        os.environ[HELP[f.name][0]] = str(getattr(settings, f.name))
    uvicorn.run("serving.service.__main__:app_from_environment", factory=True, workers=settings.workers, **common)


def app_from_environment():
    """The app of one worker process (``--workers`` > 1), from the settings the parent put in the environment."""
    from serving.service.app import create_app

    settings = ServiceSettings.from_args([])
    configure_logging(settings.log_level)
    return create_app(settings)


if __name__ == "__main__":
    main()
