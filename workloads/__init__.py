"""Workloads: a dataset plus a model family, each of one task (``workloads/tasks/``).

A workload named ``NAME`` is one entry of ``REGISTRY`` (the module that exposes its class
as ``WORKLOAD``) plus ``conf/workload/NAME.yaml``; the engine names none of them.
``tests/test_workloads.py`` checks that the registry and ``conf/workload/`` agree.
"""
from __future__ import annotations

import importlib
from typing import Any

from workloads.base import Metric, Score, Variant, Workload

#: every workload: its name (its conf/workload/<name>.yaml) -> the module exposing WORKLOAD.
#: Imported only when asked for, so listing names costs nothing.
REGISTRY: dict[str, str] = {
    "digits": "workloads.digits",                   # classification, synthetic (default)
    "imagenet": "workloads.imagenet",               # classification, bring your own
    "digit_canvases": "workloads.digit_canvases",   # detection, synthetic
    "coco": "workloads.coco",                       # detection, bring your own
    "click_logs": "workloads.click_logs",           # recommendation, synthetic
    "criteo": "workloads.criteo",                   # recommendation, bring your own
}


def names() -> tuple[str, ...]:
    return tuple(sorted(REGISTRY))


def workload_class(name: str) -> type[Workload]:
    """The class of workload ``name``, without building it (facts the driver reads)."""
    module = REGISTRY.get(name) if isinstance(name, str) else None
    if module is None:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(names())}")
    return importlib.import_module(module).WORKLOAD


def create(cfg: dict[str, Any], cache_dir: str | None = None) -> Workload:
    """``cfg`` is the workload config: ``{"name": "digits", ...kwargs}``."""
    cfg = dict(cfg)
    cls = workload_class(cfg.pop("name", None))
    problem = cls.declared_problem()
    if problem:
        raise ValueError(problem)
    return cls(cache_dir=cache_dir, **cfg)


__all__ = ["Metric", "REGISTRY", "Score", "Variant", "Workload", "create", "names",
           "workload_class"]
