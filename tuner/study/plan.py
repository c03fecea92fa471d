"""Each platform of a fleet composes its own study: its runtimes, knob ranges and options.

A platform's configuration is the run's config, then ``conf/platform/<name>.yaml`` (TVM
target, thread ranges, fixed runtime options, runtimes to search, extra knobs and the knobs
that need a device), then the facts its nodes reported (cores, runtimes installed,
accelerators). So a Pi searches LiteRT and ONNX Runtime with 1-4 threads, a Coral Pi adds
the Edge TPU delegate, a Jetson adds TensorRT, and a Milan server searches ORT and TVM with
up to its own core count, all in one run. ``python -m tuner ... --show-plan`` prints it.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from experiments.mlperf import SHORT
from search_spaces import SearchSpace
from tuner.config import ConfigError, PlatformConfig
from tuner.fleet.dispatch import DispatchError, NodeInfo, no_node
from tuner.trial import Fidelity, TrialConfig


@dataclass
class PlatformPlan:
    platform: str
    nodes: list[NodeInfo]
    devices: int
    cores: int  # the fewest usable cores of its nodes: what "threads: 0" means there
    accelerators: list[str]
    runtimes: list[str]  # searched
    skipped: dict[str, str]  # runtime requested but not searched -> why
    config: DictConfig  # the run's config with this platform's settings composed in
    space: SearchSpace
    system_type: str = "edge"
    notes: list[str] = field(default_factory=list)

    def backend_options(self, runtime: str) -> dict[str, Any]:
        """Options always passed to ``runtime`` on this platform (config + platform)."""
        return OmegaConf.to_container(self.config.backends[runtime].fixed, resolve=True)


def platform_settings(cfg: DictConfig, platform: str) -> DictConfig:
    """The platform's settings: the run's own ``platform`` group when it names this platform
    (with the user's overrides), else ``conf/platform/<name>.yaml``, else the defaults.
    A replayed landscape is its table's alone: no platform file applies."""
    from tuner.machine.platforms import load_platform_config

    schema = OmegaConf.structured(PlatformConfig)
    if cfg.cluster.mode == "replay":
        return OmegaConf.merge(schema, {"name": platform})
    if cfg.platform.name == platform:
        return OmegaConf.merge(schema, cfg.platform)
    try:
        loaded = load_platform_config(platform)
    except FileNotFoundError:
        loaded = {"name": platform}
    try:
        return OmegaConf.merge(schema, loaded)
    except Exception as exc:  # noqa: BLE001 - a bad key in the platform yaml
        raise ConfigError(f"conf/platform/{platform}.yaml: {exc}".splitlines()[0]) from None


def compose(cfg: DictConfig, platform: str, cores: int,
            accelerators: list[str]) -> DictConfig:
    """The run's config as this platform sees it: its platform settings and core count in
    ``platform``, its fixed options, extra knobs and device knobs merged into ``backends``."""
    settings = platform_settings(cfg, platform)
    settings.cores = int(cores)
    pcfg = copy.deepcopy(cfg)
    with _open(pcfg):
        pcfg.platform = settings
        backends = pcfg.backends
        for runtime, options in (settings.fixed or {}).items():
            if runtime in backends:
                backends[runtime].fixed = OmegaConf.merge(backends[runtime].fixed, options)
        knob_sets = [settings.knobs or {}]
        knob_sets += [(settings.device_knobs or {}).get(a, {}) for a in accelerators]
        for knobs in knob_sets:
            for runtime, dims in knobs.items():
                if runtime in backends:
                    backends[runtime].knobs = OmegaConf.merge(backends[runtime].knobs, dims)
        target = settings.tvm_target
        if "tvm" in backends and target not in (None, "auto"):
            backends.tvm.fixed = OmegaConf.merge(backends.tvm.fixed, {"target": target})
    return pcfg


class _open:
    """Let the composed copy take keys the schema types loosely (knob dicts)."""

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    def __enter__(self):
        OmegaConf.set_struct(self.cfg, False)

    def __exit__(self, *exc):
        OmegaConf.set_struct(self.cfg, True)


class Plans(list):
    """The runnable plans, and lines to print before the run: a platform left out (why),
    or a study measured where its benchmark cannot be submitted."""

    notes: list[str]

    def __init__(self, plans=(), notes=()):
        super().__init__(plans)
        self.notes = list(notes)


def category_exclusion(cfg: DictConfig, platform: str, system_type: str) -> str | None:
    """Why a platform of this MLPerf category does not run the workload's benchmark (DLRM
    is datacenter-only), as one line; None when it may (or the benchmark is unknown)."""
    if cfg.cluster.mode == "replay" or cfg.get("workload") is None:
        return None  # a replayed table's platforms are what was measured
    import workloads
    from experiments.mlperf import BENCHMARKS, current_benchmark

    try:
        model = workloads.workload_class(cfg.workload.name).loadgen_model
    except (KeyError, ValueError):
        return None  # the config check names an unknown workload
    bench = BENCHMARKS.get(current_benchmark(model))
    if bench is None or system_type in bench.categories:
        return None
    return (f"{platform}: skipped: {system_type} platform, and {bench.name} (workload "
            f"{cfg.workload.name}) is a {'/'.join(bench.categories)}-only MLPerf benchmark")


def output_changing_knobs(runtimes) -> dict[str, set[str]]:
    """Per runtime, its knobs that may change outputs: all but those it declares invariant
    (``Backend.OUTPUT_INVARIANT_KNOBS``), so the search shares accuracy across the rest."""
    import backends

    out = {}
    for name in runtimes:
        try:
            cls = backends.get(name)
        except KeyError:
            continue  # a replayed table's runtime
        out[name] = set(cls.KNOBS - cls.OUTPUT_INVARIANT_KNOBS)
    return out


def make_plan(cfg: DictConfig, platform: str, nodes: list[NodeInfo]) -> PlatformPlan:
    cores = min((n.cores for n in nodes if n.cores), default=0) or (os.cpu_count() or 1)
    accelerators = sorted(set().union(*(set(n.accelerators) for n in nodes)))
    pcfg = compose(cfg, platform, cores, accelerators)
    installed = set().union(*(set(n.runtimes) for n in nodes)) if nodes else set()
    allowed = list(pcfg.platform.runtimes or [])
    runtimes, skipped = [], {}
    for runtime in cfg.space.backends:
        if allowed and runtime not in allowed:
            skipped[runtime] = f"not in conf/platform/{platform}.yaml runtimes"
        elif runtime not in installed:
            skipped[runtime] = "not installed on its nodes" + (
                f" (they have: {', '.join(sorted(installed))})" if installed else "")
        else:
            runtimes.append(runtime)
    plan = PlatformPlan(platform, nodes, sum(n.devices for n in nodes), cores, accelerators,
                        runtimes, skipped, pcfg, space=None,  # type: ignore[arg-type]
                        system_type=str(pcfg.platform.system_type))
    if runtimes:
        space = OmegaConf.to_container(pcfg.space, resolve=True)
        space["backends"] = runtimes
        try:
            plan.space = SearchSpace.from_config(
                space, OmegaConf.to_container(pcfg.backends, resolve=True),
                OmegaConf.to_container(pcfg.scenario, resolve=True),
                output_changing=output_changing_knobs(runtimes))
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"platform {platform!r}: {exc}") from None
    return plan


