"""Before a run's first trial: which dispatcher answers it, which space a replay study
searches (the table's own), each platform's plan checked against the cluster, and the
accuracy floor known up front. ``prepare`` does it once (``RunSetup``), for the command
line and the driver alike; ``show_plan`` prints the plans and runs nothing."""
from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from tuner.config import BackendConfig, ConfigError, SpaceConfig, validate
from tuner.fleet.dispatch import Dispatcher
from tuner.study.plan import PlatformPlan, describe, make_plans


def fixed_floor(cfg: DictConfig) -> float | None:
    """The study's absolute accuracy floor, if one is known before any trial: the config's,
    else the workload's reference accuracy x the fraction (None: follow the best fp32)."""
    study = cfg.study
    if study.accuracy_floor is not None:
        return float(study.accuracy_floor)
    if cfg.cluster.mode == "replay":
        return None  # no workload: the table's own best fp32 sets it
    import workloads

    # The workload's class states it; building the workload would parse its dataset
    # (COCO's annotations, say) on the head node.
    try:
        conf = OmegaConf.to_container(cfg.workload, resolve=True)
        reference = workloads.workload_class(conf.get("name")).reference_accuracy(conf)
    except (KeyError, ValueError, OSError) as exc:
        raise ConfigError(f"workload: {exc}") from None
    return None if reference is None else study.accuracy_floor_fraction * reference


def shipped_accuracy_prior(cfg: DictConfig, space) -> dict[tuple, float]:
    """accuracy key -> the accuracy the workload's shipped models were measured at, for the
    keys of ``space`` (every value of the runtime's output-changing knobs: a prior, not a
    measurement). Empty for a replay, a workload that ships none, or a space with no grid."""
    if cfg.cluster.mode == "replay" or not space.is_finite():
        return {}
    import workloads
    from search_spaces.space import BACKEND, canonical

    conf = OmegaConf.to_container(cfg.workload, resolve=True)
    shipped = {(runtime, tuple(sorted((k, canonical(v)) for k, v in params.items()))): value
               for params, runtime, value in
               workloads.workload_class(conf.get("name")).shipped_accuracies(conf)}
    if not shipped:
        return {}
    model = [d.name for d in space.dims if d.role == "model"]
    prior = {}
    for point in space.grid():
        ours = tuple(sorted((k, canonical(point[k])) for k in model if k in point))
        value = shipped.get((point[BACKEND], ours))
        if value is not None:
            prior[space.accuracy_key(point)] = value
    return prior


def local_platform_name(cfg: DictConfig) -> str:
    if cfg.platform.name != "auto":
        return cfg.platform.name
    from tuner.machine.platforms import detect

    return detect(runtimes=False).platform


def make_dispatcher(cfg: DictConfig) -> Dispatcher:
    from tuner.fleet.dispatch import RayDispatcher, local_runtimes

    if cfg.cluster.mode == "replay":
        from tuner.fleet.replay import ReplayDispatcher

        return ReplayDispatcher(cfg.cluster.table, noise=cfg.cluster.replay_noise,
                                seed=cfg.study.seed)
    if cfg.cluster.mode == "local":
        return RayDispatcher("local", platform=local_platform_name(cfg),
                             num_cpus=cfg.cluster.num_cpus, runtimes=local_runtimes())
    return RayDispatcher("ray", address=cfg.cluster.address)


def with_table_space(cfg: DictConfig, dispatcher: Dispatcher) -> DictConfig:
    """A replay study searches the replayed table's own space: its dimensions and the
    values it holds (``ReplayDispatcher.space_config``), its runtimes and their knobs."""
    import copy

    table = dispatcher.space_config()
    cfg = copy.deepcopy(cfg)
    OmegaConf.set_struct(cfg, False)
    # typed nodes: OmegaConf refuses a plain dict where the schema has a dataclass
    cfg.space = OmegaConf.merge(OmegaConf.structured(SpaceConfig), {
        "name": table.get("name", "replay"), "model": table["model"],
        "backends": list(table["backends"])})
    for runtime in table["backends"]:
        cfg.backends[runtime] = OmegaConf.merge(OmegaConf.structured(BackendConfig), {
            "knobs": (table.get("knobs") or {}).get(runtime, {}), "fixed": {}})
    # scenario knobs too are the table's (e.g. batch_size of recorded Offline runs)
    cfg.scenario.knobs = table.get("params") or {}
    OmegaConf.set_struct(cfg, True)
    return cfg


