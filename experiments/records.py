"""Trial records: one row per trial, whatever its outcome, in ``trials.parquet/``.

``trials.parquet`` is a Parquet dataset folder of immutable part files: each ``add``
writes one new ``part-NNNNNN.parquet`` (under a hidden temporary name, then an atomic
rename) and never touches the others. So the folder is whole at every moment, and DuckDB
(``FROM 'runs/x/trials.parquet/*.parquet'``), pandas (``pd.read_parquet('runs/x/
trials.parquet')``) and pyarrow read every row recorded so far, during a run and after a
killed one. (A single file rewritten on every add is not: pyarrow opens a file twice, for
its footer and its pages, and a rename between the two tears the read.) The cost of an add
stays flat with the study's size.

``flush`` (the end of a run) folds many parts into one ``part-NNNNNN-all.parquet`` whose
schema metadata names the last part it holds; ``read`` skips the parts it covers, so a
flush killed before it removed them never counts a row twice (a tool reading the folder
in that instant may). Runs of earlier versions (one ``trials.parquet`` file, plus parts in
``trials.parquet.d/``) are read as they are and turned into the folder on their next write.

A write that fails (read-only folder, full disk) raises an ``OSError`` naming the path;
what is on disk is left as it was, and the row goes out with the next write.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

FILENAME = "trials.parquet"  # the dataset folder
LEGACY_PARTS = FILENAME + ".d"  # earlier versions: part files beside a single file
# undecided: measured, but the accuracy interval straddles the floor (neither verdict)
STATES = ("complete", "infeasible", "undecided", "failed")
_THROUGH = b"tuner.compacted_through"  # schema metadata: the last part a fold holds
FOLD_AT = 64  # parts before flush folds them into one

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
    # 90% prediction intervals of the figures (experiments/noise.py): where this
    # configuration re-measured on the same node lands, 9 times in 10
    ("latency_low_ms", pa.float64()),
    ("latency_high_ms", pa.float64()),
    ("qps_low", pa.float64()),
    ("qps_high", pa.float64()),
    ("windows", pa.int64()),  # LoadGen runs the figure is the median of
    # search | race | canary | recheck (tuner.trial.TrialConfig.measured_for); repeat_of:
    # the configuration's first trial, for a re-measurement (a record of its own)
    ("measured_for", pa.string()),
    ("repeat_of", pa.int64()),
    # a promoted or reproduced figure: inside its configuration's short-run interval?
    ("within_short_interval", pa.bool_()),
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
    """The run's trial table, kept in memory and appended to ``trials.parquet/``."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / FILENAME
        # rows of earlier versions get the columns added since, empty
        self.rows: list[dict[str, Any]] = [{name: r.get(name) for name in SCHEMA.names}
                                           for r in read(self.path).to_pylist()] \
            if exists(self.path) else []
        self._written = len(self.rows)  # rows on disk (the folder, or a legacy file)
        self._saved = [dict(r) for r in self.rows]  # as written: flush finds rows edited since

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(_coerce(row))
        self._save()

    def find(self, study: str, trial: int, fidelity: str = "short") -> dict[str, Any] | None:
        for row in self.rows:
            if row["study"] == study and row["trial"] == trial and row["fidelity"] == fidelity:
                return row
        return None

    def flush(self) -> None:
        """Write what is unwritten (and rows edited in place: the whole folder again);
        fold many parts into one. Nothing when the folder already holds every row as it is,
        in few parts (a command that fails leaves a finished run untouched)."""
        self._save()
        if self.rows[:len(self._saved)] != self._saved:  # rows edited in place since written
            write(self.path, self.rows)
            self._saved = [dict(r) for r in self.rows]
            return
        parts = _parts(self.path)
        if len(parts) > FOLD_AT:
            through = _seq(parts[-1])
            _write_arrow(self.path / f"part-{through:06d}-all.parquet", self.table(),
                         {_THROUGH: str(through).encode()})
            for part in parts:
                part.unlink(missing_ok=True)

    def _save(self) -> None:
        if self._written >= len(self.rows):
            return
        if not self.path.is_dir():
            self._adopt_legacy()
            if self._written >= len(self.rows):
                return
        new = pa.Table.from_pylist(self.rows[self._written:], schema=SCHEMA)
        seq = (_seq(_parts(self.path)[-1]) if _parts(self.path) else 0) + 1
        _write_arrow(self.path / f"part-{seq:06d}.parquet", new)
        self._saved += [dict(r) for r in self.rows[self._written:]]
        self._written = len(self.rows)

    def _adopt_legacy(self) -> None:
        """Make the folder; an earlier version's single file (and its parts) becomes its
        first part, then goes."""
        if not (self.path.is_file() or _legacy_parts(self.path)):
            self._written = 0
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot write trial records {self.path}: "
                                         f"{exc.strerror or exc}", str(self.path)) from exc
            return
        import shutil

        folder = self.path.with_name(f".{FILENAME}.new{os.getpid()}")
        try:
            _write_arrow(folder / "part-000001.parquet", self.table())
        except OSError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        if self.path.is_file():
            self.path.unlink()
        for part in _legacy_parts(self.path):
            part.unlink(missing_ok=True)
        os.replace(folder, self.path)
        self._written = len(self.rows)
        self._saved = [dict(r) for r in self.rows]

    def table(self) -> pa.Table:
        return pa.Table.from_pylist(self.rows, schema=SCHEMA)


