"""The study loop: the driver alone talks to Optuna (ask/tell) and writes the records.

One multi-objective study per platform, each over its own space (``tuner.study.plan``), all
driven from this one process; the scheduler (``tuner.study.scheduler``) keeps as many trials of a
platform in flight as it has devices and hands back results, and ``tuner.study.outcome`` turns a
result into a record. Optuna's storage is a journal file in the run directory (one
writer: this driver), so rerunning with the same study name resumes: finished trials are
kept, trials a killed driver left running are re-measured once, nothing is measured twice.

Order per finished trial: write its LoadGen logs, add its record, then tell Optuna. A
driver killed between record and tell leaves a record for a RUNNING trial; the resume
tells Optuna from the record instead of measuring it again.

A point already measured in a study (same platform, parameters and fidelity) is answered
from the records, marked ``cached_from`` in Optuna, and costs no trial; a study whose
finite space is used up ends early, saying so. What the study measures again on purpose
(racing, the drift canary, rechecks: ``tuner.study.racing``) runs as Optuna trials of their
own beside the asked ones, and Optuna is told the configuration's pooled figure.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import optuna
from omegaconf import DictConfig

from experiments import noise
from experiments.mlperf import REPLAY, SHORT, scenario as scenario_facts
from experiments.objectives import ACCURACY, objective as objective_of
from experiments.records import Records
from search_spaces import AccuracyBook, make_sampler
from tuner.accuracy.floor import AccuracyFloor
from tuner.accuracy.planner import HOLD, AccuracyPlanner
from tuner.fleet.dispatch import DispatchError, Dispatcher
from tuner.study.journal import JOURNAL, open_journal
from tuner.study.outcome import Recorder
from tuner.study.plan import PlatformPlan, trial_config
from tuner.study.platform_study import PlatformStudy
from tuner.study.progress import StudyProgress, best_text
from tuner.study.racing import SEARCH, Repeats, judge, pooled_figure, repeat_config
from tuner.study.run_setup import RunSetup, prepare
from tuner.study.telling import tell
from tuner.study.scheduler import Finished, Scheduler
from tuner.trial import TrialConfig

class Driver:
    def __init__(self, cfg: DictConfig | RunSetup, dispatcher: Dispatcher | None = None,
                 console=None):
        """``cfg``: a run's set-up (the command line prepared it), or a config prepared here."""
        self.setup = cfg if isinstance(cfg, RunSetup) else prepare(cfg, dispatcher)
        self._own_dispatcher = self.setup.own_dispatcher
        cfg, dispatcher = self.setup.cfg, self.setup.dispatcher
        self.cfg = cfg
        self.run_dir = Path(cfg.run_dir).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.objective = scenario_facts(cfg.scenario.name).objective
        # the fidelity this run's search records carry: a replayed answer is never "short"
        self.fidelity = (dispatcher.search_fidelity if dispatcher is not None else None) or (
            REPLAY if cfg.cluster.mode == "replay" else SHORT)
        self.records, self.storage = Records(self.run_dir), open_journal(self.run_dir)
        self.recorder = Recorder(self.run_dir, self.records,
                                 AccuracyFloor(self.setup.floor, cfg.study.accuracy_floor_fraction),
                                 cfg.measurement.noise_prior)
        self.dispatcher = dispatcher
        self.console = console
        self.studies: list[PlatformStudy] = []
        self._accuracy: AccuracyBook | None = None  # what the samplers know of accuracy
        self.repeats: Repeats | None = None  # racing, canary, rechecks (tuner.study.racing)
        # accuracy shared across platforms and runs (measured trials only; a replay or a
        # simulation answers accuracy from its table)
        self.planner = AccuracyPlanner(self.run_dir, cfg.fidelity, self.records.rows,
                                       self.recorder.floor.reference) \
            if self.fidelity == SHORT else None

    # --- setup ---------------------------------------------------------------------
    def _open_study(self, plan: PlatformPlan) -> PlatformStudy:
        name = f"{self.cfg.study.name}.{plan.platform}"
        directions = [objective_of(self.objective).direction, ACCURACY.direction]
        fresh = name not in {s.study_name for s in optuna.get_all_study_summaries(self.storage)}
        warm = self.setup.warm_start(self.records.rows, plan, self.objective,
                                     self._print) if fresh else None
        study = optuna.create_study(
            study_name=name, storage=self.storage, directions=directions, load_if_exists=True,
            sampler=make_sampler(self.cfg.study.sampler, self.cfg.study.seed, space=plan.space,
                                 warm_start=warm, known_accuracy=self._known_accuracy(plan),
                                 cost_aware=bool(self.cfg.study.cost_aware)))
        study.set_metric_names([self.objective, "accuracy"])
        for point in (warm.enqueue if warm else []):
            study.enqueue_trial(point, user_attrs={"warm_start": True})
        ps = PlatformStudy(plan, name, study, int(self.cfg.study.n_trials))
        ps.size = plan.space.size() if plan.space.is_finite() else None
        for row in self.records.rows:
            if row["study"] == name and row["fidelity"] == self.fidelity:
                ps.measured.setdefault(plan.space.key(json.loads(row["params"])), row["trial"])
        self._recover(ps)
        return ps

    def _known_accuracy(self, plan: PlatformPlan) -> AccuracyBook:
        """One book of known accuracies shared by every platform's sampler (accuracy is the
        model's and the runtime's): seeded from this run's records, grown by each sampler."""
        if self._accuracy is None:
            rows = [r for r in self.records.rows
                    if r["fidelity"] == self.fidelity and r.get("accuracy_low") is None]
            self._accuracy = AccuracyBook.from_records(rows, plan.space)
            prior = self.setup.accuracy_prior(plan.space)
            if prior:
                self._accuracy.merge(prior, prior=True, source="shipped with the models")
                self._print(f"accuracy prior: {len(prior)} accuracy key(s) from the figures "
                            f"shipped with the {self.cfg.workload.name} models (each trial "
                            "still measures or inherits its own)")
        return self._accuracy

    def _recover(self, ps: PlatformStudy) -> None:
        """Resume: tell what a killed driver recorded but never told; re-queue the rest."""
        states = optuna.trial.TrialState
        for frozen in ps.study.get_trials(deepcopy=False):
            if frozen.state == states.COMPLETE:
                ps.finished += not {"cached_from", "repeat_of"} & set(frozen.user_attrs)
            elif frozen.state == states.RUNNING and (not frozen.params
                                                     or "repeat_of_inflight" in frozen.user_attrs):
                # killed between ask and suggest, or while telling a repeat: never measured
                ps.study.tell(optuna.trial.Trial(ps.study, frozen._trial_id), state=states.FAIL)
            elif frozen.state in (states.RUNNING, states.WAITING) and frozen.params:
                row = self.records.find(ps.name, frozen.number, self.fidelity)
                trial = optuna.trial.Trial(ps.study, frozen._trial_id)
                again = "repeat_of" in frozen.user_attrs  # racing plans it anew from the records
                if row is not None:
                    tell(ps.study, trial, row, self.objective, self.fidelity == SHORT)
                    ps.finished += not again
                else:
                    ps.study.tell(trial, state=states.FAIL)
                    if not again:
                        ps.study.enqueue_trial(frozen.params,
                                               user_attrs={"requeued_from": frozen.number})

    # --- the loop ------------------------------------------------------------------
    def run(self) -> list[PlatformStudy]:
        own = self._own_dispatcher
        self.dispatcher = self.setup.connect()
        try:
            plans = self.setup.plans()
            self._say_skipped(plans)
            self.scheduler = Scheduler(self.dispatcher, self.cfg.study.trial_timeout_s)
            for plan in plans:
                self.scheduler.add_lane(plan.platform, plan.devices)
            self.studies = [self._open_study(plan) for plan in plans]
            if self.fidelity == SHORT or (self.fidelity == REPLAY and self.cfg.cluster.replay_noise):
                self.repeats = Repeats(self.cfg, self.records.rows, self.objective, self.fidelity)
            for ps in self.studies:
                ps.lane = self.scheduler.lanes[ps.platform]
            self._loop()
        finally:
            if self.records.rows:
                self.records.flush()  # fold many part files into one
            if own:
                self.dispatcher.shutdown()
        return self.studies

    def _say_skipped(self, plans: list[PlatformPlan]) -> None:
        for line in getattr(plans, "notes", ()):  # e.g. a platform the task does not run on
            self._print(line)
        for plan in plans:
            for runtime, why in plan.skipped.items():
                self._print(f"{plan.platform}: skipping runtime {runtime} ({why})")

    def _print(self, text: str) -> None:
        (self.console.print if self.console is not None else print)(text)

    def _loop(self) -> None:
        timeout = self.cfg.study.timeout_s
        deadline = time.time() + timeout if timeout else None
        with StudyProgress(self.studies, self.console, self.cfg.progress) as progress:
            while True:
                asking = deadline is None or time.time() < deadline
                for ps in self.studies:
                    self._release_held(ps)
                    if asking:
                        self._fill(ps)
                if not self.scheduler.busy and not (asking and self.scheduler.holding):
                    break
                for item in self.scheduler.poll(timeout_s=1.0):
                    ps = next(p for p in self.studies if p.platform == item.lane.platform)
                    self._finish(ps, item)
                    progress.update(ps)
        for ps in self.studies:
            self._drop_held(ps, "never run: the study ended first")
            if ps.ended:
                self._print(f"{ps.name}: {ps.ended}")

    def _wants_more(self, ps: PlatformStudy) -> bool:
        lane = self.scheduler.lanes[ps.platform]
        if not lane.devices and lane.stopped:
            ps.ended = ps.ended or f"stopped: {lane.stopped}"
            self._drop_held(ps, f"never run: {lane.stopped}")
            ps.target = min(ps.target, ps.finished + len(lane.inflight))
        searching = sum(i.tcfg.measured_for == SEARCH for i in lane.inflight.values())
        return not ps.ended and ps.finished + searching + len(ps.held) < ps.target

    def _fill(self, ps: PlatformStudy) -> None:
        """Submit while the platform has a free device: the study's next re-measurement
        (racing, canary, recheck: an Optuna trial of its own), else a new point."""
        more = self._wants_more(ps)  # also ends a study whose platform has no device left
        while self.scheduler.lanes[ps.platform].free():
            job = self.repeats.next(ps.name) if self.repeats is not None else None
            if job is not None:
                ps.study.enqueue_trial(job.params, user_attrs=job.attrs(), skip_if_exists=False)
            if (job is None and not more) or not self._ask(ps):
                return
            more = self._wants_more(ps)

    def _ask(self, ps: PlatformStudy) -> bool:
        """Ask for a point and submit it, or answer it from the records when it was measured
        before. False when it repeats a point still in flight: ask again after a result."""
        trial = ps.study.ask()
        params = ps.plan.space.suggest(trial)
        if trial.user_attrs.get("repeat_of") is not None:  # a re-measurement (_remeasure)
            self.scheduler.submit(repeat_config(trial_config(ps.plan, ps.name, trial.number,
                                                             params), trial.user_attrs), trial)
            return True
        key = ps.plan.space.key(params)
        earlier = ps.measured.get(key)
        if earlier is not None:
            return self._answer_from_records(ps, trial, earlier)
        ps.repeats_in_a_row = 0
        ps.measured[key] = trial.number
        return self._submit(ps, trial, trial_config(ps.plan, ps.name, trial.number, params))

    def _submit(self, ps: PlatformStudy, trial, tcfg: TrialConfig) -> bool:
        """Submit with its accuracy plan; False when held for another trial measuring the
        same accuracy key (submitted once that one is recorded)."""
        if self.planner is not None:
            plan = self.planner.plan(tcfg, self.recorder.floor.value(ps.name) or None)
            if plan == HOLD:
                ps.held.append((trial, tcfg))
                return False
            tcfg.accuracy = plan
        self.scheduler.submit(tcfg, token=trial)
        return True

    def _drop_held(self, ps: PlatformStudy, why: str) -> None:
        """Held trials that will never run (their platform is gone, the study ended): told
        as failed, so none is left RUNNING in the journal."""
        for trial, _ in ps.held:
            trial.set_user_attr("never_run", why[:500])
            ps.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        ps.held = []

    def _release_held(self, ps: PlatformStudy) -> None:
        held, ps.held = ps.held, []
        for trial, tcfg in held:
            if self.scheduler.lanes[ps.platform].free():
                self._submit(ps, trial, tcfg)
            else:
                ps.held.append((trial, tcfg))

    def _answer_from_records(self, ps: PlatformStudy, trial, earlier: int) -> bool:
        """Tell a repeated proposal the figures already recorded (no measurement, no trial
        counted). An earlier trial still in flight has no figures yet: the proposal is told
        as failed (samplers ignore it) and the caller stops asking for now."""
        row = self.records.find(ps.name, earlier, self.fidelity)
        if row is None:
            trial.set_user_attr("repeat_of_inflight", earlier)
            ps.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            return False
        trial.set_user_attr("cached_from", earlier)
        tell(ps.study, trial, row, self.objective, costs_device_time=False)
        ps.cached += 1
        ps.repeats_in_a_row += 1
        ps.check_exhausted()
        return True

    def _finish(self, ps: PlatformStudy, item: Finished) -> None:
        tcfg, again = item.tcfg, item.tcfg.measured_for != SEARCH
        if again:
            judge(self.records.rows, tcfg, item.result, self.objective,
                  self.records.find(ps.name, tcfg.repeat_of, self.fidelity),
                  self.cfg.measurement.noise_prior)
        row = self.recorder.row(tcfg, item.result, self.objective)
        if self.planner is not None:
            self.planner.observe(row)
            if row["state"] == "failed":
                self.planner.release(row["accuracy_key"])
        if again:  # Optuna is told the configuration's pooled figure
            self.repeats.finished(noise.config_key(row))
            row = {**row, self.objective: pooled_figure(self.records.rows, row, self.objective,
                                                        self.cfg.measurement.noise_prior)}
        tell(ps.study, item.token, row, self.objective, self.fidelity == SHORT)
        ps.finished += not again
        ps.best = best_text(self.records.rows, ps.name, self.objective)


def run(cfg: DictConfig | RunSetup, console=None) -> Path:
    """Run (or resume) the study and write the Pareto report; returns the run directory."""
    from experiments.report import print_fronts, render

    driver = Driver(cfg, console=console)
    out = console.print if console is not None else print
    try:
        driver.run()
    finally:
        if driver.records.rows:
            print_fronts(driver.records.rows, console)
            out(f"records: {driver.records.path}")
            try:
                paths = render(driver.run_dir)
            except OSError as exc:  # a full or read-only disk: the records are what matter
                out(f"report not written: {exc}")
                paths = {}
            for kind, path in paths.items():
                out(f"{kind}: {path}")
    return driver.run_dir


__all__ = ["Driver", "DispatchError", "JOURNAL", "run"]
