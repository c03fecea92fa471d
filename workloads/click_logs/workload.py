"""The default recommendation workload: a small DLRM on synthetic click logs, offline.

The evaluation set is drawn at load from the known click model (``data.py``; ~0.2 s for
the default 131,072 pairs, nothing shipped), then cut into users by MLPerf's block
distribution (``workloads/tasks/recommendation.py``). Shipped: one float32 weight file per embedding dimension
(``assets/``, trained by ``train.py``). Built on first use and cached by content hash: the
ONNX graph of a (dim, table precision); see ``model.py`` for what each precision does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from backends.cache import content_hash, publish_file
from workloads.base import Variant
from workloads.click_logs.data import EVAL_SEED, WORLD_SEED, ClickModel
from workloads.click_logs.model import DIMS, PRECISIONS, build_onnx
from workloads.tasks.recommendation import DlrmWorkload

ASSETS = Path(__file__).parent / "assets"
BUILDER_VERSION = 1  # bump when the graph or the quantisation recipe changes
DEFAULT_PAIRS = 131072


@dataclass
class ClickLogsConfig:
    """conf/workload/click_logs.yaml documents each key."""

    name: str = "click_logs"
    pairs: int = DEFAULT_PAIRS
    seed: int = EVAL_SEED


class ClickLogsWorkload(DlrmWorkload):
    name = "click_logs"
    Config = ClickLogsConfig

    def __init__(self, cache_dir=None, pairs: int = DEFAULT_PAIRS, seed: int = EVAL_SEED,
                 **extra: Any):
        super().__init__(cache_dir)
        if extra:
            raise ValueError(f"click_logs workload: unknown config key(s) {sorted(extra)}; "
                             "known: pairs, seed")
        if int(pairs) < 100:
            raise ValueError(f"click_logs workload: pairs={pairs}; at least 100 (one user)")
        self.pairs, self.seed = int(pairs), int(seed)
        logs = ClickModel().draw(self.pairs, self.seed)
        self.dense, self.sparse, self.labels = logs.dense, logs.sparse, logs.labels
        self._probability = logs.probability
        self._make_users()

    # --- facts read without building the workload ------------------------------------
    @classmethod
    def manifest(cls) -> dict[str, Any]:
        path = ASSETS / "manifest.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    @classmethod
    def reference_accuracy(cls, cfg: Mapping[str, Any] | None = None) -> float | None:
        """The best fp32 AUC the shipped models reached on the default evaluation draw."""
        auc = cls.manifest().get("auc", {})
        fp32 = [v for k, v in auc.items() if k.endswith("_fp32")]
        return max(fp32) if fp32 else None

    @classmethod
    def model_choices(cls, cfg: Mapping[str, Any] | None = None) -> dict[str, tuple | None]:
        return {"dim": DIMS, "precision": PRECISIONS}

    # --- the model family ----------------------------------------------------------------
    def variant(self, dim: int = 16, precision: str = "fp32", **extra: Any) -> Variant:
        if extra:
            raise ValueError(f"click_logs workload: unknown model parameter(s) {sorted(extra)}; "
                             "known: dim, precision")
        if int(dim) not in DIMS:
            raise ValueError(f"click_logs workload: dim={dim} is not shipped; one of {DIMS}")
        if precision not in PRECISIONS:
            raise ValueError(f"click_logs workload: precision={precision!r}; one of {PRECISIONS}")
        return Variant(name=f"dlrm_d{int(dim)}_{precision}", precision=precision,
                       params={"dim": int(dim)})

    @staticmethod
    def weights_file(dim: int) -> Path:
        return ASSETS / f"dlrm_d{dim}.npz"

    def model_file(self, variant: Variant, fmt: str = "onnx") -> Path:
        if fmt != "onnx":
            raise ValueError(f"click_logs workload makes ONNX models only, not {fmt!r} "
                             "(run it on onnxruntime or tvm)")
        dim = variant.params["dim"]
        weights = self.weights_file(dim)
        if not weights.is_file():
            raise FileNotFoundError(f"click_logs workload: weights {weights} missing; "
                                    "python -m workloads.click_logs.train")
        key = content_hash(weights, dim, variant.precision, BUILDER_VERSION)
        path = self.cache_dir / "models" / f"{variant.name}-{key}.onnx"
        if not path.exists():
            def build(tmp: Path) -> None:
                model = build_onnx(dict(np.load(weights)), dim, variant.precision)
                tmp.write_bytes(model.SerializeToString())
            publish_file(path, build)
        return path

    def weights_description(self, variant: Variant, runtime: str) -> dict[str, str]:
        steps = {"fp32": "none (float32 as trained)",
                 "fp16": "embedding tables cast to float16 (gathered rows cast back to float32)",
                 "int8": "embedding tables quantised row-wise to uint8 with a float32 scale "
                         "and bias per row (dequantised in the graph after the gather)"}
        return {"starting_weights_filename": self.weights_file(variant.params["dim"]).name,
                "retraining": "yes: a small DLRM trained from scratch on synthetic click logs "
                              "(workloads/click_logs/train.py), not the MLPerf reference weights",
                "input_data_types": self.input_data_types(variant),
                "weight_data_types": ("fp32" if variant.precision == "fp32"
                                      else f"{variant.precision} embeddings, fp32 MLPs"),
                "weight_transformations": steps[variant.precision]}

    # --- the dataset ---------------------------------------------------------------------
    def bayes_auc(self) -> float:
        """The click model's own AUC on this draw: what no model can beat (on average)."""
        from sklearn.metrics import roc_auc_score

        return float(roc_auc_score(self.labels, self._probability))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "click_model_seed": WORLD_SEED, "data_seed": self.seed}
