"""``python -m serving.service [--flags]`` (``make serve``): the service on uvicorn. ``--help`` lists the settings."""
from __future__ import annotations

import logging
import os
import sys

from serving.service.settings import ServiceSettings


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
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, access_log=False,
                log_level="warning", timeout_graceful_shutdown=10)


if __name__ == "__main__":
    main()
