"""Trial records on real Parquet: a dataset folder of immutable parts, whole at every moment
(read by pyarrow, pandas and DuckDB while a writer adds rows and after it is killed), clear
about a disk that refuses writes, and the same rows as the layouts of earlier versions."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from experiments import records
from experiments.records import Records, read

ROOT = Path(__file__).resolve().parents[1]


def row(i: int, **extra) -> dict:
    return {"study": "s", "trial": i, "state": "complete", "fidelity": "short",
            "started_at": 1_700_000_000 + i, "latency_ms": 1.0 + i, "params": "{}", **extra}


def stored(i: int) -> dict:
    """The row as earlier versions stored it: every column, the start as a UTC time."""
    import datetime as dt

    r = row(i)
    r["started_at"] = dt.datetime.fromtimestamp(r["started_at"], tz=dt.timezone.utc)
    return {name: r.get(name) for name in records.SCHEMA.names}


def test_added_rows_read_back_one_immutable_part_each(tmp_path):
    rec = Records(tmp_path / "run")
    folder = tmp_path / "run" / records.FILENAME
    for i in range(7):
        rec.add(row(i))
        if i == 0:
            first = (folder / "part-000001.parquet").read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == [f"part-{i:06d}.parquet" for i in range(1, 8)]
    assert (folder / "part-000001.parquet").read_bytes() == first  # never rewritten
    old = tmp_path / "old" / records.FILENAME
    old.parent.mkdir()
    pq.write_table(pa.Table.from_pylist([stored(i) for i in range(7)],
                                        schema=records.SCHEMA), old)  # an earlier version's file
    assert read(tmp_path / "run").to_pylist() == pq.read_table(old).to_pylist()
    assert Records(tmp_path / "run").rows == Records(tmp_path / "old").rows
    assert Records(tmp_path / "run").find("s", 3)["latency_ms"] == 4.0


def test_a_run_of_the_old_single_file_layout_reads_and_grows(tmp_path):
    rows = [stored(i) for i in range(3)]
    pq.write_table(pa.Table.from_pylist(rows, schema=records.SCHEMA),
                   tmp_path / records.FILENAME)  # as earlier versions wrote it
    rec = Records(tmp_path)
    assert [r["trial"] for r in rec.rows] == [0, 1, 2]
    rec.add(row(3))
    assert (tmp_path / records.FILENAME).is_dir()
    assert [r["trial"] for r in read(tmp_path).to_pylist()] == [0, 1, 2, 3]


def test_parts_of_an_earlier_version_are_read_and_folded_in(tmp_path):
    """Earlier versions added rows as part files beside a compacted file; they read as
    one table and the next write turns them into the folder."""
    pq.write_table(pa.Table.from_pylist([stored(i) for i in range(2)], schema=records.SCHEMA)
                   .replace_schema_metadata({b"tuner.compacted_through": b"3"}),
                   tmp_path / records.FILENAME)
    parts = tmp_path / records.LEGACY_PARTS
    parts.mkdir()
    for seq, i in ((3, 1), (4, 2), (5, 3)):  # part 3 is already in the file
        pq.write_table(pa.Table.from_pylist([stored(i)], schema=records.SCHEMA),
                       parts / f"part-{seq:09d}.parquet")
    assert [r["trial"] for r in read(tmp_path).to_pylist()] == [0, 1, 2, 3]
    rec = Records(tmp_path)
    rec.add(row(4))
    assert list(parts.glob("part-*")) == []
    assert [r["trial"] for r in pq.read_table(tmp_path / records.FILENAME).to_pylist()] == \
        [0, 1, 2, 3, 4]


def test_flush_keeps_rows_edited_in_place(tmp_path):
    rec = Records(tmp_path)
    for i in range(3):
        rec.add(row(i))
    rec.rows[0]["cause"] = "edited"
    rec.flush()
    assert read(tmp_path).to_pylist()[0]["cause"] == "edited"
    assert [r["trial"] for r in read(tmp_path).to_pylist()] == [0, 1, 2]


def test_flush_folds_parts_and_leaves_a_finished_run_alone(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "FOLD_AT", 3)
    rec = Records(tmp_path)
    for i in range(5):
        rec.add(row(i))
    folder = tmp_path / records.FILENAME
    rec.flush()
    assert [p.name for p in folder.iterdir()] == ["part-000005-all.parquet"]
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    Records(tmp_path).flush()  # e.g. a command that failed on a finished run
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    # a fold killed before it removed the parts it holds: read never counts a row twice
    again = Records(tmp_path)
    again.add(row(5))
    pq.write_table(pa.Table.from_pylist([stored(4)], schema=records.SCHEMA),
                   folder / "part-000004.parquet")
    assert [r["trial"] for r in read(tmp_path).to_pylist()] == [0, 1, 2, 3, 4, 5]


WRITER = """
import sys, time
from experiments import records
rec = records.Records(sys.argv[1])
i = len(rec.rows)
while True:
    rec.add({"study": "s", "trial": i, "state": "complete", "fidelity": "short",
             "started_at": 1.0, "config": "x" * 2000})
    i += 1
    time.sleep(0.02)  # a study adds a row per trial (seconds); thousands of parts a second
                      # would only measure how fast a reader lists them
