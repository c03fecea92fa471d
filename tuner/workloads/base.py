"""A workload: a model family + a dataset + an accuracy metric.

Lifecycle on a worker, per trial:

1. ``create(cfg)`` builds the workload from its config (``conf/workload/*.yaml``).
2. ``variant(**model_params)`` names one member of the family (e.g. width 0.5,
   resolution 64, int8) and ``model_file(variant, fmt)`` returns a model file for a
   runtime's format, building and caching it on first use (content-hash keyed).
3. LoadGen's QSL calls ``load_samples(indices, variant)``: preprocessed float32 arrays.
4. ``labels`` scores the accuracy log; ``postprocess`` maps model output to class ids.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# The cache helpers live with the runtimes (the lower floor); re-exported for workloads.
from backends.cache import atomic_write_bytes, cache_lock, content_hash, default_cache_dir  # noqa: F401


@dataclass(frozen=True)
class Variant:
    """One member of a model family."""

    name: str  # e.g. mobilenet_v1_w0.5_r64_int8: unique within the workload
    resolution: int
    precision: str
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


class Workload:
    name: str = ""
    num_classes: int = 0
    #: added to a model's argmax to get the dataset label (-1 for 1001-class ImageNet models)
    label_offset: int = 0
    #: the LoadGen model name used in FromConfig (its mlperf.conf rules and seeds)
    loadgen_model: str = "resnet50"

    def __init__(self, cache_dir: str | os.PathLike | None = None):
        self.cache_dir = Path(cache_dir or default_cache_dir())

    # --- the model family -------------------------------------------------------
    def variant(self, **params: Any) -> Variant:
        raise NotImplementedError

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        raise NotImplementedError

    def reference_accuracy(self) -> float | None:
        """The family's best fp32 top-1 (MLPerf's accuracy target is 99% of it), if known."""
        return None

    # --- the dataset ------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def total_sample_count(self) -> int:
        return len(self.labels)

    def load_samples(self, indices: list[int], variant: Variant) -> np.ndarray:
        raise NotImplementedError

    def postprocess(self, logits: np.ndarray) -> np.ndarray:
        """(N, classes) model output -> (N,) int32 dataset labels."""
        return (np.argmax(logits, axis=1) + self.label_offset).astype(np.int32)

    def weights_description(self, variant: Variant, runtime: str) -> dict[str, str]:
        """MLPerf measurements.json facts of a variant (what the weights are and what was
        done to them), recorded with each trial so the packer never rebuilds a workload."""
        steps = ["none (the supplied model file as is)"]
        if variant.precision == "int8":
            steps = ["the supplied int8 model file as is"]
        return {"starting_weights_filename": Path(variant.params.get("path", "user-supplied model")).name,
                "retraining": "no", "input_data_types": "fp32",
                "weight_data_types": variant.precision,
                "weight_transformations": "; ".join(steps)}

    def describe(self) -> dict[str, Any]:
        return {"workload": self.name, "classes": self.num_classes,
                "samples": self.total_sample_count}
