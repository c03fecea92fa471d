"""How a trial's accuracy pass runs: the driver-to-worker contract (``TrialConfig.accuracy``).

The driver's ``AccuracyPlanner`` writes it, the worker's ``tuner.accuracy.passes`` reads it.
Plain, picklable data: it crosses Ray inside the ``TrialConfig`` and is saved as JSON in
each record's ``config`` column. ``from_dict`` reads both that form and the untyped dict
older records hold (its ``"from"`` keys are ``source`` here: ``from`` is a keyword).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any


@dataclass
class Inherit:
    """Take an earlier trial's figure for the same accuracy key after an identical spot
    check: this trial's responses on ``spot`` must equal that trial's byte for byte."""

    source: str  # "<study>/<trial>" of the measurement
    accuracy: float
    metric: str | None = None
    low: float | None = None  # the source's interval, when it was an estimate
    high: float | None = None
    spot: dict[str, str] = field(default_factory=dict)  # dataset index -> response, hex


@dataclass
class PairedReference:
    """The study's fp32 reference (``tuner.accuracy.reference``): a sequential pass scores
    its responses against these, a far tighter interval than its accuracy alone."""

    source: str  # "<study>/<trial>"
    accuracy: float
    responses: dict[str, str] = field(default_factory=dict)  # dataset index -> hex


@dataclass
class Front:
    """The study's feasible front so far: a pass surely beaten by one of its points (as
    fast, and more accurate than the pass's interval) stops scoring."""

    objective: str  # the records' column of the speed objective: latency_ms | qps
    maximize: bool
    points: list[list[float]] = field(default_factory=list)  # [speed, sure accuracy]
    own: float | None = None  # this trial's speed: set by the worker after its performance run


@dataclass
class AccuracyPlan:
    """The default (a plan of nothing) scores the whole set: promotion, reproduce, a run
    with ``sequential_accuracy: false``."""

    sequential: bool = False  # chunks in the fixed shuffled order until the verdict settles
    floor: float | None = None  # the verdict's floor (None: settle on the width alone)
    confidence: float = 0.99
    width: float = 0.01  # an interval this narrow settles the pass, whatever the floor
    min_samples: int = 0  # a smaller set is scored whole (cheaper than the chunks)
    first_chunk: int = 64
    front: Front | None = None
    reference: PairedReference | None = None
    inherit: Inherit | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "AccuracyPlan":
        data = dict(data or {})
        parts = {"front": Front, "reference": PairedReference, "inherit": Inherit}
        for name, part in parts.items():
            if data.get(name) is not None:
                data[name] = _typed(part, data[name])
        return _typed(cls, data)


def _typed(cls, data: dict[str, Any]):
    """``cls`` from its dict; an older record's ``from`` is ``source``."""
    data = dict(data)
    if "from" in data:
        data["source"] = data.pop("from")
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})
