"""What promote and reproduce share: a finished run's config and records, and measuring
a list of trial configs on the run's own dispatch path (the study's scheduler) with the
measuring node's facts attached for the MLPerf system description."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from omegaconf import DictConfig, OmegaConf

from experiments import noise
from experiments.mlperf import COMPLIANT_MIN_DURATION_MS
from experiments.records import Records
from experiments.report import fmt
from tuner.fleet.dispatch import PLATFORM_LABEL, DispatchError, RayDispatcher
from tuner.study.run_setup import fixed_floor, make_dispatcher
from tuner.accuracy.floor import AccuracyFloor
from tuner.study.outcome import Recorder
from tuner.study.scheduler import Scheduler
from tuner.trial import Fidelity, TrialConfig, TrialResult

Print = Callable[[str], None]


def load_run_config(run_dir: str | Path) -> DictConfig:
    """The run's exact config as Hydra saved it, with run_dir pointing at RUN_DIR (the
    saved value is an interpolation into Hydra's runtime, which is gone now)."""
    from tuner.config import register

    register()  # the ${threads:...} resolver the saved config uses
    run_dir = Path(run_dir).resolve()
    path = run_dir / ".hydra" / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"no saved config at {path} (is {run_dir} a tuner run dir?)")
    cfg = OmegaConf.load(path)
    cfg.run_dir = str(run_dir)
    cfg.progress = False
    return cfg


def system_type(cfg: DictConfig, platform: str) -> str:
    """edge | datacenter for a platform: its conf/platform YAML, else the run's config."""
    from tuner.machine.platforms import load_platform_config

    try:
        kind = load_platform_config(platform).get("system_type")
    except FileNotFoundError:
        kind = cfg.platform.get("system_type")
    return "datacenter" if kind == "datacenter" else "edge"


def run_timeout_s(cfg: DictConfig, fidelity: Fidelity) -> float:
    """Long enough for a compliant run: Offline plans for 1.5x the calibrated throughput
    (oracle.THROUGHPUT_MARGIN), so it may run ~1.5x min_duration, then the accuracy run."""
    duration_s = (fidelity.min_duration_ms or COMPLIANT_MIN_DURATION_MS) / 1000
    return 2 * duration_s + float(cfg.study.trial_timeout_s)


def recorder(cfg: DictConfig) -> Recorder:
    """The run's records with the run's own accuracy floor: promote and reproduce classify
    a result exactly as the study did."""
    from omegaconf import OmegaConf

    return Recorder(Path(cfg.run_dir), Records(cfg.run_dir),
                    AccuracyFloor(fixed_floor(cfg), cfg.study.accuracy_floor_fraction),
                    OmegaConf.select(cfg, "measurement.noise_prior", default=noise.PRIOR_SIGMA))


def objective_of(row: dict[str, Any]) -> str:
    from experiments.mlperf import scenario

    return scenario(row["scenario"]).objective


def _detect_on_node(platform: str) -> dict[str, Any]:
    from tuner.machine.platforms import detect

    facts = detect().to_dict()
    facts["platform"] = platform  # the Ray label the trial ran under
    return facts


def node_facts(platform: str, hostname: str, node_id: str | None = None,
               timeout_s: float = 120.0) -> dict[str, Any] | None:
    """NodeFacts of the node that measured (for the MLPerf system description), probed by
    a Ray task pinned to that node (its Ray node id when the result carries one, else the
    alive node of that hostname and platform); None when it cannot be reached."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if node_id is None:
        node_id = next((n["NodeID"] for n in ray.nodes() if n.get("Alive")
                        and n.get("NodeManagerHostname") == hostname
                        and (n.get("Labels") or {}).get(PLATFORM_LABEL) == platform), None)
    options: dict[str, Any] = {"num_cpus": 0, "max_retries": 0}
    if node_id is not None:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id, soft=False)
    else:
        options["label_selector"] = {PLATFORM_LABEL: platform}
    try:
        return ray.get(ray.remote(_detect_on_node).options(**options).remote(platform),
                       timeout=timeout_s)
    except Exception:  # noqa: BLE001 - facts are optional; the packer detects locally
        return None


def measure_all(dispatcher: RayDispatcher, jobs: list[TrialConfig], timeout_s: float,
                done: Callable[[TrialConfig, TrialResult], None]) -> None:
    """Measure every job, one per device at a time, handing each result to ``done`` as it
    arrives; a task lost or overdue becomes a failed result (the study's scheduler)."""
    scheduler = Scheduler(dispatcher, timeout_s)
    alive = dispatcher.platforms()
    for platform in sorted({t.platform for t in jobs}):
        scheduler.add_lane(platform, sum(n.devices for n in alive.get(platform, [])) or 1)
    scheduler.run_all(jobs, done)


def dispatch_for(cfg: DictConfig, dispatcher: RayDispatcher | None,
              rows: list[dict[str, Any]]) -> tuple[RayDispatcher, bool]:
    own = dispatcher is None
    dispatcher = dispatcher or make_dispatcher(cfg)
    try:
        dispatcher.check(sorted({r["platform"] for r in rows}),
                         sorted({r["backend"] for r in rows}))
    except DispatchError:
        if own:
            dispatcher.shutdown()
        raise
    return dispatcher, own


def attach_facts(result: TrialResult, cache: dict[tuple, Any]) -> None:
    """Put the measuring node's facts into the record's system JSON (once per node)."""
    if not result.ok or not result.node:
        return
    node_id = result.system.get("ray_node_id")  # set by the dispatcher's task, when known
    key = (result.platform, result.node, node_id)
    if key not in cache:
        cache[key] = node_facts(*key)
    if cache[key] is not None:
        result.system = {**result.system, "facts": cache[key]}


def shown(value: Any) -> str:
    return fmt(value, missing="-")


def render_report(run_dir: Path, out: Print) -> None:
    from experiments.report import render

    for kind, path in render(run_dir).items():
        out(f"{kind}: {path}")
