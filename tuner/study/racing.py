"""What a study measures again, beside what it asks: racing near the front, the drift
canary, and rechecks after a drift. Each re-measurement is a record of its own
(``measured_for``: race | canary | recheck, ``repeat_of``: the configuration's first trial),
pinned to the node that measured the first one, and costs device time.

- **Canary**: each node measures a fixed configuration again every
  ``measurement.canary_every`` trials (the steadiest complete one among its first trials,
  whose windows agreed best), and sooner when a trial saw the node busier than at its last
  canary (other processes' CPU share up by ``BUSIER``, a throttle flag) or never steadied.
  ``experiments.drift`` judges it; a drift makes the node's recent records suspects.
- **Recheck**: once a canary is steady again, each configuration whose every record is a
  suspect is measured once more.
- **Racing**: a configuration not told apart from a front point on speed, with an accuracy
  at least the point's, is measured again beside it, the one with fewer records first (A B
  A B on the same node, so drift hits both), until they are told apart, shown equivalent
  within ``race_margin``, or each has ``race_repeats`` records. Racing spends at most
  ``race_budget x study.n_trials`` trials; rechecks and canaries are not bounded by it
  (they guard the records, not the search).

A re-measurement runs no accuracy pass: it inherits its configuration's first figure.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from experiments import drift, noise, pareto
from tuner.trial import TrialResult

RACE, CANARY, RECHECK, SEARCH = "race", drift.CANARY, "recheck", "search"
BUSIER = 0.25  # other processes' CPU share up by this much since the last canary: check now


@dataclass
class Job:
    params: dict[str, Any]
    measured_for: str
    repeat_of: int  # the configuration's first trial
    node_id: str | None  # the Ray node that measured it (None: any node of the platform)
    key: tuple  # noise.config_key

    def attrs(self) -> dict[str, Any]:
        return {"measured_for": self.measured_for, "repeat_of": self.repeat_of,
                "node_id": self.node_id}


class Repeats:
    def __init__(self, cfg, rows: list[dict[str, Any]], speed: str, fidelity: str):
        m = cfg.measurement
        self.rows, self.speed, self.fidelity = rows, speed, fidelity
        self.racing, self.repeats, self.margin = bool(m.racing), int(m.race_repeats), float(m.race_margin)
        self.budget = int(round(float(m.race_budget) * int(cfg.study.n_trials)))
        self.every, self.prior = int(m.canary_every), float(m.noise_prior)
        self.z = NormalDist().inv_cdf(0.5 + float(m.confidence) / 2)
        self.pending: set[tuple] = set()  # config keys enqueued or in flight

    # --- the study's records --------------------------------------------------------
    def _study(self, study: str) -> list[dict[str, Any]]:
        return [r for r in self.rows if r["study"] == study and r["fidelity"] == self.fidelity]

    def _job(self, row: dict[str, Any], why: str) -> Job:
        first = row["repeat_of"] if row.get("repeat_of") is not None else row["trial"]
        return Job(json.loads(row["params"]), why, int(first),
                   noise.system_of(row).get("ray_node_id"), noise.config_key(row))

    # --- what to measure next -------------------------------------------------------
    def next(self, study: str) -> Job | None:
        """The next re-measurement this study wants, or None."""
        rows = self._study(study)
        if not rows:
            return None
        bad = drift.suspects(rows)  # once: the recheck and the race both read it
        for pick in (self._canary, self._recheck, self._race):
            job = pick(rows, bad)
            if job is not None and job.key not in self.pending:
                self.pending.add(job.key)
                return job
        return None

    def finished(self, key: tuple) -> None:
        self.pending.discard(key)

    def _canary(self, rows: list[dict[str, Any]], _bad: set) -> Job | None:
        if not self.every:
            return None
        for node, members in _by_node(rows).items():
            searched = [r for r in members if r.get("measured_for") in (None, SEARCH)]
            canaries = [r for r in members if r.get("measured_for") == CANARY]
            if not canaries:  # the first: once `every` trials besides the chosen one are in
                done = [r for r in searched if r["state"] == "complete"
                        and noise.figure(r, self.speed)]
                base = min(done, key=noise.windows_sd, default=None)
                if base is not None and (len(done) > self.every or (
                        len(done) > 2 and self._busier(done[-1], base))):
                    return self._job(base, CANARY)
                continue
            base = next((r for r in members if r["trial"] == canaries[0]["repeat_of"]), None)
            last = canaries[-1]
            since = [r for r in searched if r["trial"] > last["trial"]]
            # sooner when the node looks busier, but not after every trial of a node that is
            # always busy (each canary costs a trial); after a drift, until it is steady
            if base is not None and (len(since) >= self.every
                                     or (len(since) >= 2 and self._busier(since[-1], last))
                                     or (drift.drifted(last) and since)):
                return self._job(base, CANARY)
        return None

    def _busier(self, row: dict[str, Any], last: dict[str, Any]) -> bool:
        now = noise.system_of(row).get("steadiness", {})
        then = noise.system_of(last).get("steadiness", {})
        unsteady = str(row.get("cause") or "").startswith("unsteady")
        load = now.get("other_cpu", 0.0) - then.get("other_cpu", 0.0)
        return unsteady or load >= BUSIER or bool(now.get("throttled_now"))

    def _recheck(self, rows: list[dict[str, Any]], bad: set) -> Job | None:
        if not bad:
            return None
        for node, members in _by_node(rows).items():
            canaries = [r for r in members if r.get("measured_for") == CANARY]
            if not canaries or drift.drifted(canaries[-1]):
                continue  # the node is not steady again yet
            for group in noise.pool(members, self.speed, self.prior, bad):
                if group.flagged and group.row["state"] == "complete" \
                        and not any(r.get("measured_for") == RECHECK for r in members
                                    if noise.config_key(r) == noise.config_key(group.row)):
                    return self._job(group.row, RECHECK)
        return None

    def _race(self, rows: list[dict[str, Any]], bad: set) -> Job | None:
        if not self.racing or sum(r.get("measured_for") == RACE for r in rows) >= self.budget:
            return None
        groups = noise.pool(rows, self.speed, self.prior, bad)
        by_key = {noise.config_key(g.row): g for g in groups if g.n}
        pairs = []
        for point in pareto.front([g.row for g in by_key.values()], self.speed):
            mine = by_key[noise.config_key(point)]
            for other in by_key.values():
                if other is mine or other.row["state"] != "complete":
                    continue
                better = (other.row["accuracy"] or 0) >= (point["accuracy"] or 0) - noise.ACCURACY_TIE
                if not better or noise.separated(mine, other, self.z) \
                        or noise.within_margin(mine, other, self.margin, self.z) \
                        or min(mine.n, other.n) >= self.repeats:
                    continue
                pairs.append((mine.n + other.n, mine, other))
        for _, a, b in sorted(pairs, key=lambda p: p[0]):
            for g in sorted((a, b), key=lambda g: g.n):  # the one with fewer records first
                if g.n < self.repeats and noise.config_key(g.row) not in self.pending:
                    return self._job(g.row, RACE)
        return None


def _by_node(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: r["trial"]):
        out.setdefault(row.get("node") or "", []).append(row)
    return out


def inherit_accuracy(result: TrialResult, first: dict[str, Any] | None) -> None:
    """A re-measurement's accuracy: its configuration's first record's (no pass runs)."""
    if first is None:
        return
    result.accuracy, result.accuracy_metric = first.get("accuracy"), first.get("accuracy_metric")
    result.accuracy_low, result.accuracy_high = first.get("accuracy_low"), first.get("accuracy_high")
    result.accuracy_total = first.get("accuracy_samples")
    result.accuracy_source = "inherited"
    result.accuracy_from = f"{first['study']}/{first['trial']}"
    if first.get("accuracy_extras"):
        result.accuracy_extras = json.loads(first["accuracy_extras"])


