"""Trials in flight on a fleet: one lane per platform, as many trials as it has devices.

The scheduler knows nothing of Optuna or records: it submits trial configs to the
dispatcher, and hands back each one's result as it finishes, including the results it had
to make up itself, for a trial whose node was lost or which never answered.

Node liveness: Ray fails a task whose node crashed (NodeDiedError), but a task on a node
that hangs or drops off the network never resolves; the cluster marks that node dead once
its health checks fail, so the scheduler follows the cluster's node list while trials are
in flight and fails the trials of a platform with no alive node left (a task pending for a
platform whose last node died would wait forever).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from tuner.fleet.dispatch import DRIVER_GRACE_S
from tuner.trial import TrialConfig, TrialResult

# How often the scheduler asks the cluster which nodes are alive while trials are in flight.
LIVENESS_PERIOD_S = 2.0
# Ray may fail a task with NodeDiedError ~1 s after its node crashed, before the GCS
# health checks mark the node dead (~15 s with Ray's defaults). Until the cluster's node
# list agrees, the platform gets no new trial (it would be sent to the dead node and wait
# there); if the node is still listed alive after this long, the platform resumes.
NODE_LOSS_HOLD_S = 45.0


@dataclass
class Inflight:
    tcfg: TrialConfig
    token: Any  # the caller's handle (an Optuna trial, a job): handed back with the result
    started: float  # time.time()


@dataclass
class Lane:
    """One platform's devices under test."""

    platform: str
    devices: int
    inflight: dict[Any, Inflight] = field(default_factory=dict)
    hold_until: float = 0.0  # time.monotonic(): no new trial before (a node was lost)
    stopped: str = ""  # why the lane has no device left

    def held(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.hold_until

    def free(self) -> int:
        """Trials that may be submitted now."""
        if self.held():
            return 0
        return max(0, self.devices - len(self.inflight))


@dataclass
class Finished:
    lane: Lane
    tcfg: TrialConfig
    token: Any
    result: TrialResult


class Scheduler:
    def __init__(self, dispatcher, trial_timeout_s: float, grace_s: float = DRIVER_GRACE_S,
                 liveness_period_s: float = LIVENESS_PERIOD_S):
        self.dispatcher = dispatcher
        self.liveness_period_s = liveness_period_s
        self.trial_timeout_s = float(trial_timeout_s)
        self.limit_s = self.trial_timeout_s + grace_s
        self.lanes: dict[str, Lane] = {}
        self._next_liveness = 0.0

    def add_lane(self, platform: str, devices: int) -> Lane:
        lane = self.lanes[platform] = Lane(platform, int(devices))
        return lane

    # --- submitting -------------------------------------------------------------
    def submit(self, tcfg: TrialConfig, token: Any = None) -> None:
        lane = self.lanes[tcfg.platform]
        ref = self.dispatcher.submit(tcfg, self.trial_timeout_s)
        lane.inflight[ref] = Inflight(tcfg, token, time.time())

    @property
    def busy(self) -> bool:
        return any(lane.inflight for lane in self.lanes.values())

    @property
    def holding(self) -> bool:
        """A lane is held after a node loss and may get devices back."""
        now = time.monotonic()
        return any(lane.held(now) and lane.devices for lane in self.lanes.values())

    # --- collecting -------------------------------------------------------------
    def poll(self, timeout_s: float = 1.0) -> list[Finished]:
        """Wait up to ``timeout_s`` for results; returns every trial that finished, was
        lost with its node, or ran past its timeout."""
        refs = [ref for lane in self.lanes.values() for ref in lane.inflight]
        if not refs:
            time.sleep(min(timeout_s, 1.0))  # only held lanes: wait for the cluster's view
            self.check_liveness()
            return []
        done = []
        for ref in self.dispatcher.wait(refs, timeout_s=timeout_s):
            lane = next(lane for lane in self.lanes.values() if ref in lane.inflight)
            done.append(self._finish(lane, ref, self.dispatcher.result(ref)))
        done += self._expire_overdue()
        done += self.check_liveness()
        return done

    def run_all(self, jobs: list[TrialConfig], on_done) -> None:
        """Measure every job, as many at a time per platform as it has devices, calling
        ``on_done(tcfg, result)`` as each finishes (promote and reproduce)."""
        queue = list(jobs)
        while queue or self.busy:
            for tcfg in list(queue):
                lane = self.lanes[tcfg.platform]
                if lane.free():
                    queue.remove(tcfg)
                    self.submit(tcfg)
                elif not lane.devices:  # no device left: the job cannot run
                    queue.remove(tcfg)
                    on_done(tcfg, TrialResult.lost(f"node lost: {lane.stopped}",
                                                   tcfg.platform, time.time()))
            for item in self.poll(timeout_s=2.0):
                on_done(item.tcfg, item.result)

    def _finish(self, lane: Lane, ref, result: TrialResult | str) -> Finished:
        item = lane.inflight.pop(ref)
        if isinstance(result, str):  # the task itself was lost (node died, cancelled)
            result = TrialResult.lost(result, lane.platform, item.started)
        if (result.cause or "").startswith("node lost") and lane.devices:
            if not self._recount(lane):
                # Ray reported the loss before the cluster's node list shows it
                lane.hold_until = time.monotonic() + NODE_LOSS_HOLD_S
        return Finished(lane, item.tcfg, item.token, result)

    def _expire_overdue(self) -> list[Finished]:
        now, out = time.time(), []
        for lane in self.lanes.values():
            for ref, item in list(lane.inflight.items()):
                if now - item.started > self.limit_s:
                    self.dispatcher.cancel(ref)
                    out.append(self._finish(lane, ref, "timeout: no answer from the node "
                                                       f"after {self.limit_s:.0f} s"))
        return out

    def check_liveness(self) -> list[Finished]:
        """Follow the cluster's node list: recount held lanes, and fail the trials in flight
        on a platform that has no alive node left."""
        now = time.monotonic()
        if now < self._next_liveness or not any(lane.inflight or lane.hold_until
                                                for lane in self.lanes.values()):
            return []
        self._next_liveness = now + self.liveness_period_s
        alive = self.dispatcher.platforms()
        out = []
        for lane in self.lanes.values():
            if lane.hold_until and not self._recount(lane, alive) and not lane.held(now):
                lane.hold_until = 0.0  # still listed alive after the hold: it did not die
            if not lane.inflight or alive.get(lane.platform):
                continue
            for ref in list(lane.inflight):
                try:
                    self.dispatcher.cancel(ref)
                except Exception:  # noqa: BLE001 - the node is gone; nothing left to cancel
                    pass
                out.append(self._finish(lane, ref, "node lost: no alive node of platform "
                                        f"{lane.platform!r} left (the cluster marked it dead)"))
        return out

    def _recount(self, lane: Lane, alive: dict[str, list] | None = None) -> bool:
        """After a node is lost, trust only the devices still alive. True if the count
        dropped."""
        alive = self.dispatcher.platforms() if alive is None else alive
        devices = sum(n.devices for n in alive.get(lane.platform, []))
        if devices >= lane.devices:
            return False
        lane.devices, lane.hold_until = devices, 0.0
        if devices == 0:
            lane.stopped = f"no {lane.platform} node left"
        return True
