"""A space config -> Optuna suggestions, conditional dimensions, and grid enumeration.

Dimension names as Optuna sees them: the workload's model dims (``width``), ``backend``,
each runtime's knobs prefixed by the runtime (``onnxruntime.intra_op_threads``, suggested
only when that runtime is chosen), and scenario knobs (``batch_size``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

BACKEND = "backend"


@dataclass(frozen=True)
class Dim:
    name: str
    type: str  # categorical | int | float
    choices: tuple = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    when: tuple[tuple[str, tuple], ...] = ()  # (dim name, allowed values)
    role: str = "param"  # model | backend | knob | scenario
    owner: str = ""  # the runtime a knob belongs to

    def active(self, params: Mapping[str, Any]) -> bool:
        return all(name in params and params[name] in allowed for name, allowed in self.when)

    def values(self) -> list:
        """Every value of a discrete dimension (grid enumeration)."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))
        raise ValueError(f"{self.name}: a float dimension has no finite grid")


@dataclass
class TrialParams:
    """One point of the space, split the way a trial needs it."""

    model: dict[str, Any]
    backend: str
    knobs: dict[str, Any]
    scenario: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)


def _allowed(value) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _dim(name: str, spec: Mapping[str, Any], role: str, owner: str = "",
         when: Iterable[tuple[str, tuple]] = ()) -> Dim:
    typ = spec.get("type", "categorical")
    low, high = spec.get("low"), spec.get("high")
    if typ == "int":
        low, high = int(low), int(high)
    return Dim(name=name, type=typ, choices=tuple(spec.get("choices") or ()), low=low,
               high=high, step=spec.get("step"), log=bool(spec.get("log", False)),
               when=tuple(when), role=role, owner=owner)


class SearchSpace:
    def __init__(self, dims: list[Dim]):
        names = [d.name for d in dims]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"search space: duplicate dimension(s) {sorted(dup)}")
        if not dims:
            raise ValueError("search space: no dimensions")
        self.dims = dims

    @classmethod
    def from_config(cls, space: Mapping[str, Any], backends: Mapping[str, Any],
                    scenario: Mapping[str, Any] | None = None) -> "SearchSpace":
        """Build from plain dicts (``OmegaConf.to_container(cfg.space)`` etc.)."""
        dims: list[Dim] = []
        for name, spec in (space.get("model") or {}).items():
            dims.append(_dim(name, spec, "model", when=_when(spec, {})))
        runtimes = list(space.get("backends") or [])
        if not runtimes:
            raise ValueError("space.backends: empty; name at least one runtime")
        dims.append(Dim(BACKEND, "categorical", tuple(runtimes), role="backend"))
        for runtime in runtimes:
            knobs = (backends.get(runtime) or {}).get("knobs") or {}
            local = {k: f"{runtime}.{k}" for k in knobs}  # a knob's `when` names siblings
            for knob, spec in knobs.items():
                when = [(BACKEND, (runtime,))] + list(_when(spec, local))
                dims.append(_dim(f"{runtime}.{knob}", spec, "knob", runtime, when))
        for name, spec in ((scenario or {}).get("knobs") or {}).items():
            dims.append(_dim(name, spec, "scenario", when=_when(spec, {})))
        for name, spec in (space.get("params") or {}).items():
            dims.append(_dim(name, spec, "param", when=_when(spec, {})))
        return cls(dims)

    # --- Optuna ----------------------------------------------------------------
    def suggest(self, trial) -> dict[str, Any]:
        """Ask an Optuna trial for one point, suggesting conditional dims only when active."""
        params: dict[str, Any] = {}
        for dim in self.dims:
            if not dim.active(params):
                continue
            if dim.type == "categorical":
                params[dim.name] = trial.suggest_categorical(dim.name, list(dim.choices))
            elif dim.type == "int":
                params[dim.name] = trial.suggest_int(dim.name, int(dim.low), int(dim.high),
                                                     step=int(dim.step or 1), log=dim.log)
            else:
                params[dim.name] = trial.suggest_float(dim.name, float(dim.low), float(dim.high),
                                                       step=dim.step, log=dim.log)
        return params

    def split(self, params: Mapping[str, Any]) -> TrialParams:
        by_name = {d.name: d for d in self.dims}
        backend = params[BACKEND]
        out = TrialParams({}, backend, {}, {}, dict(params))
        for name, value in params.items():
            dim = by_name.get(name)
            if dim is None:
                raise KeyError(f"parameter {name!r} is not a dimension of this space")
            if dim.role == "model":
                out.model[name] = value
            elif dim.role == "knob" and dim.owner == backend:
                out.knobs[name.split(".", 1)[1]] = value
            elif dim.role in ("scenario", "param"):
                out.scenario[name] = value
        return out

    # --- grid ----------------------------------------------------------------------
    def grid(self) -> list[dict[str, Any]]:
        """Every point of the space (conditional dims expanded only where active)."""
        points: list[dict[str, Any]] = [{}]
        for dim in self.dims:
            nxt = []
            for point in points:
                if dim.active(point):
                    nxt.extend({**point, dim.name: v} for v in dim.values())
                else:
                    nxt.append(point)
            points = nxt
        return points

    def size(self) -> int:
        return len(self.grid())

    def backends(self) -> list[str]:
        return list(next(d for d in self.dims if d.name == BACKEND).choices)


def _when(spec: Mapping[str, Any], local: Mapping[str, str]) -> list[tuple[str, tuple]]:
    return [(local.get(k, k), _allowed(v)) for k, v in (spec.get("when") or {}).items()]


__all__ = ["BACKEND", "Dim", "SearchSpace", "TrialParams"]
