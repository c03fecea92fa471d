"""Typed configuration: the schema Hydra validates ``conf/`` against.

Registered in Hydra's ConfigStore as ``tuner_schema`` and named first in
``conf/config.yaml``'s defaults, so an unknown key or a wrong type fails at composition
with Hydra's message naming the key, before anything runs. Semantic checks that types
cannot express (an empty space, an unknown backend) live in ``validate``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from experiments.mlperf import SCENARIO_NAMES


@dataclass
class ParamSpec:
    """One dimension of the search space."""

    type: str = "categorical"  # categorical | int | float
    choices: Optional[List[Any]] = None
    low: Optional[float] = None
    high: Optional[float] = None
    step: Optional[float] = None
    log: bool = False
    ordered: bool = False  # a categorical whose values have an order (widths, resolutions)
    # Only suggested when every named dimension has the given value (or one of a list).
    when: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SpaceConfig:
    name: str = MISSING
    model: Dict[str, ParamSpec] = field(default_factory=dict)  # the workload's family dims
    backends: List[str] = field(default_factory=lambda: ["onnxruntime"])  # runtimes searched


@dataclass
class BackendConfig:
    knobs: Dict[str, ParamSpec] = field(default_factory=dict)  # tunable options
    fixed: Dict[str, Any] = field(default_factory=dict)  # options always passed as given


@dataclass
class ScenarioConfig:
    name: str = "SingleStream"  # the LoadGen scenario
    knobs: Dict[str, ParamSpec] = field(default_factory=dict)  # e.g. batch_size (Offline)
    # Server target QPS as a fraction of the calibrated capacity: the one default (the
    # oracle and the worker take it from the trial config, never a default of their own)
    server_load: float = 0.3
    server_latency_ms: Optional[float] = None  # None: the benchmark's own bound


@dataclass
class StudyConfig:
    name: str = "mobilenet"
    n_trials: int = 40  # per platform, counting trials finished in earlier runs
    # front (our front-seeking sampler: search_spaces/front_sampler.py) | tpe | nsga2 |
    # random (a random order, no repeats) | grid (the grid in order, no repeats)
    sampler: str = "front"
    # front sampler: rank points per expected device second (their runtime's median trial
    # duration so far: an untuned TVM trial costs ~20x an ONNX Runtime one), not per trial
    cost_aware: bool = True
    seed: int = 0
    # Run dirs (our own or imported published results) or study names of this run whose
    # records of other platforms a new platform's study learns from (search_spaces.warm_start)
    warm_start: List[str] = field(default_factory=list)
    accuracy_floor: Optional[float] = None  # absolute, in the task's metric; None: fraction x reference
    accuracy_floor_fraction: float = 0.99  # MLPerf's "99% of the reference accuracy"
    trial_timeout_s: float = 300.0
    timeout_s: Optional[float] = None  # stop asking for new trials after this long


@dataclass
class FidelityConfig:
    """Short LoadGen runs for the search; promotion uses LoadGen's own rules."""

    min_duration_ms: int = 1000
    min_query_count: int = 64
    # Bounds a run whose real latency is far above the calibrated one (LoadGen would
    # otherwise issue every pre-generated query, however long that takes).
    max_duration_ms: Optional[int] = 10000
    accuracy_sample_count: Optional[int] = None  # None: the whole validation set
    # Accuracy belongs to the model and runtime (tuner/accuracy/planner.py): a search
    # trial inherits an earlier trial's figure for the same model file, runtime and
    # output-changing knobs after an identical spot check on its first samples ...
    share_accuracy: bool = True
    spot_check_samples: int = 32
    # ... or scores samples in a fixed shuffled order, in growing chunks, until its verdict
    # against the floor is settled at this confidence or its interval is narrower than
    # accuracy_width (experiments/sequential.py). Promotion always scores the whole set.
    sequential_accuracy: bool = True
    # ... on sets of at least this many samples: a smaller one (the digits' 359, the
    # canvases' 400) is scored whole in one batched run, which costs less than the chunks
    sequential_min_samples: int = 2000
    accuracy_confidence: float = 0.99
    accuracy_width: float = 0.005
    # A search trial's figure is the median of `windows` LoadGen runs (each a share of
    # min_duration), and up to max_windows while the last three differ by more than
    # `stability` (perf_analyzer's 10%): the spread is part of its interval (experiments/noise.py)
    windows: int = 3
    max_windows: int = 6
    stability: float = 0.10


