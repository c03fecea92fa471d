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
    rows = read(out).to_pylist()
    # three asked trials; racing and the canary may add re-measurements of them
    assert sum(r["measured_for"] == "search" for r in rows) == 3
    assert all(r["repeat_of"] is not None for r in rows if r["measured_for"] != "search")
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


def _table(path):
    """A small table of records to replay: a finished run made in seconds."""
    import json

    from experiments.records import FILENAME, write

    rows = [{"study": "t.rpi4", "trial": i, "state": "complete", "fidelity": "short",
             "platform": "rpi4", "node": "n1", "backend": "litert", "model": "m",
             "scenario": "SingleStream", "objective": "latency_ms",
             "params": json.dumps({"family": "mobilenet-v1", "width": w, "backend": "litert",
                                   "litert.num_threads": 1}),
             "latency_ms": 5.0 + i, "p90_latency_ms": 5.0 + i, "accuracy": 0.7 + i / 10,
             "valid": True, "log_dir": "trials/x", "system": json.dumps({"precision": "fp32"}),
             "config": json.dumps({"model": {"family": "mobilenet-v1", "width": w}})}
            for i, w in enumerate((0.25, 0.5, 1.0))]
    path.mkdir()
    write(path / FILENAME, rows)
    return path


def _hashes(folder):
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_failing_command_leaves_a_finished_run_byte_identical(tmp_path, cache_dir):
    table = _table(tmp_path / "table")
    run_dir = tmp_path / "runs" / "fin"
    replay = ["cluster=replay", f"cluster.table={table}", "study.name=fin",
              "study.accuracy_floor=0.0", "progress=false", f"hydra.run.dir={run_dir}"]
    proc = run(["-m", "tuner", *replay, "study.n_trials=3"], tmp_path, cache_dir, 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = _hashes(run_dir)
    assert {".hydra/config.yaml", ".hydra/overrides.yaml", "study.journal"} <= set(before)
    assert any(name.startswith("trials.parquet/part-") for name in before)
    data = tmp_path / "val"
    data.mkdir()  # a dataset folder without val_map.txt
    failing = [
        ["+space=mobilenet", "space.backends=[nosuchruntime]", "study.name=fin",
         f"hydra.run.dir={run_dir}"],
        ["+space=imagenet", "workload=imagenet", f"workload.dataset_dir={data}",
         f"workload.models={{m:{tmp_path / 'm.onnx'}}}", "study.name=fin",
         f"hydra.run.dir={run_dir}"],
        [*replay, "cluster.platforms=[milan]"],  # fails after the config check: no such platform
        ["study.n_trails=3", f"hydra.run.dir={run_dir}"],  # Hydra's own error
    ]
    for args in failing:
        proc = run(["-m", "tuner", *args], tmp_path, cache_dir, 300)
        assert proc.returncode == 2, (args, proc.stderr[-3000:])
        assert "Traceback" not in proc.stderr
        assert [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")], proc.stderr
        assert _hashes(run_dir) == before, args
    proc = run(["-m", "tuner", *replay, "--show-plan"], tmp_path, cache_dir, 300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _hashes(run_dir) == before
    # a new study with a bad dataset path leaves no folder behind
    fresh = tmp_path / "runs" / "fresh"
    proc = run(["-m", "tuner", *failing[1][:-2], f"hydra.run.dir={fresh}"], tmp_path,
               cache_dir, 300)
    assert proc.returncode == 2 and not fresh.exists()
    proc = run(["-m", "tuner", *replay[:-1], "cluster.platforms=[milan]",
                f"hydra.run.dir={fresh}"], tmp_path, cache_dir, 300)
    assert proc.returncode == 2 and not fresh.exists(), proc.stderr[-2000:]


def test_help_names_the_space_the_subcommands_and_show_plan(tmp_path, cache_dir):
    proc = run(["-m", "tuner", "--help"], tmp_path, cache_dir, 120)
    assert proc.returncode == 0, proc.stderr
    for word in ("+space=", "promote", "reproduce", "dashboard", "--show-plan", "--cfg job",
                 "study.n_trials", "scenario=", "space.backends", "study.accuracy_floor",
                 "workload="):
        assert word in proc.stdout, word
    assert "digits_schema" not in proc.stdout and "cluster/examples" not in proc.stdout
    assert "mobilenet" in proc.stdout
    assert not (tmp_path / "runs").exists()
