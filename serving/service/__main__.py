"""``python -m serving.service [--flags]`` (``make serve``): the service on uvicorn. ``--help`` lists the settings."""
from __future__ import annotations

import io
import logging
import os
import sys
import threading
import time
from dataclasses import fields

from serving.service.settings import HELP, ServiceSettings


class BatchedStreamHandler(logging.StreamHandler):
    """A ``StreamHandler`` on its own 64 KiB buffer over stderr's file, written every ``FLUSH_SECONDS`` (and at
    exit, and when the buffer fills) rather than once per line: the request log's line per request was a write
    system call per request (stderr writes through under PYTHONUNBUFFERED)."""

    FLUSH_SECONDS = 0.5

    def __init__(self) -> None:
        stream = io.TextIOWrapper(io.BufferedWriter(io.FileIO(os.dup(sys.stderr.fileno()), "w"), 1 << 16),
                                  encoding="utf-8", errors="backslashreplace")
        super().__init__(stream)
        threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)  # under the handler's lock (Handler.handle)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def _flusher(self) -> None:
        while True:
            time.sleep(self.FLUSH_SECONDS)
            self.flush()


def configure_logging(level: str) -> None:
    """JSON lines on stderr, written in batches (:class:`BatchedStreamHandler`; the request log formats its own
    JSON; uvicorn's access log is off)."""
    handler = BatchedStreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("cobuy.serving")
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def main(argv: list[str] | None = None) -> None:
    settings = ServiceSettings.from_args(argv)
    configure_logging(settings.log_level)
    # the event loop gets the interpreter back within 1 ms (not 5) of a background thread taking it (the related
    # lists made after a load, the alias poll): a request waits at most that at each release (BLAS, socket I/O)
    sys.setswitchinterval(0.001)
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
    sys.setswitchinterval(0.001)  # as in main()
    return create_app(settings)


if __name__ == "__main__":
    main()
