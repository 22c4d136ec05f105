"""TensorRT's log in Python `logging` (logger "trt_restore.tensorrt").

TensorRT prints through an ILogger; its stock `trt.Logger` writes to stderr, where the CLI's
progress lines, the server's access log and a kiosk's journal cannot filter or route it. One
ILogger subclass per TensorRT module maps the severities onto logging levels. TensorRT keeps a
raw pointer to the logger it was given, so the instance is cached for the life of the process.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

LOG = logging.getLogger("trt_restore.tensorrt")

LEVELS = {"INTERNAL_ERROR": logging.CRITICAL, "ERROR": logging.ERROR, "WARNING": logging.WARNING,
          "INFO": logging.INFO, "VERBOSE": logging.DEBUG}

_LOGGERS: dict[tuple[int, str], object] = {}


def python_level(severity) -> int:
    """trt.ILogger.Severity (or its name) -> logging level; unknown severities log at INFO."""
    name = getattr(severity, "name", None) or str(severity)
    return LEVELS.get(name.rsplit(".", 1)[-1].upper(), logging.INFO)


def trt_logger(trt, log: logging.Logger = LOG):
    """The ILogger for `trt` (TensorRT, TensorRT-RTX) that forwards to `log`. Modules without
    ILogger (old bindings, test stand-ins) get their stock Logger at WARNING."""
    base = getattr(trt, "ILogger", None)
    if base is None:
        return trt.Logger(trt.Logger.WARNING)
    key = (id(trt), log.name)
    if key not in _LOGGERS:
        class LoggingLogger(base):  # type: ignore[misc, valid-type]
            def __init__(self):
                base.__init__(self)

            def log(self, severity, msg):
                level = python_level(severity)
                if log.isEnabledFor(level):
                    log.log(level, "%s", msg)

        _LOGGERS[key] = LoggingLogger()
    return _LOGGERS[key]


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@contextmanager
def collected_errors(log: logging.Logger = LOG):
    """TensorRT's ERROR messages while the block runs (a failed build's error names the cause)."""
    handler = _Collect()
    log.addHandler(handler)
    try:
        yield handler.messages
    finally:
        log.removeHandler(handler)
