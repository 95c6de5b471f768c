"""What a run prints on the command line: every step's outcome and what the assets say, not Dagster's bookkeeping.

Dagster logs its own events (step started, input loaded, output handled, ...) at DEBUG, which is also the level of
the events a person waits for: a step's success or failure and the run's. This console logger shows records at
``log_level`` (INFO by default: the assets' own messages, warnings, errors) and, whatever the level, the outcome
events below, one line each. The full event stream stays in Dagster's event log (the UI); set
``loggers: {console: {config: {log_level: DEBUG}}}`` in run config to print all of it here too.
"""
from __future__ import annotations

import logging
import sys

import dagster as dg

# Dagster events shown at any log level: what happened to each step and to the run
OUTCOMES = frozenset({"STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED", "STEP_UP_FOR_RETRY", "RUN_START",
                      "RUN_SUCCESS", "RUN_FAILURE", "RUN_CANCELED", "ASSET_CHECK_EVALUATION"})


def _event_type(record: logging.LogRecord) -> str | None:
    """The Dagster event's type by its enum name (``RUN_SUCCESS``; its stored value is the legacy
    ``PIPELINE_SUCCESS``), or None for a plain log message."""
    event = getattr(record, "dagster_event", None)  # set by Dagster's log manager on event records
    event_type = getattr(event, "event_type", None)
    return getattr(event_type, "name", None)


class OutcomeFilter(logging.Filter):
    """Pass records at or above ``level``, and every outcome event (:data:`OUTCOMES`) whatever its level."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or _event_type(record) in OUTCOMES


class ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS step - message``: the step (or the run) first, without the run id and process id that Dagster's
    default format repeats on every line."""

    def format(self, record: logging.LogRecord) -> str:
        meta = getattr(record, "dagster_meta", None) or {}
        where = meta.get("step_key") or meta.get("job_name") or record.name
        message = meta.get("orig_message") or record.getMessage()
        event = _event_type(record)
        if event in OUTCOMES and event not in ("ASSET_CHECK_EVALUATION",):
            message = f"{event} - {message}"
        level = "" if record.levelno == logging.INFO or event in OUTCOMES else f"{record.levelname} - "
        return f"{self.formatTime(record, '%H:%M:%S')} {where} - {level}{message}{_error_text(record)}"


def _error_text(record: logging.LogRecord) -> str:
    """A failed step's error (the exception, its cause and their user-code frames), which Dagster keeps on the
    event rather than in the message."""
    event = getattr(record, "dagster_event", None)
    error = getattr(getattr(event, "event_specific_data", None), "error", None)
    return f"\n{error.to_string()}" if error is not None and hasattr(error, "to_string") else ""


@dg.logger(
    config_schema={"log_level": dg.Field(str, is_required=False, default_value="INFO",
                                         description="Records at or above this level are printed; step and run "
                                                     "outcomes always are."),
                   "name": dg.Field(str, is_required=False, default_value="cobuy")},
    description="Compact console: the assets' messages and every step's outcome (Dagster's DEBUG bookkeeping "
                "stays in the event log).")
def outcome_console(init_context: dg.InitLoggerContext) -> logging.Logger:
    level = logging.getLevelName(str(init_context.logger_config["log_level"]).upper())
    level = level if isinstance(level, int) else logging.INFO
    log = logging.Logger(init_context.logger_config["name"], level=logging.DEBUG)  # the filter decides
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ConsoleFormatter())
    handler.addFilter(OutcomeFilter(level))
    log.addHandler(handler)
    return log