def cluster_plans(cfg: DictConfig, dispatcher: Dispatcher) -> list[PlatformPlan]:
    """Each platform's plan, checked against the cluster (DispatchError if unrunnable)."""
    present = dispatcher.platforms()
    platforms = ([local_platform_name(cfg)] if cfg.cluster.mode == "local"
                 else list(cfg.cluster.platforms) or sorted(present))
    plans = make_plans(cfg, platforms, present)
    for plan in plans:
        points = dispatcher.points(plan.platform, cfg.scenario.name)
        if plan.space is not None and points is not None:  # a replayed table's, say
            plan.space = plan.space.restricted(points)
    return plans


def validated(cfg: DictConfig, dispatcher: Dispatcher | None = None
              ) -> tuple[DictConfig, Dispatcher | None]:
    """The run's config, validated. A replay run's space is its table's, read before
    validation, so its dispatcher is made (or the given one used) here and returned;
    otherwise the dispatcher comes back as given."""
    if cfg.cluster.mode == "replay":
        dispatcher = dispatcher or make_dispatcher(cfg)
        cfg = with_table_space(cfg, dispatcher)
    validate(cfg)
    return cfg, dispatcher


@dataclass
class RunSetup:
    """What a run knows before its first trial, worked out once by ``prepare``."""

    cfg: DictConfig  # validated (a replay's with its table's space)
    dispatcher: Dispatcher | None  # None until ``connect`` makes one (Ray)
    floor: float | None  # the fixed accuracy floor (None: a fraction of the fp32 reference)
    own_dispatcher: bool  # made here, not handed in: whoever runs the set-up shuts it down

    def connect(self) -> Dispatcher:
        if self.dispatcher is None:
            self.dispatcher = make_dispatcher(self.cfg)
        return self.dispatcher

    def plans(self) -> list[PlatformPlan]:
        """Each platform's plan, checked against the cluster (after ``connect``)."""
        return cluster_plans(self.cfg, self.connect())

    def accuracy_prior(self, space) -> dict[tuple, float]:
        return shipped_accuracy_prior(self.cfg, space)

    def warm_start(self, rows: list, plan: PlatformPlan, objective: str, say):
        return warm_start_plan(self.cfg, rows, plan, objective, say)


def prepare(cfg: DictConfig, dispatcher: Dispatcher | None = None) -> RunSetup:
    """Validate the config and fix the floor: everything that can fail before a trial."""
    own = dispatcher is None
    cfg, dispatcher = validated(cfg, dispatcher)
    return RunSetup(cfg, dispatcher, fixed_floor(cfg), own)


def show_plan(cfg: DictConfig, out=print) -> None:
    """Print each platform's plan (nodes, runtimes, knob ranges) and run nothing."""
    cfg, dispatcher = validated(cfg)
    dispatcher = dispatcher or make_dispatcher(cfg)
    try:
        out(describe(cluster_plans(cfg, dispatcher)))
    finally:
        dispatcher.shutdown()


def warm_start_plan(cfg: DictConfig, rows: list, plan: PlatformPlan, objective: str, say):
    """``study.warm_start``: what other platforms' records (run dirs, or study names of
    this run) say about this platform's space; None when none is given."""
    import json
    from pathlib import Path

    from experiments.mlperf import scenario as scenario_facts
    from experiments.published import of_our_runtimes
    from experiments.records import read
    from search_spaces import plan_warm_start

    sources = list(cfg.study.warm_start or [])
    if not sources:
        return None
    found_rows = []
    for source in sources:
        if Path(source).exists():
            found_rows += read(source).to_pylist()
        else:  # a study of this run
            found = [r for r in rows if r["study"] == source]
            if not found:
                raise ConfigError(f"study.warm_start: {source!r} is neither a run dir nor "
                                  "a study of this run")
            found_rows += found
    found_rows, left_out = of_our_runtimes(found_rows, "the warm start")
    if left_out:
        say(left_out)
    facts = scenario_facts(cfg.scenario.name)
    records = [{"platform": r["platform"], "params": json.loads(r["params"] or "{}"),
                objective: r[objective], "accuracy": r["accuracy"],
                "feasible": r["state"] == "complete"}
               for r in found_rows if r["platform"] != plan.platform
               and r["scenario"] == facts.name and r["state"] != "failed"]
    warm = plan_warm_start(records, plan.space, objectives=(objective, "accuracy"),
                           directions=("maximize" if facts.throughput else "minimize",
                                       "maximize"))
    say(f"{plan.platform}: warm start from {len(records)} record(s) of other platforms; "
        f"{len(warm.enqueue)} point(s) measured first" + "".join(f"; {n}" for n in warm.notes))
    return warm
