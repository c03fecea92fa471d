"""Run one measurement in a fresh child process.

Why: LoadGen allows one ``TestSettings.FromConfig`` per process (a second call logs
``error_invalid_config``, which the submission checker rejects), and a runtime that
segfaults or hangs must take down only its trial. A fresh Ray worker per trial
also isolates, but costs 1.5-5 s of interpreter start-up per trial on
2 cores; a fork server with the engine preloaded forks a clean child in milliseconds.
The fork server itself never calls LoadGen, so every child starts with LoadGen unconfigured.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import time

from tuner.trial import TrialConfig, TrialResult

# Imported once by the fork server, so no child pays for them: the parent's main module
# first (tuner.worker.forkserver_main says why: ~0.23 s per trial in a Ray worker); then the default runtime, LoadGen and
# the default workload's data reader. A module that is not installed is skipped.
_PRELOAD = ["tuner.worker.forkserver_main", "numpy", "onnxruntime", "mlperf_loadgen", "sklearn.datasets",
            "tuner.worker.measure", "workloads.digits", "backends.onnxruntime"]


def _child(cfg: TrialConfig, conn) -> None:
    import os

    from tuner.worker.measure import measure

    try:
        conn.send(measure(cfg))
    finally:
        conn.close()
    # The result is sent: skip interpreter teardown (runtime thread pools, module
    # finalisers), which took ~0.3 s per trial and ran into the next trial's start.
    os._exit(0)


def _share_main_path() -> None:
    """Tell the fork server (started with this environment) which main script to import."""
    import os
    import sys

    from tuner.worker.forkserver_main import MAIN_ENV

    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    path = getattr(main, "__file__", None)
    if path and spec is None and MAIN_ENV not in os.environ:
        os.environ[MAIN_ENV] = os.path.abspath(path)


def run_isolated(cfg: TrialConfig, timeout_s: float | None = None) -> TrialResult:
    _share_main_path()
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    receiver, sender = ctx.Pipe(duplex=False)
    started = time.time()
    proc = ctx.Process(target=_child, args=(cfg, sender), name=f"trial-{cfg.trial}")
    try:
        proc.start()
    except (EOFError, OSError) as exc:  # the fork server died (killed, out of memory)
        sender.close()
        receiver.close()
        return TrialResult.lost(f"crashed: the fork server was lost starting the trial "
                                f"({type(exc).__name__})", cfg.platform, started)
    sender.close()
    result: TrialResult | None = None
    received = started
    try:
        if receiver.poll(timeout_s):
            try:
                result = receiver.recv()
            except EOFError:  # the child died before sending
                result = None
        received = time.time()
        proc.join(timeout=10)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        receiver.close()
    if result is not None:
        _time_isolation(result, started, received)
        return result
    elapsed = time.time() - started
    if timeout_s is not None and elapsed >= timeout_s:
        cause = f"timeout: no result after {timeout_s:.0f} s"
    elif proc.exitcode is not None and proc.exitcode < 0:
        cause = f"crashed: killed by {signal.Signals(-proc.exitcode).name}"
    else:
        cause = f"crashed: exit code {proc.exitcode}"
    return TrialResult.lost(cause, cfg.platform, started)


def _time_isolation(result: TrialResult, started: float, received: float) -> None:
    """Add the fork server's share to the trial's timings: starting the child (fork, up to
    measure()'s first line) and bringing the result back (pickle, pipe, unpickle)."""
    timings = dict(result.system.get("timings_s") or {})
    measured_end = result.started_at + result.duration_s
    timings["isolation_start"] = max(0.0, result.started_at - started)
    timings["result_transfer"] = max(0.0, received - measured_end)
    timings["isolated"] = time.time() - started
    result.system = {**result.system, "timings_s": timings}
