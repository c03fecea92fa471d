"""The study loop: the driver alone talks to Optuna (ask/tell) and writes the records.

One multi-objective study per platform, all driven concurrently from this one process:
as many trials of a platform in flight as it has devices under test. Optuna's storage
is a journal file in the run directory (one writer: this driver), so rerunning with the
same study name resumes: finished trials are kept, trials a killed driver left running
are re-measured once, and nothing is measured twice.

Order per finished trial: write its LoadGen logs, add its record, then tell Optuna. A
driver killed between record and tell leaves a record for a RUNNING trial; the resume
tells Optuna from the record instead of measuring it again.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import DictConfig, OmegaConf

from experiments.records import Records
from search_spaces import SearchSpace
from tuner.config import validate
from tuner.dispatch import DRIVER_GRACE_S, DispatchError, RayDispatcher, local_runtimes
from tuner.trial import Fidelity, TrialConfig, TrialResult

JOURNAL = "study.journal"
THROUGHPUT_SCENARIOS = ("Offline", "Server")
# Objective values told for a trial with no measurement: worse than any real one, so the
# sampler learns the region is bad (a FAIL state would be ignored and proposed again).
PENALTY = {"latency_ms": 1e9, "qps": 0.0}
# How often the driver asks the cluster which nodes are alive while trials are in flight.
LIVENESS_PERIOD_S = 2.0
# Ray may fail a task with NodeDiedError ~1 s after its node crashed, before the GCS
# health checks mark the node dead (~15 s with Ray's defaults). Until the cluster's node
# list agrees, the platform gets no new trial (it would be sent to the dead node and wait
# there); if the node is still listed alive after this long, the platform resumes.
NODE_LOSS_HOLD_S = 45.0


def speed_objective(scenario: str) -> str:
    return "qps" if scenario in THROUGHPUT_SCENARIOS else "latency_ms"


@dataclass
class PlatformStudy:
    platform: str
    name: str
    study: optuna.Study
    devices: int
    target: int  # trials to finish in total, earlier runs included
    finished: int = 0
    inflight: dict[Any, tuple[optuna.trial.Trial, TrialConfig, float]] = field(default_factory=dict)
    best: str = ""
    hold_until: float = 0.0  # time.monotonic(): no new trial before (a node was lost)

    @property
    def wants_more(self) -> bool:
        return self.finished + len(self.inflight) < self.target

    def held(self, now: float) -> bool:
        return now < self.hold_until


class Driver:
    def __init__(self, cfg: DictConfig, dispatcher: RayDispatcher | None = None,
                 console=None):
        validate(cfg)
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.space = SearchSpace.from_config(
            OmegaConf.to_container(cfg.space, resolve=True),
            OmegaConf.to_container(cfg.backends, resolve=True),
            OmegaConf.to_container(cfg.scenario, resolve=True))
        self.speed = speed_objective(cfg.scenario.name)
        self.records = Records(self.run_dir)
        self.storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(self.run_dir / JOURNAL)))
        self.floor_fixed = self._fixed_floor()
        self.dispatcher = dispatcher
        self.console = console
        self.studies: list[PlatformStudy] = []
        self._next_liveness = 0.0

    # --- setup ---------------------------------------------------------------------
    def _fixed_floor(self) -> float | None:
        study = self.cfg.study
        if study.accuracy_floor is not None:
            return float(study.accuracy_floor)
        from tuner.workloads import create

        workload = create(OmegaConf.to_container(self.cfg.workload, resolve=True),
                          cache_dir=self.cfg.cache_dir)
        reference = workload.reference_accuracy()
        return None if reference is None else study.accuracy_floor_fraction * reference

    def floor(self, ps: PlatformStudy) -> float:
        """A fixed floor, or (no reference known) the fraction of the best fp32 seen so far."""
        if self.floor_fixed is not None:
            return self.floor_fixed
        fp32 = [r["accuracy"] for r in self.records.rows if r["study"] == ps.name
                and r["accuracy"] is not None and json.loads(r["params"]).get("precision") == "fp32"]
        return self.cfg.study.accuracy_floor_fraction * max(fp32) if fp32 else 0.0

    def _sampler(self) -> optuna.samplers.BaseSampler:
        return make_sampler(self.cfg.study.sampler, self.cfg.study.seed)

    def _platforms(self) -> list[str]:
        if self.cfg.cluster.mode == "local":
            return [local_platform_name(self.cfg)]
        requested = list(self.cfg.cluster.platforms)
        return requested or sorted(self.dispatcher.platforms())

    def _open_study(self, platform: str, devices: int) -> PlatformStudy:
        name = f"{self.cfg.study.name}.{platform}"
        directions = ["maximize" if self.speed == "qps" else "minimize", "maximize"]
        study = optuna.create_study(study_name=name, storage=self.storage,
                                    sampler=self._sampler(), directions=directions,
                                    load_if_exists=True)
        study.set_metric_names([self.speed, "accuracy"])
        ps = PlatformStudy(platform, name, study, devices, int(self.cfg.study.n_trials))
        self._recover(ps)
        return ps

    def _recover(self, ps: PlatformStudy) -> None:
        """Resume: tell what a killed driver recorded but never told; re-queue the rest."""
        states = optuna.trial.TrialState
        for frozen in ps.study.get_trials(deepcopy=False):
            if frozen.state == states.COMPLETE:
                ps.finished += 1
            elif frozen.state in (states.RUNNING, states.WAITING) and frozen.params:
                row = self.records.find(ps.name, frozen.number)
                trial = optuna.trial.Trial(ps.study, frozen._trial_id)
                if row is not None:
                    self._tell(ps, trial, row)
                    ps.finished += 1
                else:
                    ps.study.tell(trial, state=states.FAIL)
                    ps.study.enqueue_trial(frozen.params, user_attrs={"requeued_from": frozen.number})

    # --- the loop ------------------------------------------------------------------
    def run(self) -> list[PlatformStudy]:
        own = self.dispatcher is None
        if own:
            self.dispatcher = make_dispatcher(self.cfg)
        try:
            platforms = self._platforms()
            devices = self.dispatcher.check(platforms, self.space.backends())
            self.studies = [self._open_study(p, devices[p]) for p in platforms]
            self._loop()
        finally:
            if own:
                self.dispatcher.shutdown()
        return self.studies

    def _loop(self) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        deadline = (time.time() + self.cfg.study.timeout_s) if self.cfg.study.timeout_s else None
        progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                            console=self.console, disable=not self.cfg.progress)
        with progress:
            tasks = {ps.name: progress.add_task(ps.name, total=ps.target, completed=ps.finished)
                     for ps in self.studies}
            while True:
                asking = deadline is None or time.time() < deadline
                now = time.monotonic()
                for ps in self.studies:
                    while (asking and ps.wants_more and len(ps.inflight) < ps.devices
                           and not ps.held(now)):
                        self._submit(ps)
                refs = [ref for ps in self.studies for ref in ps.inflight]
                waiting = asking and any(ps.held(now) and ps.wants_more for ps in self.studies)
                if not refs and not waiting:
                    break
                if not refs:
                    time.sleep(1.0)  # only held platforms left: wait for the cluster's view
                for ref in self.dispatcher.wait(refs, timeout_s=1.0):
                    ps = next(p for p in self.studies if ref in p.inflight)
                    self._finish(ps, ref, self.dispatcher.result(ref))
                    progress.update(tasks[ps.name], completed=ps.finished,
                                    description=f"{ps.name} {ps.best}")
                self._expire_overdue()
                self._check_liveness()

    def _submit(self, ps: PlatformStudy) -> None:
        trial = ps.study.ask()
        params = self.space.suggest(trial)
        tcfg = self.trial_config(ps, trial.number, params)
        trial.set_user_attr("platform", ps.platform)
        ref = self.dispatcher.submit(tcfg, self.cfg.study.trial_timeout_s)
        ps.inflight[ref] = (trial, tcfg, time.time())

    def trial_config(self, ps: PlatformStudy, number: int, params: dict[str, Any]) -> TrialConfig:
        cfg = self.cfg
        point = self.space.split(params)
        fixed = OmegaConf.to_container(cfg.backends[point.backend].fixed, resolve=True)
        options = {"server_load": cfg.scenario.server_load,
                   "server_latency_ms": cfg.scenario.server_latency_ms, **point.scenario}
        return TrialConfig(
            study=ps.name, trial=number, platform=ps.platform,
            workload=OmegaConf.to_container(cfg.workload, resolve=True),
            model=point.model, backend=point.backend, knobs={**fixed, **point.knobs},
            scenario=cfg.scenario.name, scenario_options=options,
            fidelity=Fidelity("short", cfg.fidelity.min_duration_ms, cfg.fidelity.min_query_count,
                              cfg.fidelity.max_duration_ms),
            accuracy_sample_count=cfg.fidelity.accuracy_sample_count,
            cache_dir=cfg.cache_dir, params=dict(params))

    def _expire_overdue(self) -> None:
        limit = self.cfg.study.trial_timeout_s + DRIVER_GRACE_S
        now = time.time()
        for ps in self.studies:
            for ref, (_, _, started) in list(ps.inflight.items()):
                if now - started > limit:
                    self.dispatcher.cancel(ref)
                    self._finish(ps, ref, f"timeout: no answer from the node after {limit:.0f} s")

    def _check_liveness(self) -> None:
        """Follow the cluster's node list: recount held platforms, and fail the in-flight
        trials of a platform that has no alive node left.

        Ray fails a task whose node crashed (NodeDiedError), but a task on a node that hangs
        or drops off the network (its processes alive, its connections open) never resolves:
        the cluster marks the node dead once its health checks fail, yet the task would wait
        for the trial timeout. A task still pending for a platform whose last node died
        would wait forever."""
        now = time.monotonic()
        if now < self._next_liveness or not any(ps.inflight or ps.hold_until
                                                for ps in self.studies):
            return
        self._next_liveness = now + LIVENESS_PERIOD_S
        alive = self.dispatcher.platforms()
        for ps in self.studies:
            if ps.hold_until and not self._recount_devices(ps, alive) and not ps.held(now):
                ps.hold_until = 0.0  # still listed alive after the hold: it did not die
            if not ps.inflight or alive.get(ps.platform):
                continue
            for ref in list(ps.inflight):
                try:
                    self.dispatcher.cancel(ref)
                except Exception:  # noqa: BLE001 - the node is gone; nothing left to cancel
                    pass
                self._finish(ps, ref, f"node lost: no alive node of platform {ps.platform!r} "
                                      "left (the cluster marked it dead)")

    def _finish(self, ps: PlatformStudy, ref, result: TrialResult | str) -> None:
        trial, tcfg, started = ps.inflight.pop(ref)
        if isinstance(result, str):  # the task itself was lost (node died, cancelled)
            result = TrialResult.lost(result, ps.platform, started)
        row = self.record(ps, tcfg, result)
        self._tell(ps, trial, row)
        ps.finished += 1
        self._update_best(ps)
        if (result.cause or "").startswith("node lost") and ps.devices:
            if not self._recount_devices(ps):
                # Ray reported the loss before the cluster's node list shows it
                ps.hold_until = time.monotonic() + NODE_LOSS_HOLD_S

    def _recount_devices(self, ps: PlatformStudy,
                         alive: dict[str, list] | None = None) -> bool:
        """After a node is lost, trust only the devices still alive (a task asking for a
        platform with no node left would wait forever). True if the count dropped."""
        alive = self.dispatcher.platforms() if alive is None else alive
        devices = sum(n.devices for n in alive.get(ps.platform, []))
        if devices >= ps.devices:
            return False
        ps.devices, ps.hold_until = devices, 0.0
        if devices == 0:
            ps.target = ps.finished + len(ps.inflight)
            ps.best += f" (stopped: no {ps.platform} node left)"
        return True

    # --- outcome -------------------------------------------------------------------
    def record(self, ps: PlatformStudy, tcfg: TrialConfig, result: TrialResult,
               fidelity: str = "short") -> dict[str, Any]:
        floor = self.floor(ps)
        if not result.ok:
            state, cause = "failed", result.cause
        elif not result.valid:
            state, cause = "infeasible", result.cause or "LoadGen run INVALID"
        elif result.accuracy is not None and result.accuracy < floor:
            state, cause = "infeasible", f"accuracy {result.accuracy:.4f} below floor {floor:.4f}"
        else:
            state, cause = "complete", result.cause
        log_dir = self.write_logs(ps.name, tcfg.trial, result, fidelity)
        row = {
            "study": ps.name, "trial": tcfg.trial, "state": state, "fidelity": fidelity,
            "platform": ps.platform, "node": result.node, "backend": tcfg.backend,
            "model": result.model_name, "scenario": tcfg.scenario, "objective": self.speed,
            "params": json.dumps(tcfg.params, sort_keys=True),
            "latency_ms": result.latency_ms, "p90_latency_ms": result.p90_latency_ms,
            "qps": result.qps, "accuracy": result.accuracy, "accuracy_floor": floor,
            "valid": bool(result.valid), "cause": cause, "started_at": result.started_at,
            "duration_s": result.duration_s, "log_dir": log_dir,
            "config": json.dumps(tcfg.to_dict(), sort_keys=True, default=str),
            "system": json.dumps({**result.system, "settings": result.settings}, default=str),
        }
        self.records.add(row)
        return row

    def write_logs(self, study: str, trial: int, result: TrialResult, fidelity: str) -> str:
        rel = Path("trials") / study / f"{trial:05d}" / fidelity
        out = self.run_dir / rel
        for name, text in result.logs.items():
            path = out / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        return str(rel)

    def _tell(self, ps: PlatformStudy, trial: optuna.trial.Trial, row: dict[str, Any]) -> None:
        speed, accuracy = row[self.speed], row["accuracy"]
        measured = row["state"] != "failed" and speed is not None and accuracy is not None
        values = [speed, accuracy] if measured else [PENALTY[self.speed], 0.0]
        floor = row["accuracy_floor"] or 0.0
        # Feasible when every constraint <= 0 (Optuna's convention).
        trial.set_constraint("accuracy_floor", floor - (accuracy if accuracy is not None else 0.0))
        trial.set_constraint("loadgen_valid", 0.0 if row["valid"] else 1.0)
        trial.set_user_attr("state", row["state"])
        if row["cause"]:
            trial.set_user_attr("cause", row["cause"][:500])
        ps.study.tell(trial, values, skip_if_finished=True)

    def _update_best(self, ps: PlatformStudy) -> None:
        rows = [r for r in self.records.rows if r["study"] == ps.name and r["state"] == "complete"]
        if not rows:
            ps.best = "(no feasible trial yet)"
            return
        pick = max if self.speed == "qps" else min
        best = pick(rows, key=lambda r: r[self.speed])
        unit = "samples/s" if self.speed == "qps" else "ms"
        ps.best = f"best {best[self.speed]:.3g} {unit} @ top-1 {best['accuracy']:.3f}"


def make_sampler(kind: str, seed: int | None) -> optuna.samplers.BaseSampler:
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # group=True: TPE models each set of co-occurring (conditional) dims jointly;
    # constant_liar: parallel trials in flight are not proposed twice.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                      constant_liar=True, n_startup_trials=8)


def local_platform_name(cfg: DictConfig) -> str:
    if cfg.platform.name != "auto":
        return cfg.platform.name
    try:
        from tuner.platforms import detect
    except ImportError:  # detection not available: name the architecture
        import platform

        return platform.machine().lower().replace("_", "")
    return detect().platform


def make_dispatcher(cfg: DictConfig) -> RayDispatcher:
    if cfg.cluster.mode == "local":
        return RayDispatcher("local", platform=local_platform_name(cfg),
                             num_cpus=cfg.cluster.num_cpus, runtimes=local_runtimes())
    return RayDispatcher("ray", address=cfg.cluster.address)


def run(cfg: DictConfig, console=None) -> Path:
    """Run (or resume) the study and write the Pareto report; returns the run directory."""
    from experiments.report import print_fronts, render

    driver = Driver(cfg, console=console)
    try:
        driver.run()
    finally:
        if driver.records.rows:
            paths = render(driver.run_dir)
            print_fronts(driver.records.rows, console)
            out = console.print if console is not None else print
            out(f"records: {driver.records.path}")
            for kind, path in paths.items():
                out(f"{kind}: {path}")
    return driver.run_dir


__all__ = ["Driver", "DispatchError", "run"]
