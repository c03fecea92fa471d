"""Trial records: one row per trial, whatever its outcome, in ``trials.parquet``.

The file is rewritten atomically after every trial (write a temporary file, then rename),
so a driver killed at any moment leaves the last complete table behind.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

FILENAME = "trials.parquet"
STATES = ("complete", "infeasible", "failed")

SCHEMA = pa.schema([
    ("study", pa.string()),
    ("trial", pa.int64()),
    ("state", pa.string()),  # complete | infeasible | failed
    ("fidelity", pa.string()),  # short | compliant | ... | published | replay (experiments.mlperf)
    ("platform", pa.string()),
    ("node", pa.string()),
    ("backend", pa.string()),
    ("model", pa.string()),
    ("scenario", pa.string()),
    ("objective", pa.string()),  # latency_ms | qps: the speed objective of the study
    ("params", pa.string()),  # JSON: the Optuna params
    ("latency_ms", pa.float64()),
    ("p90_latency_ms", pa.float64()),
    ("qps", pa.float64()),
    ("accuracy", pa.float64()),
    ("accuracy_floor", pa.float64()),
    ("valid", pa.bool_()),
    ("cause", pa.string()),
    ("started_at", pa.timestamp("ms", tz="UTC")),
    ("duration_s", pa.float64()),
    ("log_dir", pa.string()),  # relative to the run directory
    ("config", pa.string()),  # JSON: the TrialConfig, enough to re-run it
    ("system", pa.string()),  # JSON: node facts and runtime versions
    ("source", pa.string()),  # published/replay: where the figures came from; else null
])


def _coerce(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row.get(name) for name in SCHEMA.names}
    unknown = set(row) - set(SCHEMA.names)
    if unknown:
        raise KeyError(f"record has unknown column(s) {sorted(unknown)}")
    if out["state"] not in STATES:
        raise ValueError(f"record state {out['state']!r}; one of {STATES}")
    started = out["started_at"]
    if isinstance(started, (int, float)):
        import datetime as dt

        out["started_at"] = dt.datetime.fromtimestamp(started, tz=dt.timezone.utc)
    return out


class Records:
    """The run's trial table, kept in memory and mirrored to Parquet."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / FILENAME
        self.rows: list[dict[str, Any]] = read(self.path).to_pylist() if self.path.exists() else []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(_coerce(row))
        self.flush()

    def find(self, study: str, trial: int, fidelity: str = "short") -> dict[str, Any] | None:
        for row in self.rows:
            if row["study"] == study and row["trial"] == trial and row["fidelity"] == fidelity:
                return row
        return None

    def flush(self) -> None:
        write(self.path, self.rows)

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=SCHEMA)


def write(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(list(rows), schema=SCHEMA), tmp)
    os.replace(tmp, path)


def read(path: str | os.PathLike) -> pa.Table:
    path = Path(path)
    if path.is_dir():
        path = path / FILENAME
    if not path.exists():
        raise FileNotFoundError(f"no trial records at {path}")
    return pq.read_table(path)
