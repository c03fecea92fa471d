"""The README's command, run as a user would: from another working directory."""
from __future__ import annotations

import os
import subprocess
import sys

import pyarrow.parquet as pq

SMALL = ["space.backends=[onnxruntime]", "study.accuracy_floor=0.5",
         "space.model.width.choices=[0.25]", "space.model.resolution.choices=[32,48]",
         "fidelity.min_duration_ms=300", "fidelity.accuracy_sample_count=100",
         "backends.onnxruntime.knobs.intra_op_threads.high=1",
         "backends.onnxruntime.knobs.execution_mode.choices=[sequential]",
         "backends.onnxruntime.knobs.allow_spinning.choices=[false]"]


def run(args, cwd, cache_dir, timeout=600):
    env = {**os.environ, "TUNER_CACHE_DIR": str(cache_dir)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_main_command_and_report_from_another_directory(tmp_path, cache_dir):
    out = tmp_path / "run"
    proc = run(["-m", "tuner", "+space=mobilenet", "study.n_trials=3", "study.name=cli",
                f"hydra.run.dir={out}", *SMALL], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Pareto front: cli." in proc.stdout
    table = pq.read_table(out / "trials.parquet")
    assert table.num_rows == 3
    for name in ("pareto.csv", "pareto.png", "pareto.html", "study.journal"):
        assert (out / name).stat().st_size > 0
    assert (out / ".hydra" / "config.yaml").exists()  # the exact config, kept with the run

    for name in ("pareto.csv", "pareto.png", "pareto.html"):
        (out / name).unlink()
    proc = run(["-m", "experiments", "report", str(out)], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert all((out / n).exists() for n in ("pareto.csv", "pareto.png", "pareto.html"))


def test_bad_key_fails_fast_naming_it(tmp_path, cache_dir):
    proc = run(["-m", "tuner", "+space=mobilenet", "study.n_trails=3"], tmp_path, cache_dir, 120)
    assert proc.returncode != 0
    assert "n_trails" in proc.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("trials.parquet"))


def test_empty_space_fails_fast(tmp_path, cache_dir):
    proc = run(["-m", "tuner", "+space=mobilenet", "space.model.width.choices=[]"],
               tmp_path, cache_dir, 120)
    assert proc.returncode == 2
    assert "space.model.width.choices" in proc.stderr


def test_report_on_missing_dir_is_a_clear_error(tmp_path, cache_dir):
    proc = run(["-m", "experiments", "report", str(tmp_path / "nope")], tmp_path, cache_dir, 60)
    assert proc.returncode == 2 and "no trial records" in proc.stderr
