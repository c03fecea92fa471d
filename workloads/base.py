"""A workload is a dataset + a model family, of one task: the task (``workloads/tasks/``)
says how a response is encoded and scored and which tensors a model takes and gives. The
engine moves bytes and figures and never knows what a class, a box or a click is.

Registration: a workload named ``NAME`` is one line of ``workloads.REGISTRY`` (the module
exposing ``WORKLOAD``, its class), plus the conf group entry ``conf/workload/NAME.yaml``
whose schema is the class's ``Config`` dataclass (registered as ``NAME_schema``).

Declared, never defaulted: a workload's class names its LoadGen model (``loadgen_model``:
MLPerf's rules, seeds and the benchmark it packs as) and its task declares its model's
inputs and outputs (``inputs``, ``outputs``: ``TensorRole``s); ``declared_problem()`` says
what is missing, and the config check refuses such a workload before any trial.

Lifecycle on a worker, per trial:

1. ``create(cfg)`` builds the workload from its config.
2. ``variant(**model_params)`` names one member of the family (e.g. width 0.5, resolution
   64, int8) and ``model_file(variant, fmt)`` returns a model file for a runtime's format,
   building and caching it on first use (content-hash keyed).
3. LoadGen's QSL calls ``load_samples(indices, variant)``: one preprocessed sample per
   index, of any structure the workload likes (an array, a dict of named arrays, ...).
4. ``responder(variant, predict, inputs, outputs, batch_size)`` returns the callable the
   SUT answers queries with: loaded samples in, one LoadGen response (address, byte count)
   per sample out. It owns batching the samples into the model's named inputs, running
   ``predict`` (a runtime's ``dict of named inputs -> list of all outputs``, in the order
   of ``outputs``, the runtime's output specs), decoding the outputs, and the buffers the
   responses point into (valid until its next call).
5. ``score(responses)`` scores an accuracy log (qsl index -> response bytes) with the
   task's metric and gives MLPerf's ``accuracy.txt`` line.

Class-level facts the driver reads without building the workload (no dataset parsed on the
head node): ``metric``, ``loadgen_model``, ``inputs``/``outputs``, ``declared_problem()``,
``check(cfg)``, ``reference_accuracy(cfg)``, ``model_choices(cfg)``,
``shipped_accuracies(cfg)``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping, Protocol, Sequence

import numpy as np

# The cache helpers live with the runtimes (the lower floor); re-exported for workloads.
from backends.base import TensorSpec
from backends.cache import atomic_write_bytes, cache_lock, content_hash, default_cache_dir  # noqa: F401

Predict = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
Response = tuple[int, int]  # (address, byte count) of one sample's response


@dataclass(frozen=True)
class Metric:
    """A task's accuracy metric: ``name`` is what records store (``accuracy_metric``) and
    reports show; ``mlperf_key`` the key of its line in accuracy.txt, which the score's
    text starts with and the packer reads back (``experiments.mlperf.ACCURACY_LINES``)."""

    name: str
    mlperf_key: str


@dataclass
class Score:
    """An accuracy log scored: ``value`` in 0-1, ``text`` the accuracy.txt line."""

    metric: str
    value: float
    text: str
    count: int  # samples scored
    good: int | None = None  # samples right, where the metric counts them (top-1)
    extras: dict[str, float] = field(default_factory=dict)  # e.g. {"AP50": 0.91}


@dataclass(frozen=True)
class Variant:
    """One member of a model family."""

    name: str  # e.g. mobilenet_v1_w0.5_r64_int8: unique within the workload
    precision: str
    resolution: int | None = None  # image tasks: the model's input size
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)



#: numpy dtype -> how MLPerf's measurements.json writes it (``input_data_types``)
MLPERF_DTYPES = {"float32": "fp32", "float16": "fp16", "uint8": "uint8", "int8": "int8",
                 "int32": "int32", "int64": "int64"}


@dataclass(frozen=True)
class TensorRole:
    """A tensor a task declares: its role (what its responder calls it), the dtypes it may
    have, its rank (None: any) and its last axis where the task fixes it."""

    role: str
    dtypes: tuple[str, ...]
    rank: int | None = None
    last: int | None = None

    def accepts(self, spec: TensorSpec) -> bool:
        shape = tuple(spec.shape)
        return (np.dtype(spec.dtype).name in self.dtypes
                and (self.rank is None or len(shape) == self.rank)
                and (self.last is None or (bool(shape) and shape[-1] in (self.last, None, -1))))

    def __str__(self) -> str:
        dims = ["N"] + ["?"] * max(0, (self.rank or 0) - 2) + \
            ([str(self.last or "?")] if (self.rank or 0) > 1 else [])
        return f"{self.role} {'|'.join(self.dtypes)}" + \
            (f" [{', '.join(dims)}]" if self.rank else " scalar" if self.rank == 0 else "")


def describe_specs(specs: Sequence[TensorSpec]) -> str:
    return ", ".join(f"{s.name!r} {np.dtype(s.dtype).name}{list(s.shape)}" for s in specs) \
        or "none"


def match_inputs(declared: Sequence[TensorRole], found: Sequence[TensorSpec],
                 where: str) -> dict[str, TensorSpec]:
    """Each declared input's tensor among a model's inputs (role -> spec), matched by
    dtype, rank and last axis in declared order. A model with other inputs than declared
    is a ValueError in one line: ``where`` (the workload, the model's key and file), the
    model's inputs, what the task takes and which input does not fit."""
    left, out = list(found), {}
    for role in declared:
        spec = next((s for s in left if role.accepts(s)), None)
        if spec is None:
            raise _mismatch(declared, found, where, f"no input is its {role.role}")
        out[role.role] = spec
        left.remove(spec)
    if left:
        raise _mismatch(declared, found, where, f"input {left[0].name!r} is none of these")
    return out


def _mismatch(declared: Sequence[TensorRole], found: Sequence[TensorSpec], where: str,
              why: str) -> ValueError:
    return ValueError(f"{where} has inputs {describe_specs(found)}; the task takes "
                     f"{'; '.join(map(str, declared))} ({why})")


class Responder(Protocol):
    def __call__(self, samples: Sequence[Any]) -> Sequence[Response]: ...


class Workload:
    name: ClassVar[str] = ""
    metric: ClassVar[Metric]
    #: the LoadGen model name used in FromConfig (its mlperf.conf rules and seeds, and the
    #: benchmark a result packs as): every workload names its own, there is no default
    loadgen_model: ClassVar[str]
    #: the model's inputs the task feeds (matched by dtype, rank and last axis)
    inputs: ClassVar[tuple[TensorRole, ...]]
    #: the outputs its responder reads, in the model's order, where they are fixed (a
    #: family with several output interfaces, COCO's, reads them by name per interface)
    outputs: ClassVar[tuple[TensorRole, ...]] = ()
    #: the typed schema of conf/workload/<name>.yaml (a dataclass)
    Config: ClassVar[type]

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache_dir = Path(cache_dir or default_cache_dir())

    # --- facts read without building the workload ----------------------------------
    @classmethod
    def declared_problem(cls) -> str | None:
        """What the class leaves undeclared that a run needs, in one line naming the
        workload; None when all is there."""
        for attr, what in (("metric", "its task's metric"),
                           ("loadgen_model", "its LoadGen model (e.g. resnet50, yolo, dlrm): "
                                             "MLPerf's rules and the benchmark it packs as"),
                           ("inputs", "its model's inputs (its task's TensorRoles)")):
            if not getattr(cls, attr, None):
                return f"{cls.name or cls.__name__} workload: declares no `{attr}` ({what})"
        return None

    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        """Cheap checks of a config on the head node before any trial: files and folders
        exist, keys make sense. Never reads the dataset. Raises ValueError or
        FileNotFoundError with a one-line message naming the key or file."""

    @classmethod
    def reference_accuracy(cls, cfg: Mapping[str, Any]) -> float | None:
        """The family's best fp32 accuracy (MLPerf's target is a fraction of it), if known."""
        return None

    @classmethod
    def shipped_accuracies(cls, cfg: Mapping[str, Any]) -> list[tuple[dict[str, Any], str, float]]:
        """Accuracies measured when the shipped models were built, on this config's dataset:
        (model params, runtime, accuracy). The search starts from them as a prior (which
        models clear the floor); every trial still measures its own, or inherits one
        measured in the fleet after a spot check. None by default."""
        return []

    @classmethod
    def model_choices(cls, cfg: Mapping[str, Any]) -> dict[str, tuple | None]:
        """The model parameters ``variant`` takes, each with its allowed values (None: any),
        so the config check can refuse a space the workload cannot build."""
        return {}

    # --- the model family -------------------------------------------------------
    def variant(self, **params: Any) -> Variant:
        raise NotImplementedError

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        raise NotImplementedError

    # --- the dataset and the task -----------------------------------------------
    @property
    def total_sample_count(self) -> int:
        raise NotImplementedError

    def load_samples(self, indices: Sequence[int], variant: Variant) -> Sequence[Any]:
        raise NotImplementedError

    def responder(self, variant: Variant, predict: Predict, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec], batch_size: int) -> Responder:
        """``inputs`` and ``outputs``: the runtime's specs of the loaded model, ``predict``'s
        outputs in the order of ``outputs``."""
        raise NotImplementedError

    def score(self, responses: Mapping[int, bytes]) -> Score:
        raise NotImplementedError

    #: what a sample is made of, for throughput in the task's own unit (DLRM: "pair")
    item_name: ClassVar[str] = "sample"

    def items_per_sample(self) -> float:
        """Items per LoadGen sample on average (DLRM: pairs per user; 1 for images)."""
        return 1.0

    def samples_per_batch(self, batch_size: int) -> int:
        """Samples the SUT hands the responder at once for the scenario's ``batch_size``
        knob, which is in the task's unit (DLRM: pairs, so a batch is ~N/270 users)."""
        return max(1, int(batch_size))

    def per_sample(self, responses: Mapping[int, bytes]) -> dict[int, float] | None:
        """Each sample's own figure when the metric is their mean (top-1: 1 right, 0
        wrong), which lets a sequential accuracy pass use exact intervals and pair a
        variant with its reference; None for set-level metrics (mAP, AUC)."""
        return None

    # --- what the packer needs ----------------------------------------------------
    def input_data_types(self, variant: Variant) -> str:
        """measurements.json's ``input_data_types``: the model's input dtypes as the variant
        read them from its file (``params["input_dtypes"]``: role -> numpy dtype name), else
        as the task declares them where it allows one dtype per input. One input: "fp32";
        several: "fp32 dense, int64 sparse"."""
        read = variant.params.get("input_dtypes") or {}
        names = {}
        for role in self.inputs:
            dtype = read.get(role.role) or (role.dtypes[0] if len(role.dtypes) == 1 else None)
            if dtype is None:
                raise ValueError(f"{self.name} workload: the {role.role} input may be "
                                 f"{'|'.join(role.dtypes)}; its variant must say which "
                                 "(params['input_dtypes'])")
            names[role.role] = MLPERF_DTYPES.get(dtype, dtype)
        if len(names) == 1:
            return next(iter(names.values()))
        return ", ".join(f"{dtype} {role}" for role, dtype in names.items())

    def weights_description(self, variant: Variant, runtime: str) -> dict[str, str]:
        """MLPerf measurements.json facts of a variant (what the weights are and what was
        done to them), recorded with each trial so the packer never rebuilds a workload."""
        steps = ["none (the supplied model file as is)"]
        if variant.precision == "int8":
            steps = ["the supplied int8 model file as is"]
        return {"starting_weights_filename": Path(variant.params.get("path", "user-supplied model")).name,
                "retraining": "no", "input_data_types": self.input_data_types(variant),
                "weight_data_types": variant.precision,
                "weight_transformations": "; ".join(steps)}

    def describe(self) -> dict[str, Any]:
        return {"workload": self.name, "metric": self.metric.name,
                "samples": self.total_sample_count}


