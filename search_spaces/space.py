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
    # Values with an order a search may exploit (widths, resolutions, thread counts): int
    # and float dims always are; a categorical only when its config says `ordered: true`.
    ordered: bool = False
    # Whether the dim can change a model's outputs, hence its accuracy: model dims and the
    # runtime do; scenario knobs and thread counts do not; a runtime knob only when the
    # runtime declares it output-changing (``from_config``'s ``output_changing``).
    affects_accuracy: bool = True

    @property
    def is_ordered(self) -> bool:
        return self.ordered or self.type in ("int", "float")

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
         when: Iterable[tuple[str, tuple]] = (), affects: bool = True) -> Dim:
    typ = spec.get("type", "categorical")
    low, high = spec.get("low"), spec.get("high")
    if typ == "int":
        low, high = int(low), int(high)
    choices = tuple(spec.get("choices") or ())
    ordered = bool(spec.get("ordered", False))
    if ordered and typ == "categorical":
        try:  # an ordered categorical lists its values in order (sorted where comparable)
            choices = tuple(sorted(choices))
        except TypeError:
            pass
    return Dim(name=name, type=typ, choices=choices, low=low,
               high=high, step=spec.get("step"), log=bool(spec.get("log", False)),
               when=tuple(when), role=role, owner=owner, ordered=ordered,
               affects_accuracy=bool(spec.get("affects_accuracy", affects)))


class SearchSpace:
    def __init__(self, dims: list[Dim]):
        names = [d.name for d in dims]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"search space: duplicate dimension(s) {sorted(dup)}")
        if not dims:
            raise ValueError("search space: no dimensions")
        self.dims = dims
        self._points: list[dict[str, Any]] | None = None  # set by `restricted`
        self._names: dict[str, Dim] | None = None

    @classmethod
    def from_config(cls, space: Mapping[str, Any], backends: Mapping[str, Any],
                    scenario: Mapping[str, Any] | None = None,
                    output_changing: Mapping[str, Iterable[str]] | None = None
                    ) -> "SearchSpace":
        """Build from plain dicts (``OmegaConf.to_container(cfg.space)`` etc.).

        ``output_changing``: per runtime, the knobs that can change its outputs (ONNX
        Runtime's ``graph_optimization_level``, LiteRT's XNNPACK switch; not thread
        counts); a runtime's config may say the same as ``output_changing: [...]``, and a
        knob's own spec as ``affects_accuracy: true|false``, which wins. Only those knobs
        join the model dims and the runtime in the accuracy key (``accuracy_key``)."""
        dims: list[Dim] = []
        model = [_dim(name, spec, "model", when=_when(spec, {}))
                 for name, spec in (space.get("model") or {}).items()]
        # a model dim may depend on the runtime (`when: {backend: [onnxruntime]}`: what only
        # that runtime can run): it is suggested after the runtime, the rest before it
        by_runtime = [d for d in model if any(name == BACKEND for name, _ in d.when)]
        dims.extend(d for d in model if d not in by_runtime)
        runtimes = list(space.get("backends") or [])
        if not runtimes:
            raise ValueError("space.backends: empty; name at least one runtime")
        dims.append(Dim(BACKEND, "categorical", tuple(runtimes), role="backend"))
        dims.extend(by_runtime)
        for runtime in runtimes:
            conf = backends.get(runtime) or {}
            knobs = conf.get("knobs") or {}
            changing = set((output_changing or {}).get(runtime, conf.get("output_changing") or ()))
            local = {k: f"{runtime}.{k}" for k in knobs}  # a knob's `when` names siblings
            for knob, spec in knobs.items():
                when = [(BACKEND, (runtime,))] + list(_when(spec, local))
                dims.append(_dim(f"{runtime}.{knob}", spec, "knob", runtime, when,
                                 affects=knob in changing))
        for name, spec in ((scenario or {}).get("knobs") or {}).items():
            dims.append(_dim(name, spec, "scenario", when=_when(spec, {}), affects=False))
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
    def restricted(self, points: Iterable[Mapping[str, Any]]) -> "SearchSpace":
        """The same dimensions, but only these points exist (a replayed table holds fewer
        than the product of its dimensions' values: v2 widths 1.3/1.4 only at 224)."""
        out = SearchSpace(list(self.dims))
        unique: dict[tuple, dict[str, Any]] = {}
        for p in points:
            unique.setdefault(self.key(p), dict(p))
        out._points = list(unique.values())
        return out

    def grid(self) -> list[dict[str, Any]]:
        """Every point of the space (conditional dims expanded only where active)."""
        if self._points is not None:
            return [dict(p) for p in self._points]
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
        """How many distinct points the space holds (ValueError for a float dimension)."""
        return len(self.grid())

    def is_finite(self) -> bool:
        return all(d.type != "float" for d in self.dims)

    def key(self, params: Mapping[str, Any]) -> tuple:
        """The canonical identity of a point: equal for the same point however it was
        spelt (1 vs 1.0 from Parquet JSON, key order, inactive dims left over)."""
        by_name = self._by_name()
        return tuple((name, canonical(params[name])) for name in sorted(params)
                     if name in by_name and by_name[name].active(params))

    def accuracy_key(self, params: Mapping[str, Any]) -> tuple:
        """The identity of a point's accuracy: its active dims that affect accuracy (model
        dims, the runtime, output-changing knobs). Points with equal keys score the same on
        every platform; keys of two platforms' spaces compare by dim name and value."""
        return tuple(kv for kv in self.key(params) if self._by_name()[kv[0]].affects_accuracy)

    def accuracy_dims(self) -> list[Dim]:
        return [d for d in self.dims if d.affects_accuracy]

    def _by_name(self) -> dict[str, Dim]:
        if self._names is None:
            self._names = {d.name: d for d in self.dims}
        return self._names

    def contains(self, params: Mapping[str, Any]) -> bool:
        """Whether ``params`` is exactly one point of this space (every active dim set to
        one of its values, nothing else)."""
        if self._points is not None:
            return self.key(params) in {self.key(p) for p in self._points} and all(
                d.name in params for d in self.dims if d.active(params))
        seen = set()
        for dim in self.dims:
            if not dim.active(params):
                continue
            if dim.name not in params:
                return False
            value = params[dim.name]
            if dim.type == "categorical":
                if canonical(value) not in {canonical(c) for c in dim.choices}:
                    return False
            elif not (float(dim.low) <= float(value) <= float(dim.high)):
                return False
            seen.add(dim.name)
        return seen == set(params)

    def backends(self) -> list[str]:
        return list(next(d for d in self.dims if d.name == BACKEND).choices)


def canonical(value: Any) -> Any:
    """One spelling per value: numbers as floats (bools kept), everything else as text."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return str(value)


def _when(spec: Mapping[str, Any], local: Mapping[str, str]) -> list[tuple[str, tuple]]:
    return [(local.get(k, k), _allowed(v)) for k, v in (spec.get("when") or {}).items()]


__all__ = ["BACKEND", "Dim", "SearchSpace", "TrialParams", "canonical"]
