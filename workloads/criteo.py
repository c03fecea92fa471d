"""Bring-your-own Criteo: a user's DLRM ONNX files on Criteo Terabyte's last day.

``dataset_dir`` holds ``day_23`` as MLPerf's reference expects it: a TSV of label, 13
integer features and 26 hex categorical features per line, an empty field meaning 0.
``count`` keeps the first N lines. Preprocessing is MLPerf's DLRM v1 reference
(``dlrm_data_pytorch``): dense ``log(max(x, 0) + 1)``; categorical ``int(hex, 16) mod
max_ind_range`` (40,000,000 in MLPerf; a config key, since a smaller model has smaller
tables). Users, responses and the AUC are the shared DLRM task (``workloads/tasks/recommendation.py``).

``models`` maps variant names to ONNX files, or to ``{fp32: file, int8: file, ...}``.
A model's two inputs are matched by dtype (float32 [N, 13] dense, int64 [N, 26] sparse);
its one output is the click probability, [N] or [N, 1].

Parsed arrays are cached under ``cache_dir`` (keyed by the file's size and mtime, ``count``
and ``max_ind_range``), so each trial's fresh process does not parse the TSV again.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np
from omegaconf import MISSING

from backends.cache import atomic_write_bytes, content_hash
from workloads.base import Variant, match_inputs, parse_model_files
from workloads.models.model_io import model_io
from workloads.tasks.recommendation import (INPUTS, NUM_DENSE, NUM_SPARSE, DlrmWorkload,
                                            preprocess_dense)

DAY_FILE = "day_23"
PRECISIONS = ("fp32", "fp16", "int8")
MLPERF_MAX_IND_RANGE = 40_000_000
PARSER_VERSION = 1  # bump when parsing or preprocessing changes (keys the disk cache)


@dataclass
class CriteoConfig:
    """conf/workload/criteo.yaml documents each key."""

    name: str = "criteo"
    dataset_dir: str = MISSING
    models: Any = MISSING  # variant -> ONNX file, or -> {fp32: file, int8: file}
    count: Optional[int] = None
    max_ind_range: int = MLPERF_MAX_IND_RANGE
    reference_accuracy: Optional[float] = None
    disk_cache: bool = True


def parse_day(path: Path, count: int | None, max_ind_range: int) -> tuple[np.ndarray, ...]:
    """(dense float32 [N, 13], sparse int64 [N, 26], labels float32 [N]) of a Criteo TSV."""
    labels: list[int] = []
    dense: list[list[int]] = []
    sparse: list[list[int]] = []
    width = 1 + NUM_DENSE + NUM_SPARSE
    with open(path) as fh:
        for lineno, line in enumerate(fh, 1):
            if count is not None and len(labels) >= count:
                break
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) != width:
                raise ValueError(f"criteo workload: {path}:{lineno}: {len(fields)} tab-separated "
                                 f"fields, expected {width} (label, 13 integers, 26 hex)")
            try:
                labels.append(int(fields[0] or 0))
                dense.append([int(v) if v else 0 for v in fields[1:1 + NUM_DENSE]])
                sparse.append([int(v, 16) if v else 0 for v in fields[1 + NUM_DENSE:]])
            except ValueError as err:
                raise ValueError(f"criteo workload: {path}:{lineno}: {err}") from None
    if not labels:
        raise ValueError(f"criteo workload: {path} has no lines")
    cats = np.asarray(sparse, dtype=np.int64)
    if max_ind_range > 0:  # the reference hashes by modulo; 0 or less keeps raw ids
        cats %= max_ind_range
    return (preprocess_dense(np.asarray(dense, dtype=np.int64)), cats,
            np.asarray(labels, dtype=np.float32))


def _inspect(path: Path, key: str) -> None:
    """Refuse, in one line naming the config key, a model that is not a DLRM as we run it:
    other inputs than the recommendation task declares, or other than one output."""
    inputs, outputs = model_io(path)
    match_inputs(INPUTS, inputs, f"criteo workload: {key}: {path.name}")
    if len(outputs) != 1:
        raise ValueError(f"criteo workload: {key}: {path.name} has {len(outputs)} "
                         "outputs; expected one, the click probability [N] or [N, 1]")


def _key(model: str, precision: str) -> str:
    """The config key of a model file: ``models.NAME`` (fp32) or ``models.NAME.PRECISION``."""
    return f"models.{model}" + (f".{precision}" if precision != "fp32" else "")


class CriteoWorkload(DlrmWorkload):
    """Criteo Terabyte ``day_23`` (MLPerf's evaluation day) x user-supplied ONNX DLRMs."""

    name = "criteo"
    Config = CriteoConfig

    def __init__(self, cache_dir=None, dataset_dir: str | os.PathLike | None = None,
                 models: Mapping[str, Any] | None = None, count: int | None = None,
                 max_ind_range: int = MLPERF_MAX_IND_RANGE,
                 reference_accuracy: float | None = None, disk_cache: bool = True,
                 **extra: Any):
        super().__init__(cache_dir)
        if extra:
            raise ValueError(f"criteo workload: unknown config key(s) {sorted(extra)}; known: "
                             "dataset_dir, models, count, max_ind_range, reference_accuracy, "
                             "disk_cache")
        if count is not None and int(count) < 1:
            raise ValueError(f"criteo workload: count={count}; a positive number of lines")
        self._reference = None if reference_accuracy is None else float(reference_accuracy)
        self.models = self._parse_models(models)
        self.day_file = self._check_dataset_dir(dataset_dir)
        self.count, self.max_ind_range = (None if count is None else int(count)), int(max_ind_range)
        self.dense, self.sparse, self.labels = self._load(bool(disk_cache))
        self._make_users()

    # --- config checks ---------------------------------------------------------------------
    @staticmethod
    def _parse_models(models: Mapping[str, Any] | None) -> dict[str, dict[str, Path]]:
        return parse_model_files("criteo", models, PRECISIONS, "dlrm: /data/dlrm.onnx")

    @staticmethod
    def _check_dataset_dir(dataset_dir: str | os.PathLike | None) -> Path:
        if dataset_dir is None or str(dataset_dir) in ("", "???"):
            raise ValueError(f"criteo workload: `dataset_dir` is required (the folder holding "
                             f"Criteo Terabyte's {DAY_FILE})")
        path = Path(str(dataset_dir)).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"criteo workload: dataset_dir {path} is not a folder")
        if not (path / DAY_FILE).is_file():
            raise FileNotFoundError(f"criteo workload: dataset_dir {path} has no {DAY_FILE} "
                                    "(Criteo Terabyte's last day, the TSV MLPerf evaluates on)")
        return (path / DAY_FILE).resolve()

    def _load(self, disk_cache: bool) -> tuple[np.ndarray, ...]:
        st = self.day_file.stat()
        key = content_hash(str(self.day_file), st.st_size, st.st_mtime_ns, self.count,
                           self.max_ind_range, PARSER_VERSION)
        cached = self.cache_dir / "criteo" / f"{key}.npz"
        if disk_cache and cached.is_file():
            try:
                with np.load(cached) as z:
                    return z["dense"], z["sparse"], z["labels"]
            except (OSError, ValueError, KeyError):
                pass  # a torn or foreign file: parse again
        arrays = parse_day(self.day_file, self.count, self.max_ind_range)
        if disk_cache:  # atomic: several workers may share one cache
            buffer = io.BytesIO()
            np.savez(buffer, dense=arrays[0], sparse=arrays[1], labels=arrays[2])
            atomic_write_bytes(cached, buffer.getvalue())
        return arrays

    # --- facts read without building the workload ----------------------------------------
    @classmethod
    def check(cls, cfg: Mapping[str, Any]) -> None:
        """The day file exists and every model file is a DLRM as the task declares it."""
        cls._check_dataset_dir(cfg.get("dataset_dir"))
        for model, files in cls._parse_models(cfg.get("models")).items():
            for precision, path in files.items():
                _inspect(path, _key(model, precision))

    @classmethod
    def reference_accuracy(cls, cfg: Mapping[str, Any] | None = None) -> float | None:
        value = (cfg or {}).get("reference_accuracy")
        return None if value is None else float(value)

    @classmethod
    def model_choices(cls, cfg: Mapping[str, Any] | None = None) -> dict[str, tuple | None]:
        models = (cfg or {}).get("models")
        names = tuple(str(m) for m in models) if isinstance(models, Mapping) else None
        return {"model": names, "precision": PRECISIONS}

    # --- the model family ------------------------------------------------------------------
    def variant(self, model: str | None = None, precision: str = "fp32", **extra: Any) -> Variant:
        if extra:
            raise ValueError(f"criteo workload: unknown model parameter(s) {sorted(extra)}; "
                             "known: model, precision")
        if model is None:
            if len(self.models) != 1:
                raise ValueError(f"criteo workload: say which `model`; one of {sorted(self.models)}")
            model = next(iter(self.models))
        if model not in self.models:
            raise ValueError(f"criteo workload: model {model!r} is not in `models`; "
                             f"one of {sorted(self.models)}")
        if precision not in self.models[model]:
            raise ValueError(f"criteo workload: no {precision!r} file for model {model!r} "
                             f"(models.{model} gives {sorted(self.models[model])})")
        path = self.models[model][precision]
        _inspect(path, _key(model, precision))
        return Variant(name=f"{model}_{precision}", precision=precision,
                       params={"model": model, "path": str(path)})

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        if fmt != "onnx":
            raise ValueError(f"criteo workload has ONNX files only, not {fmt!r}")
        return Path(variant.params["path"])

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "day_file": str(self.day_file), "count": self.count,
                "max_ind_range": self.max_ind_range,
                "models": {m: {k: str(v) for k, v in f.items()} for m, f in self.models.items()}}


WORKLOAD = CriteoWorkload