def make_plans(cfg: DictConfig, platforms: list[str],
               present: dict[str, list[NodeInfo]]) -> Plans:
    """One plan per platform; fails (DispatchError, naming what is missing) where a
    platform has no node, no runtime left, or (``cluster.require_all_runtimes``) lacks a
    requested runtime. A platform whose MLPerf category the workload's benchmark is not
    run in (an edge Pi in a DLRM study) is left out, one line in ``Plans.notes``, while
    another platform of the fleet is of the benchmark's category; where none is (one local
    x86-64 box, edge by default) all are kept, with a line saying so: the study still
    measures, and ``promote`` refuses such a result."""
    kinds = {p: "datacenter" if platform_settings(cfg, p).system_type == "datacenter"
             else "edge" for p in platforms}
    left_out = {p: category_exclusion(cfg, p, kinds[p]) for p in platforms}
    if platforms and all(left_out.values()):
        notes = [w.replace(": skipped: ", ": measured, but not submittable: ", 1)
                 + "; promote refuses it" for w in left_out.values()]
        left_out = {}
    else:
        notes = [w for w in left_out.values() if w]
    problems, plans = [], Plans(notes=notes)
    for platform in platforms:
        if left_out.get(platform):
            continue
        nodes = present.get(platform)
        if not nodes:
            problems.append(no_node(platform, present))
            continue
        plan = make_plan(cfg, platform, nodes)
        if not plan.runtimes:
            problems.append(f"platform {platform!r} has none of the requested runtimes "
                            f"({'; '.join(f'{r}: {why}' for r, why in plan.skipped.items())})")
        elif plan.skipped and cfg.cluster.require_all_runtimes:
            problems.append(f"platform {platform!r} has no node with runtime(s) "
                            f"{', '.join(plan.skipped)} (cluster.require_all_runtimes=true)")
        plans.append(plan)
    if problems:
        raise DispatchError("cannot dispatch: " + "; ".join(problems))
    return plans


