"""Trial records: one row per trial, whatever its outcome, in ``trials.parquet``.

Append-friendly and never torn. ``add`` writes only the new row, as one small Parquet part
file in ``trials.parquet.d/`` (written under a temporary name, then renamed), so the cost
of recording a trial does not grow with the study. ``flush`` (and every
``COMPACT_EVERY`` parts) compacts everything into ``trials.parquet`` by atomic rename; the
compacted file names the last part it holds (schema metadata), so a compaction killed
before it removed its parts never counts a row twice. ``read`` returns the compacted file
plus the parts after it, and reads the single-file runs of earlier versions as they are.

A write that fails (read-only folder, full disk) raises an ``OSError`` naming the path;
the table already on disk is left as it was.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

FILENAME = "trials.parquet"
PARTS = FILENAME + ".d"  # one Parquet file per add() since the last compaction
# undecided: measured, but the accuracy interval straddles the floor (neither verdict)
STATES = ("complete", "infeasible", "undecided", "failed")
COMPACT_EVERY = 50  # parts before add() compacts them (reads stay fast, adds stay flat)
_THROUGH = b"tuner.compacted_through"  # schema metadata: last part folded into the file

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
    ("accuracy_metric", pa.string()),  # the task's metric: top1 | mAP | AUC
    ("accuracy_extras", pa.string()),  # JSON: the metric's companions (e.g. AP50)
    # Where the accuracy came from: measured (the whole set), estimated (a sequential pass
    # over part of it: accuracy_low/high is its interval), inherited (an earlier trial's
    # with the same accuracy_key, after an identical spot check: accuracy_from names it).
    # Only a measured figure of a compliant run is ever packed.
    ("accuracy_source", pa.string()),
    ("accuracy_low", pa.float64()),
    ("accuracy_high", pa.float64()),
    ("accuracy_samples", pa.int64()),  # samples scored for this figure
    ("accuracy_key", pa.string()),  # model file x runtime x output-changing knobs
    ("accuracy_from", pa.string()),  # inherited: "<study>/<trial>" of the measurement
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
        self.parts = self.path.with_name(PARTS)
        self.rows: list[dict[str, Any]] = read(self.path).to_pylist() if _exists(self.path) else []
        self._unsaved: list[dict[str, Any]] = []  # added, but their part failed to write
        # numbering goes on after the compacted file too: its parts are gone after a flush,
        # and a part numbered at or below the file's mark would be taken as folded in
        self._next = max(_last_part(self.parts), _compacted_through(self.path)) + 1
        self._parts_since = len(_live_parts(self.path))

    def add(self, row: dict[str, Any]) -> None:
        row = _coerce(row)
        self.rows.append(row)
        self._unsaved.append(row)
        if self._parts_since + 1 >= COMPACT_EVERY:
            self.flush()
            return
        _write_table(self.parts / _part_name(self._next), self._unsaved)
        self._next += 1
        self._parts_since += 1
        self._unsaved = []

    def find(self, study: str, trial: int, fidelity: str = "short") -> dict[str, Any] | None:
        for row in self.rows:
            if row["study"] == study and row["trial"] == trial and row["fidelity"] == fidelity:
                return row
        return None

    def flush(self) -> None:
        """Write the whole table (edits of ``rows`` included) as ``trials.parquet`` and drop
        the parts it now holds."""
        through = self._next - 1
        write(self.path, self.rows, compacted_through=through)
        self._unsaved = []
        self._parts_since = 0
        for part in _parts(self.parts):
            if _seq(part) <= through:
                part.unlink(missing_ok=True)

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=SCHEMA)


def _part_name(seq: int) -> str:
    return f"part-{seq:09d}.parquet"


def _seq(part: Path) -> int:
    return int(part.stem.split("-")[1])


def _parts(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("part-*.parquet") if p.stem.split("-")[1].isdigit())


def _last_part(folder: Path) -> int:
    parts = _parts(folder)
    return _seq(parts[-1]) if parts else 0


def _compacted_through(path: Path) -> int:
    if not path.exists():
        return 0
    meta = pq.read_schema(path).metadata or {}
    return int(meta.get(_THROUGH, b"0"))


def _live_parts(path: Path) -> list[Path]:
    """The parts written after the compacted file (older ones are already in it)."""
    through = _compacted_through(path)
    return [p for p in _parts(path.with_name(PARTS)) if _seq(p) > through]


def _exists(path: Path) -> bool:
    return path.exists() or bool(_parts(path.with_name(PARTS)))


def _write_table(path: Path, rows: Iterable[dict[str, Any]], metadata: dict | None = None) -> None:
    """Write by temporary file + rename; an error names the path and leaves no debris."""
    table = pa.Table.from_pylist(list(rows), schema=SCHEMA)
    if metadata:
        table = table.replace_schema_metadata(metadata)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OSError(exc.errno, f"cannot write trial records {path}: "
                                 f"{exc.strerror or exc}", str(path)) from exc


def write(path: Path, rows: Iterable[dict[str, Any]], compacted_through: int = 0) -> None:
    _write_table(Path(path), rows, {_THROUGH: str(int(compacted_through)).encode()})


def read(path: str | os.PathLike) -> pa.Table:
    path = Path(path)
    if path.is_dir() and path.name != PARTS:
        path = path / FILENAME
    if not _exists(path):
        raise FileNotFoundError(f"no trial records at {path}")
    tables = [pq.read_table(path)] if path.exists() else []
    for part in _live_parts(path):
        try:
            tables.append(pq.read_table(part))
        except (OSError, pa.ArrowInvalid) as exc:  # only a crash below the rename does this
            warnings.warn(f"skipping unreadable trial-record part {part}: {exc}")
    if len(tables) == 1:
        return tables[0]
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables],
                            promote_options="default")