@dataclass
class MeasurementConfig:
    """How sure the figures are and what is measured again (experiments/noise.py,
    tuner/study/racing.py, tuner/study/canary.py)."""

    # one record's log spread on a node, at least (0.08: +-8%; experiments/noise.py says
    # how it was measured)
    noise_prior: float = 0.08
    confidence: float = 0.90  # of the intervals and of telling two configurations apart
    # Racing: a configuration whose interval overlaps a front point is measured again beside
    # it (A B A B on the same node) until they are told apart or shown equivalent (within
    # race_margin) or each has race_repeats records; re-measurements take at most
    # race_budget x study.n_trials trials of device time
    racing: bool = True
    race_budget: float = 0.2
    race_repeats: int = 4
    race_margin: float = 0.03
    # Drift: each node measures a fixed canary configuration (the study's first measured
    # point) every canary_every trials; 0 turns it off
    canary_every: int = 10


@dataclass
class ClusterConfig:
    # local: a private Ray instance on 127.0.0.1 | ray: join `address` | replay: answer
    # every trial from the records in `table` (no device; rows marked fidelity replay)
    mode: str = "local"
    address: Optional[str] = None
    table: Optional[str] = None  # replay: a run dir or trials.parquet of earlier/imported records
    platforms: List[str] = field(default_factory=list)  # [] = every platform present
    num_cpus: Optional[int] = None  # local mode: CPUs Ray may use (default: all)
    # A requested runtime a platform lacks is reported and skipped; true: stop instead.
    require_all_runtimes: bool = False
    # replay: multiply each replayed figure by exp(N(0, replay_noise)), a log spread like the
    # one this machine measures (0.05); 0: the table's figures as they are
    replay_noise: float = 0.0


@dataclass
class PromotionConfig:
    """``python -m tuner promote`` reads these from the run's saved config."""

    # TEST ONLY: shorter promotion runs (recorded as compliant-reduced, packed only with
    # --draft); None keeps LoadGen's own rules (600 s).
    min_duration_ms: Optional[int] = None
    # The Server p99 bound (ms) a promoted Server run is held to; None: the benchmark's
    # (experiments/mlperf.py BENCHMARKS: resnet 15, dlrm-v3 60), else scenario.server_latency_ms.
    server_latency_ms: Optional[float] = None
    # Before the long Server run, the worker bisects the target QPS with short Server runs
    # (tuner/worker/server_search.py): at most server_search_steps runs of server_search_ms
    # and server_search_queries; a run passes at p99 <= server_headroom x bound; the long
    # run goes at server_margin x the highest rate that passed.
    server_search_ms: int = 2000
    server_search_queries: int = 256
    server_search_steps: int = 7
    server_headroom: float = 0.8
    server_margin: float = 0.8


@dataclass
class PlatformConfig:
    """A platform's own settings (conf/platform/<name>.yaml); each platform of a fleet
    composes its study from them and from its nodes' facts (tuner/study/plan.py)."""

    name: str = "auto"  # auto: detect this machine
    tvm_target: Any = None  # passed to TVM as its `target` option; auto/None: the node's host
    threads: int = 0  # upper end of thread knobs; 0 = the node's core count (`cores`)
    runtimes: List[str] = field(default_factory=list)  # runtimes searched here; []: any
    system_type: str = "edge"  # edge | datacenter (MLPerf category)
    cores: int = 0  # filled in per platform from its nodes' reports; 0: this machine's
    fixed: Dict[str, Any] = field(default_factory=dict)  # runtime -> options always passed
    knobs: Dict[str, Any] = field(default_factory=dict)  # runtime -> extra knob dims
    # accelerator (as the node agent reports it, e.g. edgetpu) -> runtime -> knob dims that
    # only platforms with that device search
    device_knobs: Dict[str, Any] = field(default_factory=dict)


