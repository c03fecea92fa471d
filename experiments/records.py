"""Trial records: one row per trial, whatever its outcome, in ``trials.parquet``.

``trials.parquet`` is whole at every moment: each ``add`` rewrites the file (a temporary
name, then an atomic rename), so DuckDB (``FROM 'runs/x/trials.parquet'``), pandas and
pyarrow read every row recorded so far, during a run and after a killed one, from that one
path. The rewrite costs some 25-35 ms per add up to 1000 rows on a 2-core machine (README
"Reading the records"), small beside a trial. Earlier versions added rows as part files in ``trials.parquet.d/``; ``read``
still merges those, and the first write folds them into the file (its schema metadata
names the last part it holds, so a writer killed before removing them never counts a row
twice).

A write that fails (read-only folder, full disk) raises an ``OSError`` naming the path;
the table already on disk is left as it was, and the row goes out with the next write.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

FILENAME = "trials.parquet"
PARTS = FILENAME + ".d"  # earlier versions: one Parquet file per add() until compaction
# undecided: measured, but the accuracy interval straddles the floor (neither verdict)
STATES = ("complete", "infeasible", "undecided", "failed")
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
    """The run's trial table, kept in memory and mirrored whole to ``trials.parquet``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / FILENAME
        self.parts = self.path.with_name(PARTS)
        self.rows: list[dict[str, Any]] = read(self.path).to_pylist() if _exists(self.path) else []
        # the last part of an earlier version's run; the file written next says it holds it
        self._through = max(_last_part(self.parts), _compacted_through(self.path))
        # what the file holds as Arrow (None: parts or nothing on disk), grown a row per add
        self._table: pa.Table | None = None
        if self.path.exists() and not _live_parts(self.path):
            self._table = pa.Table.from_pylist(self.rows, schema=SCHEMA)

    def add(self, row: dict[str, Any]) -> None:
        row = _coerce(row)
        self.rows.append(row)
        table = self._table
        if table is None or table.num_rows != len(self.rows) - 1:  # a failed write before
            table = pa.Table.from_pylist(self.rows, schema=SCHEMA)
        else:
            table = pa.concat_tables([table, pa.Table.from_pylist([row], schema=SCHEMA)])
            if table.column(0).num_chunks > 32:  # a chunk per row makes the write crawl
                table = table.combine_chunks()
        self._save(table)

    def find(self, study: str, trial: int, fidelity: str = "short") -> dict[str, Any] | None:
        for row in self.rows:
            if row["study"] == study and row["trial"] == trial and row["fidelity"] == fidelity:
                return row
        return None

    def flush(self) -> None:
        """Write edits of ``rows``; nothing when the file already holds them (a command that
        fails leaves a finished run's file untouched)."""
        table = pa.Table.from_pylist(self.rows, schema=SCHEMA)
        if self._table is not None and table.equals(self._table):
            return
        self._save(table)

    def _save(self, table: pa.Table) -> None:
        self._table = None  # until the file holds it
        _write_arrow(self.path, table, {_THROUGH: str(self._through).encode()})
        self._table = table
        for part in _parts(self.parts):  # an earlier version's parts, now in the file
            part.unlink(missing_ok=True)

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=SCHEMA)


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


def _write_arrow(path: Path, table: pa.Table, metadata: dict | None = None) -> None:
    """Write by temporary file + rename; an error names the path and leaves no debris."""
    if metadata:
        table = table.replace_schema_metadata(metadata)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # zstd: the smallest and, at 1000 rows, about the fastest to rewrite per add
        pq.write_table(table, tmp, compression="zstd", compression_level=1)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OSError(exc.errno, f"cannot write trial records {path}: "
                                 f"{exc.strerror or exc}", str(path)) from exc


def write(path: Path, rows: Iterable[dict[str, Any]], compacted_through: int = 0) -> None:
    _write_arrow(Path(path), pa.Table.from_pylist(list(rows), schema=SCHEMA),
                 {_THROUGH: str(int(compacted_through)).encode()})


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