def repeat_config(tcfg, attrs: dict[str, Any]):
    """The trial config of a re-measurement (``Job.attrs`` on its Optuna trial): pinned to
    its node, with no accuracy pass (it inherits its configuration's: ``judge``)."""
    for name in ("measured_for", "repeat_of", "node_id"):
        setattr(tcfg, name, attrs.get(name))
    tcfg.run_accuracy = False
    return tcfg


def judge(rows: list[dict[str, Any]], tcfg, result: TrialResult, speed: str,
          first: dict[str, Any] | None, prior: float) -> None:
    """A re-measurement inherits its first record's accuracy; a canary is judged against
    the node's earlier steady figures (``experiments.drift``): a drift leads its cause."""
    inherit_accuracy(result, first)
    value = getattr(result, speed, None)
    if tcfg.measured_for != CANARY or not result.ok:  # a lost node is not a drift
        return
    why = drift.verdict(rows, tcfg.study, result.node, tcfg.repeat_of, value, speed, prior) \
        if result.valid and value else drift.invalid(result.node, result.cause) \
        if not result.valid else None
    if why:
        result.cause = "; ".join(c for c in (why, result.cause) if c)


def pooled_figure(rows: list[dict[str, Any]], row: dict[str, Any], speed: str,
                  prior: float) -> float | None:
    """What Optuna is told for a configuration measured more than once: its pooled figure."""
    key = noise.config_key(row)
    same = [r for r in rows if noise.config_key(r) == key and r["fidelity"] == row["fidelity"]]
    groups = noise.pool(same, speed, prior, drift.suspects([r for r in rows
                                                            if r["study"] == row["study"]]))
    return groups[0].row.get(speed) if groups and groups[0].n else row.get(speed)
