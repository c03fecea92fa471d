"""Replay: answer trials from a table of earlier or imported records instead of a device.

``cluster=replay cluster.table=RUN_DIR`` puts a ``ReplayDispatcher`` where the driver
would use Ray, so a search strategy runs on a real device landscape (our own grid, or a
published MLPerf results tree imported with ``python -m experiments import``) in seconds.
It offers what the driver uses of ``tuner.fleet.dispatch.RayDispatcher`` (platforms, check,
submit, wait, result, cancel, shutdown), answers in-process (no Ray, no subprocess), and
describes the table's own search space (``space_config``): its dimensions and the values
the table holds, so the driver searches exactly what can be answered.

A proposed point the table holds comes back with the row's figures (times a noise factor
with ``cluster.replay_noise``, a log spread, recorded in its facts), ``fidelity`` replay
and ``source`` naming the row; a point it lacks comes back infeasible (ok, not valid) with
a cause starting ``not in table``. Replayed rows are never promoted or packed (promotion
selects short runs, the packer compliant ones).
"""
from __future__ import annotations

import itertools
import json
import math
import random
import time
from pathlib import Path
from typing import Any

from experiments.mlperf import PROMOTED, REPLAY, REPRODUCE
from experiments.published import of_our_runtimes
from search_spaces import canonical
from tuner.config import ConfigError, ParamSpec
from tuner.fleet.dispatch import DispatchError, Dispatcher, NodeInfo
from tuner.trial import TrialConfig, TrialResult

NOT_IN_TABLE = "not in table"
# Re-measurements of a point (promotion, reproduce) are not what a search saw: replay
# answers from the search's own rows (short, published, replay, simulated).
SKIPPED_FIDELITIES = (*PROMOTED, REPRODUCE)
MODEL_ANCHOR = "family"  # the model dimension others are conditional on, where present


def point_key(platform: str, scenario: str, params: dict[str, Any]) -> tuple:
    # one spelling per value, so 1 and 1.0 (Parquet JSON vs Optuna) are the same point
    return (platform, scenario, tuple(sorted((k, canonical(v)) for k, v in params.items())))


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _spec(values: set) -> dict[str, Any]:
    """A categorical of the values seen; ordered where they are all numbers (widths,
    resolutions, thread counts) and the schema knows ordered categoricals."""
    spec: dict[str, Any] = {"type": "categorical", "choices": _sorted_values(values)}
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and "ordered" in ParamSpec.__dataclass_fields__:
        spec["ordered"] = True
    return spec


def _sorted_values(values: set) -> list:
    return sorted(values, key=lambda v: (not isinstance(v, (int, float)) or isinstance(v, bool),
                                         v if isinstance(v, (int, float)) else str(v)))


def load_rows(table) -> tuple[list[dict[str, Any]], str]:
    """Rows of a run dir, a trials.parquet, or a list of row dicts; and what to call it."""
    if isinstance(table, list):
        return table, "rows"
    from experiments.records import FILENAME, read

    path = Path(table)
    try:
        rows = read(path).to_pylist()
    except (OSError, ValueError) as exc:  # a user's mistake: name the key, no traceback
        raise ConfigError(f"cluster.table: {exc}") from None
    return rows, str(path / FILENAME if path.is_dir() else path)


