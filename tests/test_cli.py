"""The README's command, run as a user would: from another working directory."""
from __future__ import annotations

import os
import subprocess
import sys

from experiments.records import read

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
    table = read(out)
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


def test_show_plan_prints_each_platform_and_runs_nothing(tmp_path, cache_dir):
    out = tmp_path / "run"
    proc = run(["-m", "tuner", "+space=mobilenet", "--show-plan", "platform.name=rpi4",
                f"hydra.run.dir={out}", "space.backends=[onnxruntime,nosuchruntime_is_not_ok]"],
               tmp_path, cache_dir, 120)
    assert proc.returncode == 2 and "nosuchruntime_is_not_ok" in proc.stderr  # config check first
    proc = run(["-m", "tuner", "+space=mobilenet", "--show-plan", "platform=rpi4",
                f"hydra.run.dir={out}"], tmp_path, cache_dir, 120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rpi4:" in proc.stdout and "runtimes: onnxruntime" in proc.stdout
    # conf/platform/rpi4.yaml says threads: 4; never more than this node's own cores
    assert f"onnxruntime.intra_op_threads: 1..{min(4, os.cpu_count())}" in proc.stdout
    assert not (out / "trials.parquet").exists()


def test_a_data_error_at_start_is_one_line_and_exit_2(tmp_path, cache_dir):
    data = tmp_path / "val"
    data.mkdir()  # a dataset folder without val_map.txt
    proc = run(["-m", "tuner", "+space=imagenet", "workload=imagenet",
                f"workload.dataset_dir={data}", f"workload.models={{m:{tmp_path / 'm.onnx'}}}",
                f"hydra.run.dir={tmp_path / 'run'}"], tmp_path, cache_dir, 120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert "val_map.txt" in line or "m.onnx" in line
