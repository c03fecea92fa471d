"""Object detection as a task: one image in, MLPerf's detection records out, COCO mAP.

Shared by the detection workloads (``digit_canvases``, ``coco``). A sample is one
preprocessed image with its original size (``Sample``); a response is MLPerf's float32
records ``[qsl_idx, ymin, xmin, ymax, xmax, score, class_id]`` (``detection_post``), seven
floats a detection, written by the responder into a buffer it reuses; the score is COCO
mAP computed as MLPerf's ``accuracy-coco.py`` computes it (``coco_eval``), from the
workload's COCO-format ``annotations()``. Declared tensors: one image input (N, ...) of
uint8 or float32 (a family narrows it); how a model's outputs become boxes (an SSD head
with anchors, TF's detection outputs, YOLO's rows) belongs to the model family, which
declares them (``outputs``) and reads them by name from the runtime's output specs.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping, Sequence

import numpy as np

from backends.base import TensorSpec
from workloads.base import Metric, Score, TensorRole, Workload
from workloads.tasks import coco_eval

MAP = Metric("mAP", "mAP")
IMAGE = TensorRole("image", ("uint8", "float32"), rank=4)


def output_positions(outputs: Sequence[TensorSpec], names: Sequence[str]) -> list[int]:
    """Where the outputs called ``names`` sit in ``predict``'s list (the order of the
    runtime's ``outputs`` specs), found once per responder: no guessing by shape or dtype."""
    at = {spec.name: i for i, spec in enumerate(outputs)}
    missing = [n for n in names if n not in at]
    if missing:
        raise ValueError(f"the model has no output {missing[0]!r}; its outputs: "
                         f"{[spec.name for spec in outputs]}")
    return [at[n] for n in names]


@dataclass
class Sample:
    """One preprocessed image: its QSL index, the model's input, its original size."""

    index: int
    image: np.ndarray
    height: int
    width: int


class DetectionWorkload(Workload):
    """A detection family: subclasses give ``annotations()`` (COCO format, ``images`` in
    QSL order), ``load_samples`` (``Sample``s) and the model family with its responder."""

    metric: ClassVar[Metric] = MAP
    inputs: ClassVar[tuple[TensorRole, ...]] = (IMAGE,)

    def annotations(self) -> dict:
        raise NotImplementedError

    @property
    def ground_truth(self):
        """The annotations as pycocotools' ``COCO``, built once."""
        if getattr(self, "_gt", None) is None:
            self._gt = coco_eval.coco_ground_truth(self.annotations())
        return self._gt

    def annotation_file(self, coco_dir: str | Path) -> Path:
        """Write ``coco_dir/annotations/instances_val2017.json``, the layout MLPerf's
        ``accuracy-coco.py --coco-dir`` reads."""
        path = Path(coco_dir) / "annotations" / "instances_val2017.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.annotations()))
        return path

    def score(self, responses: Mapping[int, bytes]) -> Score:
        return coco_eval.score(self.ground_truth, responses, self.metric.name)