class ReplayDispatcher(Dispatcher):
    """A dispatcher whose one "node" per platform is the table."""

    def __init__(self, table, platform: str | None = None, noise: float = 0.0, seed: int = 0):
        rows, self.table_name = load_rows(table)
        # cluster.replay_noise: published tables have no noise; a figure replayed with a log
        # spread like a real node's lets the search and racing be benchmarked under noise
        self.noise, self._rng = float(noise), random.Random(seed)
        rows = [r for r in rows if r["fidelity"] not in SKIPPED_FIDELITIES
                and (platform is None or r["platform"] == platform)]
        rows, left_out = of_our_runtimes(rows, f"replay table {self.table_name}")
        if left_out:
            print(left_out, flush=True)
        if not rows:
            raise DispatchError(f"replay table {self.table_name}: no records"
                                + (f" of platform {platform!r}" if platform else ""))
        self.rows = rows
        self._index: dict[tuple, dict[str, Any]] = {}
        for row in rows:
            key = point_key(row["platform"], row["scenario"], json.loads(row["params"] or "{}"))
            earlier = self._index.get(key)
            # The first measured answer wins; a failed row only where nothing else is known.
            if earlier is None or (earlier["state"] == "failed" and row["state"] != "failed"):
                self._index[key] = row
        self._answers: dict[int, TrialResult] = {}
        self._refs = itertools.count()

    # --- the fleet ---------------------------------------------------------------
    def platforms(self) -> dict[str, list[NodeInfo]]:
        out: dict[str, list[NodeInfo]] = {}
        for platform in sorted({r["platform"] for r in self.rows}):
            runtimes = sorted({r["backend"] for r in self.rows if r["platform"] == platform})
            out[platform] = [NodeInfo(node_id=f"replay:{platform}", platform=platform,
                                      address=self.table_name, devices=1, runtimes=runtimes,
                                      cores=self._cores(platform))]
        return out

    def _cores(self, platform: str) -> int:
        """The fewest cores the table's systems of ``platform`` list (0: not known)."""
        counts = []
        for row in self.rows:
            if row["platform"] == platform:
                system = json.loads(row["system"] or "{}")
                count = (system.get("system_json") or {}).get("host_processor_core_count",
                                                              system.get("cores"))
                if str(count or "").isdigit():
                    counts.append(int(count))
        return min(counts, default=0)

    def check(self, platforms: list[str], runtimes: list[str]) -> dict[str, int]:
        present = self.platforms()
        problems = []
        for platform in platforms:
            if platform not in present:
                problems.append(f"no records of platform {platform!r} in {self.table_name} "
                                f"(present: {', '.join(present)})")
                continue
            missing = [r for r in runtimes if r not in present[platform][0].runtimes]
            if missing:
                problems.append(f"platform {platform!r} has no records of runtime(s) "
                                f"{', '.join(missing)}")
        if problems:
            raise DispatchError("cannot replay: " + "; ".join(problems))
        return {p: 1 for p in platforms}

    # --- the space -----------------------------------------------------------------
    def space_config(self) -> dict[str, Any]:
        """The table's search space, shaped like a ``space:`` config: {"name", "model":
        {dim: {"type": "categorical", "choices": [...], "when"?: {...}}}, "backends": [...],
        "knobs": {runtime: {knob: {...}}}, "params": {scenario dim: {...}}}.
        A model dimension that only some model families have (width for MobileNets,
        variant for EfficientNet-Lite) is conditional on ``family``."""
        model: dict[str, dict[Any, set]] = {}  # dim -> family (or None) -> values
        knobs: dict[str, dict[str, set]] = {}
        extra: dict[str, set] = {}
        for row in self.rows:
            params = json.loads(row["params"] or "{}")
            model_keys = set((json.loads(row["config"]).get("model") or {})
                             if row.get("config") else ())
            family = params.get(MODEL_ANCHOR)
            for key, value in params.items():
                if key == "backend":
                    continue
                if "." in key:
                    runtime, knob = key.split(".", 1)
                    knobs.setdefault(runtime, {}).setdefault(knob, set()).add(value)
                elif row.get("config") and key not in model_keys:
                    extra.setdefault(key, set()).add(value)  # a scenario knob (batch_size)
                else:
                    model.setdefault(key, {}).setdefault(family, set()).add(value)
        families = set(model.get(MODEL_ANCHOR, {})) - {None}
        dims: dict[str, dict[str, Any]] = {}
        # the anchor first: a conditional dimension needs its value before it is suggested
        for name in sorted(model, key=lambda n: (n != MODEL_ANCHOR, n)):
            by_family = model[name]
            spec = _spec(set().union(*by_family.values()))
            if name != MODEL_ANCHOR and families and set(by_family) != families:
                spec["when"] = {MODEL_ANCHOR: _sorted_values({f for f in by_family if f})}
            dims[name] = spec
        out: dict[str, Any] = {
            "name": f"replay:{Path(self.table_name).parent.name or self.table_name}",
            "model": dims,
            "backends": sorted({r["backend"] for r in self.rows}),
            "knobs": {rt: {k: _spec(v) for k, v in sorted(ks.items())}
                      for rt, ks in sorted(knobs.items())},
        }
        if extra:
            out["params"] = {k: _spec(v) for k, v in sorted(extra.items())}
        return out

    # --- trials --------------------------------------------------------------------
    def answer(self, cfg: TrialConfig) -> TrialResult:
        """The table's figures for this trial's point, or ``not in table``."""
        started = time.time()
        row = self._index.get(point_key(cfg.platform, cfg.scenario, cfg.params))
        if row is None:
            return TrialResult(ok=True, valid=False, platform=cfg.platform,
                               cause=f"{NOT_IN_TABLE}: no {cfg.scenario} record of "
                                     f"{json.dumps(cfg.params, sort_keys=True)} on "
                                     f"{cfg.platform} in {self.table_name}",
                               started_at=started, fidelity=REPLAY)
        system = json.loads(row["system"] or "{}")
        facts = {"replayed_from": row["fidelity"], "precision": system.get("precision")}
        factor = 1.0
        if self.noise and row["state"] != "failed":
            factor = math.exp(self._rng.gauss(0.0, self.noise))
            facts["replay_noise"] = {"log_sd": self.noise, "factor": factor}
        source = {"table": self.table_name, "study": row["study"], "trial": row["trial"],
                  "fidelity": row["fidelity"], "source": row.get("source")}
        return TrialResult(
            ok=row["state"] != "failed", valid=bool(row["valid"]), cause=row["cause"],
            latency_ms=_scaled(row["latency_ms"], factor),
            p90_latency_ms=_scaled(row["p90_latency_ms"], factor),
            qps=_scaled(row["qps"], 1.0 / factor),
            accuracy=row["accuracy"], node=row["node"] or "", platform=cfg.platform,
            model_name=row["model"] or "", started_at=started,
            duration_s=time.time() - started, system=facts, fidelity=REPLAY,
            source=json.dumps(source, sort_keys=True, default=str))

    def points(self, platform: str, scenario: str) -> list[dict[str, Any]]:
        """The parameter sets the table holds for a platform and scenario: the only points
        a replay study over it should propose (``SearchSpace.restricted``)."""
        return [json.loads(row["params"] or "{}") for (p, s, _), row in self._index.items()
                if p == platform and s == scenario]

    def submit(self, cfg: TrialConfig, timeout_s: float | None = None) -> int:
        ref = next(self._refs)
        self._answers[ref] = self.answer(cfg)
        return ref

    def wait(self, refs: list, timeout_s: float = 0.0) -> list:
        return [ref for ref in refs if ref in self._answers]

    def result(self, ref) -> TrialResult | str:
        return self._answers.pop(ref, None) or "lost: no such replayed trial"

    def cancel(self, ref) -> None:
        self._answers.pop(ref, None)

    def shutdown(self) -> None:
        self._answers.clear()
