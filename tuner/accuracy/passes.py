"""A trial's accuracy: inherited after a spot check, estimated sequentially, or measured.

The worker's side of accuracy. Three ways, cheapest first (``TrialConfig.accuracy``, set
by the driver's ``AccuracyPlanner``):

- **inherited**: an earlier trial measured the same accuracy key (model file x runtime x
  output-changing knobs). This trial's responses on its first samples (in the fixed
  shuffled order) must equal that trial's byte for byte; then its figure is taken, with
  its source. A mismatch is reported and falls back to a pass of its own.
- **sequential** (search trials): samples in the fixed shuffled order, in growing chunks,
  each chunk a LoadGen accuracy run; after each, the whole-set figure's interval
  (``experiments.sequential``); stop once the verdict against the floor is settled at the
  configured confidence, or the interval is narrow enough, or a point of the study's front
  is as fast and surely more accurate (off the front), or the set is done.
- **measured**: one LoadGen accuracy run over the whole set (promotion and compliant runs
  always; the result that is packed).

The merged accuracy log keeps the dataset's indices as ``qsl_idx``.
"""
from __future__ import annotations

import ctypes
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from experiments import loadgen_logs, sequential
from tuner.accuracy.plan import AccuracyPlan

MEASURED, ESTIMATED, INHERITED = "measured", "estimated", "inherited"


@dataclass
class AccuracyOutcome:
    value: float
    metric: str
    source: str  # measured | estimated | inherited
    samples: int
    low: float | None = None
    high: float | None = None
    good: int | None = None
    extras: dict[str, float] | None = None
    inherited_from: str | None = None
    text: str = ""  # accuracy.txt
    responses: dict[int, bytes] | None = None
    note: str | None = None  # e.g. a spot-check mismatch


def spot_check(respond: Callable, samples: Callable, expected: dict[int, str]) -> list[int]:
    """Dataset indices whose response differs from the expected hex (empty: identical)."""
    bad = []
    for idx, hex_data in expected.items():
        addr, size = respond(samples([idx]))[0]
        if ctypes.string_at(addr, size).hex() != hex_data:
            bad.append(idx)
    return bad


def inherited(plan: AccuracyPlan, checked: int) -> AccuracyOutcome:
    src = plan.inherit
    return AccuracyOutcome(
        src.accuracy, src.metric, INHERITED, checked, src.low, src.high,
        inherited_from=src.source,
        text=f"inherited from {src.source} after an identical spot check on {checked} samples")


def run_chunks(oracle, sut_factory, indices: list[int], work: Path, scenario: str,
               label: str) -> dict[int, bytes]:
    """One LoadGen accuracy run over ``indices`` (dataset indices); responses by dataset index."""
    out_dir = work / label
    with sut_factory(indices) as sut:
        oracle.run(sut, "accuracy", out_dir, scenario)
    by_qsl = loadgen_logs.read_accuracy_log(out_dir / loadgen_logs.ACCURACY)
    return {indices[q]: data for q, data in by_qsl.items()}


def sequential_pass(workload, run: Callable[[list[int], str], dict[int, bytes]], total: int,
                    plan: AccuracyPlan) -> AccuracyOutcome:
    """Chunks in the fixed shuffled order until the verdict is settled (see module doc)."""
    order = sequential.shuffled_order(total).tolist()
    floor, conf, width = plan.floor, float(plan.confidence), float(plan.width)
    reference = plan.reference  # the study's fp32 reference, paired sample by sample
    ref_scores = None
    if reference:
        ref_scores = workload.per_sample({int(i): bytes.fromhex(h)
                                          for i, h in reference.responses.items()})
    front = plan.front  # the study's front so far, and this trial's own speed
    responses: dict[int, bytes] = {}
    done, interval, beaten = 0, None, None
    for n in sequential.chunks(total, int(plan.first_chunk)):
        responses.update(run(order[done:n], f"accuracy_{n}"))
        done = n
        interval = _interval(workload, responses, order[:n], total, conf, ref_scores,
                             reference)
        if sequential.settled(interval, floor, total, width):
            break
        beaten = sequential.dominated_by(interval, front.own, front.points, front.maximize) \
            if front else None
        if beaten:
            break
    score = workload.score(responses)
    whole = done >= total
    off = f"{front.objective} {beaten[0]:g} at {beaten[1]:.5f} was measured" \
        if beaten and not whole else None
    text = score.text if whole else (
        f"{score.metric} estimate {interval.estimate:.5f} [{interval.low:.5f}, "
        f"{interval.high:.5f}] from {done} of {total} samples ({conf:.0%} confidence)"
        + (f"; off the front: {off}" if off else ""))
    return AccuracyOutcome(
        score.value if whole else interval.estimate, score.metric,
        MEASURED if whole else ESTIMATED, done,
        None if whole else interval.low, None if whole else interval.high,
        score.good if whole else None, dict(score.extras), text=text, responses=responses,
        note=f"accuracy estimated: off the study's front ({off})" if off else None)


def _interval(workload, responses, scored: list[int], total: int, conf: float, ref_scores,
              reference) -> sequential.Interval:
    per = workload.per_sample(responses)
    n = len(scored)
    if per is not None and ref_scores is not None and all(i in ref_scores for i in scored):
        diffs = [per[i] - ref_scores[i] for i in scored]
        return sequential.paired(diffs, float(reference.accuracy), total, conf)
    if per is not None and all(v in (0.0, 1.0) for v in per.values()):
        return sequential.wilson(int(sum(per.values())), n, total, conf)

    def score(positions) -> float:
        return workload.score({scored[p]: responses[scored[p]] for p in positions}).value

    return sequential.half_sample(score, n, total, conf)


def accuracy_log(responses: dict[int, bytes]) -> str:
    """The merged LoadGen accuracy log, indexed by dataset index."""
    return json.dumps([{"seq_id": k, "qsl_idx": idx, "data": data.hex()}
                       for k, (idx, data) in enumerate(sorted(responses.items()))])
