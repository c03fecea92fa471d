"""Runtimes behind one interface (see ``backends.base.Backend``), registered by name.

The engine asks for a runtime by the name the config uses and never imports a runtime
module itself, so an absent optional runtime never breaks an import.
"""
from __future__ import annotations

import importlib
from typing import Any

from backends.base import Backend, BackendOptionError, BackendUnavailable

# name -> "module:Class"; modules import their runtime lazily inside ``load``.
_REGISTRY: dict[str, str] = {
    "onnxruntime": "backends.onnxruntime:OnnxRuntimeBackend",
    "litert": "backends.litert:LiteRTBackend",
    "tvm": "backends.tvm:TVMBackend",
    "tensorrt": "backends.tensorrt:TensorRTBackend",
}


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> type[Backend]:
    if name not in _REGISTRY:
        raise KeyError(f"unknown backend {name!r}; known: {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def load(name: str, model_path: str, options: dict[str, Any] | None = None,
         cache_dir: str | None = None) -> Backend:
    backend = get(name)(model_path, options, cache_dir)
    backend.load()
    return backend


def availability() -> dict[str, str | None]:
    """name -> None if this node can run it, else the reason it cannot."""
    return {name: get(name).available() for name in _REGISTRY}


__all__ = ["Backend", "BackendOptionError", "BackendUnavailable", "availability", "get", "load", "names"]
