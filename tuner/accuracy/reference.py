"""A study's fp32 reference: one rule for the floor and the paired comparison.

The reference is the best whole-set fp32 accuracy recorded in the study (MLPerf's "the
reference accuracy"): a figure of a row that did not fail, not an estimate (no interval),
whose precision is fp32. The floor is a fraction of that figure (``AccuracyFloor``); a
sequential pass pairs its responses with those of the best such row whose own responses are
on disk (a pass this run measured, not a replayed or inherited figure).

The precision comes from what the worker measured (the variant's own precision in the
record's ``system``), else the point's parameters (older records), so a space without a
``precision`` dimension (bring-your-own ImageNet) still has a reference.
"""
from __future__ import annotations

import json
from typing import Any


def precision_of(row: dict[str, Any]) -> str | None:
    system = json.loads(row.get("system") or "{}")
    if system.get("precision"):
        return system["precision"]
    return json.loads(row.get("params") or "{}").get("precision")


def is_reference(row: dict[str, Any]) -> bool:
    """A whole-set fp32 figure: what the reference may be."""
    return (row.get("accuracy") is not None and row.get("state") != "failed"
            and row.get("accuracy_low") is None and precision_of(row) == "fp32")


class Fp32Reference:
    """study -> its best whole-set fp32 figure, and the best such row with its responses."""

    def __init__(self) -> None:
        self._best: dict[str, float] = {}
        self._paired: dict[str, dict[str, Any]] = {}

    def observe(self, row: dict[str, Any]) -> None:
        if not is_reference(row):
            return
        study = row["study"]
        self._best[study] = max(self._best.get(study, 0.0), row["accuracy"])
        # its responses are logged: the record of a whole-set pass with a log folder
        if row.get("accuracy_source") == "measured" and row.get("log_dir") \
                and row.get("accuracy_key"):
            paired = self._paired.get(study)
            if paired is None or row["accuracy"] > paired["accuracy"]:
                self._paired[study] = row

    def best(self, study: str) -> float | None:
        return self._best.get(study)

    def paired(self, study: str) -> dict[str, Any] | None:
        """The row whose responses a sequential pass of ``study`` compares its own with."""
        return self._paired.get(study)