def parse_model_files(workload: str, models: Any, precisions: Sequence[str],
                      example: str) -> dict[str, dict[str, Path]]:
    """A bring-your-own workload's ``models`` config -> variant -> precision -> file.

    ``{name: path}`` is an fp32 file; ``{name: {fp32: path, int8: path}}`` names each
    precision. Errors are one line naming the key: ``models.NAME.PRECISION: file ... does
    not exist``. ``example`` shows the form in the message for a missing map."""
    if not isinstance(models, Mapping) or not models:
        raise ValueError(f"{workload} workload: `models` must map variant names to model "
                         f"files, e.g. {{{example}}}; got {models!r}")
    parsed: dict[str, dict[str, Path]] = {}
    for name, spec in models.items():
        nested = isinstance(spec, Mapping)
        files = dict(spec) if nested else {"fp32": spec}
        bad = set(files) - set(precisions)
        if bad:
            raise ValueError(f"{workload} workload: models.{name} has precision(s) "
                             f"{sorted(bad)}; one of {tuple(precisions)}")
        parsed[str(name)] = {}
        for precision, file in files.items():
            key = f"models.{name}.{precision}" if nested else f"models.{name}"
            if file is None or str(file) in ("", "???"):  # "???": Hydra's unset value
                raise ValueError(f"{workload} workload: {key} has no path")
            path = Path(str(file)).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"{workload} workload: {key}: file {path} does not exist")
            parsed[str(name)][precision] = path.resolve()
    return parsed
