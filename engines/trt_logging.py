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


FAILED_ALLOCATION = 5  # nvinfer1::ErrorCode::kFAILED_ALLOCATION (10.3 and 11.1 headers)


def _code(value) -> int:
    return int(getattr(value, "value", value))


def error_recorder(trt):
    """An IErrorRecorder for an execution context that keeps the codes of the errors reported
    during one call (`codes`, `clear()`), so an out-of-memory error inside execute_async_v3 is
    classified by its code (kFAILED_ALLOCATION), not by a message's wording. None for modules
    without IErrorRecorder (old bindings)."""
    base = getattr(trt, "IErrorRecorder", None)
    if base is None:
        return None

    class Recorder(base):  # type: ignore[misc, valid-type]
        def __init__(self):
            base.__init__(self)
            self.errors: list[tuple[int, str]] = []

        @property
        def codes(self) -> list[int]:
            return [code for code, _ in self.errors]

        def report_error(self, val, desc):
            self.errors.append((_code(val), str(desc)))
            LOG.error("%s", desc)
            return False  # do not abort the process: the caller decides

        def num_errors(self):
            return len(self.errors)

        def get_error_code(self, idx):
            return self.errors[idx][0]

        def get_error_desc(self, idx):
            return self.errors[idx][1]

        def has_overflowed(self):
            return False

        def clear(self):
            self.errors.clear()

    return Recorder()
