"""What is known of accuracy: one figure per accuracy key, shared by a fleet's studies.

Accuracy is a property of the model file and the runtime (and the runtime's
output-changing knobs), not of the platform, the thread count or the scenario
(``SearchSpace.accuracy_key``). An ``AccuracyBook`` holds accuracy key -> accuracy for
every key measured so far, on any platform of a fleet or in an earlier run; the front
sampler reads it at every ask (a point whose key is in the book is certain in accuracy)
and adds its own study's measured accuracies to it, so one book handed to every platform
study of a run is how the platforms share what they measured::

    book = AccuracyBook.from_records(earlier_rows, space)      # or AccuracyBook()
    sampler = make_sampler("front", seed, space=space, known_accuracy=book)
    book.add_point(space, params, 0.712, source="run-3/trial-17")  # anything measured elsewhere

Keys are tuples of (dim name, canonical value), so two platforms' spaces (other thread
ranges, other scenario knobs) agree on the keys of the same model and runtime.
"""
from __future__ import annotations

import json
import math
from typing import Any, Iterable, Iterator, Mapping

from search_spaces.space import SearchSpace


class AccuracyBook(Mapping):
    """accuracy key -> accuracy (the mean where a key was measured more than once)."""

    def __init__(self, known: Mapping[tuple, float] | None = None):
        self._sum: dict[tuple, float] = {}
        self._count: dict[tuple, int] = {}
        self._source: dict[tuple, str] = {}
        self._prior: set[tuple] = set()  # keys known only from a prior (``merge(prior=True)``)
        self.version = 0  # bumped at every change (a reader may cache on it)
        if known:
            self.merge(known)

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]], space: SearchSpace,
                     field: str = "accuracy") -> "AccuracyBook":
        """From record dicts (``params`` as a dict or JSON text, ``field`` the accuracy),
        e.g. an earlier run's trials; failed and non-finite ones are left out."""
        book = cls()
        for rec in records:
            value = rec.get(field)
            if rec.get("state") == "failed" or not _finite(value):
                continue
            params = rec.get("params") or {}
            params = json.loads(params) if isinstance(params, str) else params
            where = rec.get("study"), rec.get("trial")
            book.add_point(space, params, float(value),
                           source=None if where == (None, None) else f"{where[0]}#{where[1]}")
        return book

    def add(self, key: tuple, value: float, source: str | None = None) -> None:
        if not _finite(value):
            return
        if key in self._prior:  # a measurement replaces a prior figure, never averages with it
            self._prior.discard(key)
            self._sum.pop(key), self._count.pop(key), self._source.pop(key, None)
        self._sum[key] = self._sum.get(key, 0.0) + float(value)
        self._count[key] = self._count.get(key, 0) + 1
        if source is not None:
            self._source.setdefault(key, source)
        self.version += 1

    def add_point(self, space: SearchSpace, params: Mapping[str, Any], value: float,
                  source: str | None = None) -> tuple:
        key = space.accuracy_key(params)
        self.add(key, value, source)
        return key

    def merge(self, known: Mapping[tuple, float], prior: bool = False,
              source: str | None = None) -> None:
        """Add the keys this book lacks (a figure it holds already wins). ``prior``: the
        figures were not measured in this fleet (e.g. the accuracies a workload ships with
        its models); the first measurement of such a key replaces its figure."""
        for key, value in known.items():
            key = tuple(key)
            if key not in self._sum:
                self.add(key, value, source)
                if prior and key in self._sum:
                    self._prior.add(key)

    def source(self, key: tuple) -> str | None:
        """Where a key's first figure came from, when the adder said."""
        return self._source.get(key)

    def __getitem__(self, key: tuple) -> float:
        return self._sum[key] / self._count[key]

    def __iter__(self) -> Iterator[tuple]:
        return iter(self._sum)

    def __len__(self) -> int:
        return len(self._sum)


def _finite(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value))


__all__ = ["AccuracyBook"]
