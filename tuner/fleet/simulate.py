"""Simulated devices under test, for measuring the driver and the fleet at scale.

Each trial is a real Ray task on a node of its platform that holds one of that node's
``dut_<platform>`` resources for a fixed time and then returns the figures a replay table
holds for the point: the dispatch, scheduling, recording and Optuna paths are the real
ones, the device is not. Every such record has fidelity ``simulated`` (never a measurement,
never promoted or packed). Used by ``benchmarks/scale_out.py``.
"""
from __future__ import annotations

import dataclasses
import time

from experiments.mlperf import SIMULATED
from tuner.fleet.dispatch import PLATFORM_LABEL, Dispatcher, RayDispatcher, dut_resource
from tuner.fleet.replay import ReplayDispatcher
from tuner.trial import TrialConfig, TrialResult


def _hold(answer: TrialResult, hold_s: float) -> TrialResult:
    time.sleep(hold_s)  # the simulated device is busy
    return answer


class SimulatedDispatcher(Dispatcher):
    """A ``RayDispatcher`` whose trials hold a device for ``hold_s`` and answer from a
    replay table."""

    search_fidelity = SIMULATED

    def __init__(self, ray: RayDispatcher, table: ReplayDispatcher, hold_s: float):
        import ray as ray_module

        self.ray, self.table, self.hold_s = ray, table, float(hold_s)
        self._remote = ray_module.remote(max_retries=0)(_hold)

    def platforms(self):
        """The cluster's nodes and devices, offering what the table's device offered."""
        table = self.table.platforms()
        out = {}
        for platform, nodes in self.ray.platforms().items():
            like = table.get(platform, [None])[0]
            out[platform] = [dataclasses.replace(n, runtimes=list(like.runtimes),
                                                 cores=like.cores) if like else n
                             for n in nodes]
        return out

    def check(self, platforms, runtimes):
        return self.ray.check(platforms, [])

    def space_config(self):
        return self.table.space_config()

    def points(self, platform, scenario):
        return self.table.points(platform, scenario)

    def submit(self, cfg: TrialConfig, timeout_s: float | None = None):
        answer = dataclasses.replace(self.table.answer(cfg), fidelity=SIMULATED)
        return self._remote.options(
            num_cpus=0, resources={dut_resource(cfg.platform): 1},
            label_selector={PLATFORM_LABEL: cfg.platform}).remote(answer, self.hold_s)

    def wait(self, refs, timeout_s):
        return self.ray.wait(refs, timeout_s)

    def result(self, ref):
        return self.ray.result(ref)

    def cancel(self, ref):
        self.ray.cancel(ref)

    def shutdown(self):
        self.ray.shutdown()
