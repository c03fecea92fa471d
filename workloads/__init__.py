"""Workloads: model family + dataset + accuracy metric, created from their config by name."""
from __future__ import annotations

import importlib
from typing import Any

from workloads.base import Variant, Workload

_REGISTRY: dict[str, str] = {
    "digits": "workloads.digits:DigitsWorkload",
    "imagenet": "workloads.imagenet:ImagenetWorkload",
}


def names() -> list[str]:
    return list(_REGISTRY)


def create(cfg: dict[str, Any], cache_dir: str | None = None) -> Workload:
    """``cfg`` is the workload config: ``{"name": "digits", ...kwargs}``."""
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in _REGISTRY:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(_REGISTRY)}")
    module, cls = _REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)(cache_dir=cache_dir, **cfg)


__all__ = ["Variant", "Workload", "create", "names"]