"""


def wait_for_rows(path: Path, more_than: int, timeout_s: float = 60.0) -> None:
    """Until the writer (past its imports, which take a while on a busy machine) has added."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if records.exists(path) and read(path).num_rows > more_than:
            return
        time.sleep(0.02)


def test_killing_the_writer_mid_write_leaves_a_readable_table(tmp_path):
    trials = []
    for delay in (0.05, 0.2, 0.45):  # three kills, each resuming the same run
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT)
        try:
            wait_for_rows(tmp_path / records.FILENAME, len(trials))
            time.sleep(delay)
        finally:  # never leave the endless writer behind, whatever stops this test
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        trials = [r["trial"] for r in read(tmp_path).to_pylist()]
        assert trials == list(range(len(trials)))  # nothing torn, lost between, or doubled
    assert len(trials) > 5


@contextmanager
def small_disk(path: Path, size: str = "256k"):
    """A real small filesystem (tmpfs) at ``path``; needs root, else the test is skipped."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}",
                                            "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_read_only_run_dir_is_a_clear_error_and_the_table_stays(tmp_path):
    with small_disk(tmp_path / "run") as run:
        rec = Records(run)
        rec.add(row(0))
        rec.flush()
        rec.add(row(1))
        subprocess.run(["mount", "-o", "remount,ro", str(run)], check=True)
        with pytest.raises(OSError, match=str(run)) as err:
            rec.add(row(2))
        assert err.value.errno in (errno.EROFS, errno.EACCES)
        with pytest.raises(OSError, match=str(run)):
            rec.flush()
        assert [r["trial"] for r in read(run).to_pylist()] == [0, 1]


def test_a_full_disk_is_a_clear_error_and_the_table_stays(tmp_path):
    with small_disk(tmp_path / "run") as run:
        rec = Records(run)
        for i in range(3):
            rec.add(row(i))
        filler = run / "filler"
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        with pytest.raises(OSError, match=str(run)) as err:
            rec.add(row(3, config="x" * 100_000))
        assert err.value.errno == errno.ENOSPC
        assert [r["trial"] for r in read(run).to_pylist()] == [0, 1, 2]
        assert not [p for p in run.rglob("*") if ".tmp" in p.name or ".new" in p.name]
        filler.unlink()
        rec.add(row(4))  # room again: the unsaved row goes out with the next one
        assert [r["trial"] for r in read(run).to_pylist()] == [0, 1, 2, 3, 4]


def test_a_second_writer_after_a_flush_is_read_back(tmp_path):
    """The driver flushes at the end of a study; promote then opens the run and adds rows:
    they must be read back (their parts numbered after the compacted file's mark)."""
    first = Records(tmp_path)
    for i in range(3):
        first.add(row(i))
    first.flush()
    second = Records(tmp_path)
    second.add(row(3))
    assert [r["trial"] for r in read(tmp_path).to_pylist()] == [0, 1, 2, 3]
    assert [r["trial"] for r in Records(tmp_path).rows] == [0, 1, 2, 3]


def test_standard_tools_read_every_row_mid_run_and_after_a_kill(tmp_path):
    """The documented path, the trials.parquet folder, read by pyarrow, pandas and DuckDB
    while a writer adds rows: always a whole prefix of the rows, growing; after a kill, all
    rows."""
    pd = pytest.importorskip("pandas")
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / records.FILENAME
    readers = {"pyarrow": lambda: pq.read_table(path).column("trial").to_pylist(),
               "pandas": lambda: pd.read_parquet(path)["trial"].tolist(),
               "duckdb": lambda: [t for (t,) in duckdb.sql(
                   f"SELECT trial FROM '{path}'").fetchall()]}
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], cwd=ROOT)
    seen = {name: 0 for name in readers}
    try:
        wait_for_rows(path, 0)
        for _ in range(20):
            for name, reader in readers.items():
                trials = sorted(reader())  # (DuckDB reads parts in parallel: any order)
                assert trials == list(range(len(trials))), name  # whole: no gap, no double
                assert len(trials) >= seen[name], name
                seen[name] = len(trials)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert min(seen.values()) > 0
    expected = [r["trial"] for r in read(tmp_path).to_pylist()]
    assert expected == list(range(len(expected))) and len(expected) >= max(seen.values())
    for name, reader in readers.items():
        assert sorted(reader()) == expected, name