def _seq(part: Path) -> int:
    return int(part.name.split("-")[1].split(".")[0])


def _parts(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("part-*.parquet")
                   if p.name.split("-")[1].split(".")[0].isdigit()), key=_seq)


def _legacy_parts(path: Path) -> list[Path]:
    return _parts(path.with_name(LEGACY_PARTS))


def _through(part: Path) -> int:
    meta = pq.read_schema(part).metadata or {}
    return int(meta.get(_THROUGH, b"0"))


def exists(path: Path) -> bool:
    """Records at ``path`` (a folder, or an earlier version's file or parts)?"""
    return path.exists() or bool(_legacy_parts(path))


def _write_arrow(path: Path, table: pa.Table, metadata: dict | None = None) -> None:
    """Write by temporary file + rename; an error names the path and leaves no debris."""
    if metadata:
        table = table.replace_schema_metadata(metadata)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")  # hidden: readers skip it
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, tmp, compression="zstd", compression_level=1)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        raise OSError(exc.errno, f"cannot write trial records {path}: "
                                 f"{exc.strerror or exc}", str(path)) from exc


def write(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """``rows`` as the whole records folder at ``path`` (an import, a rewritten table),
    replacing what was there: built beside it, then swapped in."""
    import shutil

    path = Path(path)
    fresh = path.with_name(f".{path.name}.new{os.getpid()}")
    shutil.rmtree(fresh, ignore_errors=True)
    _write_arrow(fresh / "part-000001.parquet", pa.Table.from_pylist(list(rows), schema=SCHEMA))
    old = path.with_name(f".{path.name}.old{os.getpid()}")
    if path.is_dir():
        os.replace(path, old)
    elif path.exists():
        path.unlink()
    for part in _legacy_parts(path):
        part.unlink(missing_ok=True)
    os.replace(fresh, path)
    shutil.rmtree(old, ignore_errors=True)


def _read_parts(parts: list[Path]) -> list[pa.Table]:
    tables, covered = [], 0
    for part in parts:
        if _seq(part) <= covered:
            continue  # already in a fold read before it
        try:
            table = pq.read_table(part)
        except (OSError, pa.ArrowInvalid) as exc:  # only a crash below the rename does this
            warnings.warn(f"skipping unreadable trial-record part {part}: {exc}")
            continue
        if part.name.endswith("-all.parquet"):
            covered = _through(part)
        tables.append(table)
    return tables


def read(path: str | os.PathLike) -> pa.Table:
    """Every row at ``path``: a run dir, its ``trials.parquet`` folder, or an earlier
    version's ``trials.parquet`` file (with its ``trials.parquet.d/`` parts)."""
    path = Path(path)
    if path.is_dir() and path.name != FILENAME:
        path = path / FILENAME
    if not exists(path):
        raise FileNotFoundError(f"no trial records at {path}")
    if path.is_dir():
        # folds sort before the parts they hold: read newest fold's coverage first
        parts = sorted(_parts(path), key=lambda p: (_seq(p), not p.name.endswith("-all.parquet")))
        folds = [p for p in parts if p.name.endswith("-all.parquet")]
        if folds:
            last = folds[-1]
            parts = [last] + [p for p in parts if _seq(p) > _seq(last)]
        tables = _read_parts(parts)
    else:
        tables = [pq.read_table(path)] if path.is_file() else []
        through = _through(path) if path.is_file() else 0
        tables += _read_parts([p for p in _legacy_parts(path) if _seq(p) > through])
    if len(tables) == 1:
        return tables[0].replace_schema_metadata(None)
    if not tables:
        return SCHEMA.empty_table()
    return pa.concat_tables([t.replace_schema_metadata(None) for t in tables],
                            promote_options="default")
