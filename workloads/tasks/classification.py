"""Image classification as a task: one image array in, one int32 class id out, top-1.

Shared by the classification workloads (digits, ImageNet). Declared tensors: one float32
image input (N, C, H, W), or (N, H, W, C) for a TFLite or NHWC file; the first output holds
class scores (N, classes), or class indices where the model ends in an ArgMax. A sample is a contiguous
(1, C, H, W) float32 array, so a one-sample query goes to the runtime as is (no stacking);
a response is one int32 class id written into a preallocated buffer whose address is
computed once (LoadGen copies response bytes inside ``QuerySamplesComplete``, and each
responder is used by one thread at a time). Every microsecond here lands in LoadGen's
latency figures: this is the allocation-free path ``benchmarks/harness_overhead.py`` measures.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from backends.base import TensorSpec
from workloads.base import (Metric, Predict, Response, Score, TensorRole, Variant, Workload,
                            match_inputs)

LABEL_BYTES = 4  # one int32 class id per response
TOP1 = Metric("top1", "accuracy")
IMAGE = TensorRole("image", ("float32",), rank=4)
SCORES = TensorRole("scores", ("float32", "float16", "int64", "int32"))


def is_nhwc(spec: TensorSpec, resolution: int | None) -> bool:
    """A TFLite image model takes NHWC; ONNX ones here take NCHW (the samples' layout)."""
    shape = spec.shape
    return len(shape) == 4 and shape[1] == resolution and shape[2] == resolution \
        and shape[3] != resolution


class ClassificationResponder:
    """Samples -> class ids, via ``predict`` and ``postprocess`` (argmax + offset)."""

    def __init__(self, predict: Predict, postprocess, input_spec: TensorSpec, nhwc: bool,
                 batch_size: int):
        self._predict, self._post = predict, postprocess
        self._name, self._nhwc = input_spec.name, nhwc
        self._capacity = 0
        self._grow(max(1, int(batch_size)))

    def _grow(self, n: int) -> None:
        self._capacity = n
        self._labels = np.zeros(n, dtype=np.int32)
        self._ptr = self._labels.ctypes.data
        self._one = [(self._ptr, LABEL_BYTES)]
        self._batch_buf: np.ndarray | None = None  # (capacity, C, H, W), on first use

    def _gather(self, samples: Sequence[np.ndarray]) -> np.ndarray:
        n = len(samples)
        if n == 1:
            return samples[0]
        if self._batch_buf is None:
            first = samples[0]
            self._batch_buf = np.empty((self._capacity,) + first.shape[1:], first.dtype)
        out = self._batch_buf[:n]
        np.concatenate(samples, axis=0, out=out)
        return out

    def __call__(self, samples: Sequence[np.ndarray]) -> Sequence[Response]:
        n = len(samples)
        if n > self._capacity:
            self._grow(n)
        batch = self._gather(samples)
        if self._nhwc:
            batch = np.ascontiguousarray(batch.transpose(0, 2, 3, 1))
        labels = self._post(self._predict({self._name: batch})[0])
        if n == 1:
            self._labels[0] = labels[0]
            return self._one
        self._labels[:n] = labels
        ptr = self._ptr
        return [(ptr + LABEL_BYTES * j, LABEL_BYTES) for j in range(n)]


def top1(responses: Mapping[int, bytes], labels: np.ndarray) -> Score:
    """Top-1 over the responses (one int32 class id each), as MLPerf's accuracy-imagenet.py."""
    good = 0
    for idx, data in responses.items():
        pred = np.frombuffer(data, dtype=np.int32)
        good += int(len(pred) > 0 and int(pred[0]) == int(labels[idx]))
    total = len(responses)
    value = good / total if total else 0.0
    return Score(TOP1.name, value,
                 f"{TOP1.mlperf_key}={100.0 * value:.3f}%, good={good}, total={total}",
                 count=total, good=good)


class ClassificationWorkload(Workload):
    """A classification family: subclasses give ``labels``, ``load_samples`` (contiguous
    (1, C, H, W) float32 arrays, NCHW) and the model family."""

    metric: ClassVar[Metric] = TOP1
    inputs: ClassVar[tuple[TensorRole, ...]] = (IMAGE,)
    outputs: ClassVar[tuple[TensorRole, ...]] = (SCORES,)
    num_classes: int = 0
    #: added to a model's argmax to get the dataset label (-1 for 1001-class ImageNet models)
    label_offset: int = 0

    @property
    def labels(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def total_sample_count(self) -> int:
        return len(self.labels)

    def load_batch(self, indices: Sequence[int], variant: Variant) -> np.ndarray:
        """(N, C, H, W) float32, preprocessed."""
        raise NotImplementedError

    def load_samples(self, indices: Sequence[int], variant: Variant) -> list[np.ndarray]:
        batch = np.ascontiguousarray(self.load_batch(list(indices), variant), dtype=np.float32)
        return [batch[j:j + 1] for j in range(len(batch))]  # contiguous (1, C, H, W) views

    def postprocess(self, logits: np.ndarray) -> np.ndarray:
        """(N, classes) model output -> (N,) int32 dataset labels."""
        return (np.argmax(logits, axis=1) + self.label_offset).astype(np.int32)

    def transpose_to_nhwc(self, variant: Variant, spec: TensorSpec) -> bool:
        """Samples are NCHW; a model taking NHWC gets them transposed in the responder."""
        return is_nhwc(spec, variant.resolution)

    def responder(self, variant: Variant, predict: Predict, inputs: Sequence[TensorSpec],
                  outputs: Sequence[TensorSpec], batch_size: int) -> ClassificationResponder:
        spec = match_inputs(self.inputs, inputs, f"{self.name} workload: {variant.name}")["image"]
        return ClassificationResponder(predict, self.postprocess, spec,
                                       self.transpose_to_nhwc(variant, spec), batch_size)

    def score(self, responses: Mapping[int, bytes]) -> Score:
        return top1(responses, self.labels)

    def per_sample(self, responses: Mapping[int, bytes]) -> dict[int, float]:
        labels = self.labels
        return {idx: float(len(data) >= LABEL_BYTES
                           and int(np.frombuffer(data[:LABEL_BYTES], np.int32)[0]) == int(labels[idx]))
                for idx, data in responses.items()}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "classes": self.num_classes}