def describe(plans: list[PlatformPlan]) -> str:
    """The plan as text, in the manner of ``--cfg job``: per platform its nodes, runtimes
    and the range of every dimension."""
    lines = list(getattr(plans, "notes", ()))
    for plan in plans:
        lines.append(f"{plan.platform}:")
        lines.append(f"  nodes: {len(plan.nodes)} ({plan.devices} device(s) under test, "
                     f"{plan.cores} cores each at least"
                     + (f", accelerators: {', '.join(plan.accelerators)}" if plan.accelerators
                        else "") + f"), MLPerf category {plan.system_type}")
        lines.append(f"  runtimes: {', '.join(plan.runtimes) or 'none'}")
        for runtime, why in plan.skipped.items():
            lines.append(f"  skipped: {runtime} ({why})")
        if plan.space is None:
            continue
        try:
            lines.append(f"  space: {plan.space.size()} points")
        except ValueError:  # a float dimension: no finite grid
            lines.append("  space: continuous")
        for dim in plan.space.dims:
            values = (f"{dim.low:g}..{dim.high:g}" if dim.type in ("int", "float")
                      else ", ".join(str(v) for v in dim.choices))
            cond = (" when " + ", ".join(f"{k} in {list(v)}" for k, v in dim.when)
                    if dim.when else "")
            lines.append(f"    {dim.name}: {values}{cond}")
        for runtime in plan.runtimes:
            fixed = plan.backend_options(runtime)
            if fixed:
                lines.append(f"    {runtime} fixed: {fixed}")
    return "\n".join(lines)


def trial_config(plan: PlatformPlan, study: str, number: int,
                 params: dict[str, Any]) -> TrialConfig:
    """The plain config a worker measures for one point of this platform's space."""
    cfg = plan.config
    point = plan.space.split(params)
    scenario = cfg.scenario
    options = {"server_load": scenario.server_load,
               "server_latency_ms": scenario.server_latency_ms, **point.scenario}
    return TrialConfig(
        study=study, trial=number, platform=plan.platform,
        workload=OmegaConf.to_container(cfg.workload, resolve=True),
        model=point.model, backend=point.backend,
        knobs={**plan.backend_options(point.backend), **point.knobs},
        scenario=scenario.name, scenario_options=options,
        fidelity=Fidelity(SHORT, cfg.fidelity.min_duration_ms, cfg.fidelity.min_query_count,
                          cfg.fidelity.max_duration_ms, windows=cfg.fidelity.windows,
                          max_windows=cfg.fidelity.max_windows,
                          stability=cfg.fidelity.stability),
        accuracy_sample_count=cfg.fidelity.accuracy_sample_count,
        cache_dir=cfg.cache_dir, params=dict(params))
