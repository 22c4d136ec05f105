"""Serving and scale-out: `trt-restore serve` (FastAPI + uvicorn, a web page, Ray Serve)
and `trt-restore batch` (in-process or Ray Data).

Nothing here imports FastAPI, uvicorn or Ray at import time: install the `serve` extra
(`pip install 'trt-restore[serve]'`) for the service, the `ray` extra for Ray.
"""
from .engine import Engine, EngineConfig  # noqa: F401  (framework-free)

__all__ = ["Engine", "EngineConfig", "create_app", "ServeConfig"]


def __getattr__(name):
    if name in ("create_app", "ServeConfig"):
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
