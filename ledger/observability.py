"""Logs and the metrics' process model, for the server and the worker.

Logs. Every line is one JSON object (`LEDGER_LOG_FORMAT=json`, the default) with
`time` (UTC, ISO 8601), `level`, `logger` and `message`, then the fields the code
passed in `extra` (the API's access line: `request_id`, `method`, `route`, `status`,
`duration_ms`, `actor`, `idempotency_key`; a worker round's or an audit's figures),
and `exception` with the traceback when there is one. `text` writes the same as plain
lines for development. A line carries only what the code names: no request or
response body and no header but the two above, so an API key, an Authorization
header, card details or a party's address never reach the logs. A line logged while
a request is served carries that request's `request_id` (`request_context`).

The JSON lines are python-json-logger's (`pythonjsonlogger.json`, 3.1 and later).

`configure_logging(settings)` sets this up for a process (`ledger worker`);
`uvicorn_log_config(settings)` is the same as the dictionary `uvicorn.run(log_config=...)`
applies in the server's process and in each of its workers: uvicorn's startup and
error lines go through the same formatter, and its access log is off (the API's
middleware writes one line per request, with the route template instead of the path).

Metrics. `ledger serve --workers N` runs N processes, each counting the requests it
serves; `prepare_multiprocess_metrics(N)` gives them prometheus_client's multiprocess
directory (`PROMETHEUS_MULTIPROC_DIR`) before they start, so each answers `/metrics`
with the sum over all of them (`ledger.api.metrics`).
"""

from __future__ import annotations

import atexit
import logging
import logging.config
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import pythonjsonlogger.json
from pythonjsonlogger.core import RESERVED_ATTRS

from ledger.config import Settings

#: prometheus_client reads it when it is imported, so it must be set before the
#: server processes start.
MULTIPROC_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: The level of the ledger's own loggers; the rest (libraries) log warnings only, so
#: that no library writes its requests' URLs at INFO.
LEDGER_LEVEL = "INFO"
OTHERS_LEVEL = "WARNING"

#: What every LogRecord has: the rest of its attributes are the `extra` fields.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's colored copy of the message
    "taskName",
}

_REQUEST_ID: ContextVar[str | None] = ContextVar("ledger_request_id", default=None)


@contextmanager
def request_context(request_id: str) -> Iterator[None]:
    """Lines logged inside the block (and in the threads it starts) carry `request_id`."""
    token = _REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        _REQUEST_ID.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds the request being served (`request_context`) to a line that names none."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _REQUEST_ID.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True


def _time(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """A line's fields: time, level, logger, message, the `extra` fields, the exception."""
    fields: dict[str, Any] = {
        "time": _time(record),
        "level": record.levelname,
        "logger": record.name,
        "message": record.getMessage(),
    }
    for name, value in record.__dict__.items():
        if name not in _RECORD_ATTRIBUTES and not name.startswith("_") and name not in fields:
            fields[name] = value
    return fields


class JsonFormatter(pythonjsonlogger.json.JsonFormatter):
    """One JSON object per line: `time`, `level`, `logger`, `message`, the `extra`
    fields, `exception` (values JSON cannot hold are written as text)."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "exc_info": "exception", "stack_info": "stack"},
            timestamp="time",
            json_ensure_ascii=False,
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's colored copy of the message
        )


class TextFormatter(logging.Formatter):
    """`time level logger message key=value ...`, for a developer's terminal."""

    def format(self, record: logging.LogRecord) -> str:
        fields = record_fields(record)
        head = [fields.pop(name) for name in ("time", "level", "logger", "message")]
        line = " ".join(str(part) for part in head)
        if fields:
            line += " " + " ".join(f"{name}={value}" for name, value in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


FORMATTERS: dict[str, type[logging.Formatter]] = {"json": JsonFormatter, "text": TextFormatter}


def logging_config(log_format: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` dictionary: every line to stderr in `log_format`
    (`json` or `text`); uvicorn's error log through it, its access log off."""
    formatter = {"()": f"{__name__}.{FORMATTERS[log_format].__name__}"}
    return {
        "version": 1,
        "disable_existing_loggers": False,  # the ledger's loggers exist from import time
        "filters": {"request": {"()": f"{__name__}.{RequestIdFilter.__name__}"}},
        # uvicorn writes "use_colors" into formatters of these names when told to; its
        # access formatter is unused (no handler) and kept only for that.
        "formatters": {"default": formatter, "access": formatter},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            # Propagating to the root's handler, also where uvicorn's own configuration
            # (which stops "uvicorn" propagating) was applied before in this process.
            "ledger": {"level": LEDGER_LEVEL, "propagate": True},
            "uvicorn": {"level": "INFO", "propagate": True},
            "uvicorn.error": {"level": "INFO", "propagate": True},
            # Off: the API's middleware logs each request with its route template
            # (uvicorn's line has the raw path, ids included) and its actor.
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "CRITICAL"},
        },
        "root": {"handlers": ["default"], "level": OTHERS_LEVEL},
    }


def uvicorn_log_config(settings: Settings) -> dict[str, Any]:
    """What `uvicorn.run(log_config=...)` applies in the server process and in each worker."""
    return logging_config(settings.log_format)


def configure_logging(settings: Settings) -> None:
    """Log this process's lines as `settings.log_format` says (`ledger worker`)."""
    logging.config.dictConfig(logging_config(settings.log_format))


def prepare_multiprocess_metrics(workers: int) -> None:
    """Before uvicorn starts `workers` server processes: give them a multiprocess
    directory, so each writes its counts there and any of them answers `/metrics` with
    the sum. One process needs none (its own registry serves). An operator's
    `PROMETHEUS_MULTIPROC_DIR` is kept as it is (made if missing): emptying it between
    runs is then theirs, as prometheus_client asks. Otherwise a fresh, empty temporary
    directory is made and removed when this process (the supervisor) exits."""
    if workers <= 1:
        return
    chosen = os.environ.get(MULTIPROC_DIR)
    if chosen:
        os.makedirs(chosen, exist_ok=True)
        return
    made = tempfile.mkdtemp(prefix="ledger-metrics-")
    os.environ[MULTIPROC_DIR] = made  # the workers, spawned after this, inherit it
    atexit.register(shutil.rmtree, made, ignore_errors=True)