@dataclass
class Config:
    study: StudyConfig = field(default_factory=StudyConfig)
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    scenario: ScenarioConfig = field(default_factory=ScenarioConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    workload: Any = None  # a workload's schema (its class's Config), chosen by the group
    backends: Dict[str, BackendConfig] = field(default_factory=dict)
    space: Optional[SpaceConfig] = None
    cache_dir: Optional[str] = None  # model/compile cache; None: ~/.cache/tuner
    run_dir: str = "."
    progress: bool = True


def register() -> None:
    store = ConfigStore.instance()
    store.store(name="tuner_schema", node=Config)
    # One schema per workload, named <workload>_schema in the `workload` group and
    # declared beside the workload (its class's Config); each conf/workload/<name>.yaml
    # extends its own, so a misspelt key fails at composition.
    import workloads

    for name in workloads.names():
        store.store(group="workload", name=f"{name}_schema",
                    node=workloads.workload_class(name).Config)
    if not OmegaConf.has_resolver("threads"):
        # ${threads:N}: N, or this machine's core count when N is 0 ("all cores").
        OmegaConf.register_new_resolver("threads", _threads)


def _threads(n=0, *, _root_) -> int:
    """${threads:N}: the upper end of a thread knob. N, or all cores when N is 0; never more
    than the cores the platform's nodes reported (platform.cores, set per platform by the
    plan; 0 there means this machine's count), so a node pinned to one core searches 1."""
    cores = int(OmegaConf.select(_root_, "platform.cores", default=0) or 0) or (os.cpu_count() or 1)
    return min(int(n), cores) if int(n or 0) > 0 else cores


class ConfigError(ValueError):
    """A config that composes but cannot run; the message names the key."""


def validate(cfg: DictConfig) -> None:
    import backends

    if cfg.space is None:
        raise ConfigError("no search space chosen: add +space=<name> (e.g. +space=mobilenet)")
    space = cfg.space
    if not space.model:
        raise ConfigError(f"space.model: the space {space.name!r} has no dimensions")
    for key, spec in space.model.items():
        _check_spec(f"space.model.{key}", spec)
    if not space.backends:
        raise ConfigError("space.backends: empty; name at least one runtime")
    replay = cfg.cluster.mode == "replay"  # a replayed table names its own runtimes
    for name in space.backends:
        if name not in backends.names() and not replay:
            raise ConfigError(f"space.backends: unknown backend {name!r}; "
                              f"known: {', '.join(backends.names())}")
        if name not in cfg.backends:
            raise ConfigError(f"space.backends: {name!r} has no config; add "
                              f"backend@backends.{name}={name} to the defaults")
        for key, spec in cfg.backends[name].knobs.items():
            _check_spec(f"backends.{name}.knobs.{key}", spec)
    for key, spec in cfg.scenario.knobs.items():
        _check_spec(f"scenario.knobs.{key}", spec)
    if cfg.scenario.name not in SCENARIO_NAMES:
        raise ConfigError(f"scenario.name: {cfg.scenario.name!r}; "
                          f"one of {', '.join(SCENARIO_NAMES)}")
    if cfg.study.n_trials < 1:
        raise ConfigError(f"study.n_trials: must be >= 1, got {cfg.study.n_trials}")
    from search_spaces import SAMPLERS

    if cfg.study.sampler not in SAMPLERS:
        raise ConfigError(f"study.sampler: {cfg.study.sampler!r}; one of {', '.join(SAMPLERS)}")
    if cfg.cluster.mode not in ("local", "ray", "replay"):
        raise ConfigError(f"cluster.mode: {cfg.cluster.mode!r}; one of local, ray, replay")
    if cfg.cluster.mode == "replay" and not cfg.cluster.table:
        raise ConfigError("cluster.table: required with cluster=replay (a run dir or "
                          "trials.parquet of earlier or imported records)")
    if cfg.cluster.mode == "ray" and not cfg.cluster.address:
        raise ConfigError("cluster.address: required with cluster=ray (HOST:PORT of the head)")
    if not cfg.workload or "name" not in cfg.workload:
        raise ConfigError("workload.name: missing")
    _check_measurement(cfg)
    _check_workload(cfg)


def _check_measurement(cfg: DictConfig) -> None:
    """The noise options: each out-of-range value is one line naming its key."""
    f, m = cfg.fidelity, cfg.measurement
    checks = [
        ("fidelity.windows", f.windows, f.windows >= 1, ">= 1"),
        ("fidelity.max_windows", f.max_windows, f.max_windows >= f.windows,
         f">= fidelity.windows ({f.windows})"),
        ("fidelity.stability", f.stability, f.stability > 0, "> 0 (0.10: 10%)"),
        ("measurement.noise_prior", m.noise_prior, m.noise_prior > 0, "> 0 (0.08: +-8%)"),
        ("measurement.confidence", m.confidence, 0.5 < m.confidence < 1, "between 0.5 and 1"),
        ("measurement.race_budget", m.race_budget, 0 <= m.race_budget <= 1, "between 0 and 1"),
        ("measurement.race_repeats", m.race_repeats, m.race_repeats >= 2, ">= 2"),
        ("measurement.race_margin", m.race_margin, m.race_margin >= 0, ">= 0"),
        ("measurement.canary_every", m.canary_every, m.canary_every >= 0, ">= 0 (0: off)"),
        ("cluster.replay_noise", cfg.cluster.replay_noise, cfg.cluster.replay_noise >= 0, ">= 0"),
    ]
    for key, value, ok, want in checks:
        if not ok:
            raise ConfigError(f"{key}: {value!r}; must be {want}")


def _check_workload(cfg: DictConfig) -> None:
    """The workload's own cheap checks (paths, keys; no dataset is read on the head node),
    and the space's model dimensions against what its variants take: a mismatch would
    otherwise fail every trial on the worker."""
    import workloads

    if cfg.cluster.mode == "replay":
        return  # a replayed table: its own dimensions, no workload
    try:
        cls = workloads.workload_class(cfg.workload.name)
    except KeyError as exc:
        raise ConfigError(f"workload.name: {exc.args[0]}") from None
    problem = cls.declared_problem()  # e.g. no loadgen_model: no default rules to run under
    if problem:
        raise ConfigError(f"workload: {problem}")
    conf = OmegaConf.to_container(cfg.workload, resolve=True)
    try:
        cls.check(conf)
    except (KeyError, ValueError, OSError) as exc:  # e.g. a dataset dir without val_map.txt
        raise ConfigError(f"workload: {exc}") from None
    taken = cls.model_choices(conf)
    if not taken:
        return
    for key, spec in cfg.space.model.items():
        if key not in taken:
            raise ConfigError(f"space.model.{key}: the {cfg.workload.name} workload's models "
                              f"take no {key!r}; they take {', '.join(taken)}")
        allowed = taken[key]
        if allowed is None or spec.type != "categorical":
            continue
        bad = [c for c in spec.choices if c not in allowed]
        if bad:
            raise ConfigError(f"space.model.{key}.choices: {bad} not offered by the "
                              f"{cfg.workload.name} workload; it has {list(allowed)}")


def _check_spec(key: str, spec) -> None:
    if spec.type == "categorical":
        if not spec.choices:
            raise ConfigError(f"{key}.choices: empty; a categorical dimension needs choices")
    elif spec.type in ("int", "float"):
        if spec.low is None or spec.high is None:
            raise ConfigError(f"{key}: an {spec.type} dimension needs low and high")
        if spec.low > spec.high:
            raise ConfigError(f"{key}: low {spec.low} > high {spec.high}")
    else:
        raise ConfigError(f"{key}.type: {spec.type!r}; one of categorical, int, float")
