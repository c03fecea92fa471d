"""Run one measurement in a fresh child process.

Why: LoadGen allows one ``TestSettings.FromConfig`` per process (a second call logs
``error_invalid_config``, which the submission checker rejects), and a runtime that
segfaults or hangs must take down only its trial. A fresh Ray worker per trial
(``max_calls=1``) also isolates, but costs 1.5-5 s of interpreter start-up per trial on
2 cores; a fork server with the engine preloaded forks a clean child in milliseconds.
The fork server itself never calls LoadGen, so every child starts with LoadGen unconfigured.
"""
from __future__ import annotations

import multiprocessing as mp
import signal
import time

from tuner.trial import TrialConfig, TrialResult

_PRELOAD = ["numpy", "tuner.measure"]


def _child(cfg: TrialConfig, conn) -> None:
    import os

    from tuner.measure import measure

    try:
        conn.send(measure(cfg))
    finally:
        conn.close()
    # The result is sent: skip interpreter teardown (runtime thread pools, module
    # finalisers), which took ~0.3 s per trial and ran into the next trial's start.
    os._exit(0)


def run_isolated(cfg: TrialConfig, timeout_s: float | None = None) -> TrialResult:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    receiver, sender = ctx.Pipe(duplex=False)
    started = time.time()
    proc = ctx.Process(target=_child, args=(cfg, sender), name=f"trial-{cfg.trial}")
    proc.start()
    sender.close()
    result: TrialResult | None = None
    try:
        if receiver.poll(timeout_s):
            try:
                result = receiver.recv()
            except EOFError:  # the child died before sending
                result = None
        proc.join(timeout=10)
    finally:
        if proc.is_alive():
            proc.kill()
            proc.join()
        receiver.close()
    if result is not None:
        return result
    elapsed = time.time() - started
    if timeout_s is not None and elapsed >= timeout_s:
        cause = f"timeout: no result after {timeout_s:.0f} s"
    elif proc.exitcode is not None and proc.exitcode < 0:
        cause = f"crashed: killed by {signal.Signals(-proc.exitcode).name}"
    else:
        cause = f"crashed: exit code {proc.exitcode}"
    return TrialResult.lost(cause, cfg.platform, started)
