"""structlog set-up: `text` (human, key=value) or `json` (one object per line) on stderr.

Rule: events are named `rebootd.<area>.<event>` and carry key-values, never formatted prose;
`configure` is called once by the entry point and owns structlog's (process-wide) configuration,
the only global state rebootd touches. Nothing else holds a logger at import time for output
decisions. A leaf module: it imports nothing of rebootd.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(
    *,
    fmt: Literal["text", "json"] = "text",
    level: str = "info",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog for the process: timestamps in UTC ISO-8601, level, event, key-values."""
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    if fmt == "json":
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors += [structlog.dev.ConsoleRenderer(colors=False, pad_event_to=0)]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream if stream is not None else sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**initial: object) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to `initial` key-values (e.g. node=...)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(**initial)
    return logger
