"""Workloads: task plug-ins (model family + dataset + response encoding + metric).

A workload named ``NAME`` is the module ``workloads.NAME`` exposing ``WORKLOAD``, plus
``conf/workload/NAME.yaml``: finding the module is the registration (``names()`` lists
every module that exposes one), so adding a task touches no list here or in the engine.
"""
from __future__ import annotations

import importlib
import pkgutil
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from workloads.base import Metric, Score, Variant, Workload


@lru_cache(maxsize=None)
def names() -> tuple[str, ...]:
    """Every module or package of this package that assigns ``WORKLOAD`` at top level,
    found from the source (importing them all would import training scripts' torch)."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        source = Path(__path__[0]) / (f"{info.name}/__init__.py" if info.ispkg
                                      else f"{info.name}.py")
        if source.is_file() and re.search(r"^WORKLOAD\s*=", source.read_text(), re.M):
            found.append(info.name)
    return tuple(sorted(found))


def workload_class(name: str) -> type[Workload]:
    """The class of workload ``name``, without building it (facts the driver reads)."""
    if not isinstance(name, str) or not name.isidentifier():
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(names())}")
    try:
        module = importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
        module = None
    cls = getattr(module, "WORKLOAD", None)
    if cls is None:
        raise KeyError(f"unknown workload {name!r}; known: {', '.join(names())}")
    return cls


def create(cfg: dict[str, Any], cache_dir: str | None = None) -> Workload:
    """``cfg`` is the workload config: ``{"name": "digits", ...kwargs}``."""
    cfg = dict(cfg)
    cls = workload_class(cfg.pop("name", None))
    return cls(cache_dir=cache_dir, **cfg)


__all__ = ["Metric", "Score", "Variant", "Workload", "create", "names", "workload_class"]
