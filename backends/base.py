"""The one interface every runtime implements.

Lifecycle, in the order the measuring harness calls it:

1. ``Backend.available()`` (class method): can this node run it at all? Returns ``None``
   when it can, else a one-line reason ("apache-tvm is not installed"). Called by node
   detection and before a trial loads anything, so a missing optional runtime is a clear
   message, never an ImportError in the middle of a study.
2. ``Backend(model_path, options, cache_dir)`` then ``load()`` (or both at once:
   ``backends.load(name, model_path, options, cache_dir)``): build the
   session/engine/interpreter once per trial. ``options`` are the runtime's knobs as the
   search space named them (an unknown one is a ``ValueError`` naming it); ``cache_dir``
   is where a runtime may cache compiled artifacts (``backends.cache``). After ``load``,
   ``inputs`` and ``outputs`` describe the model's tensors as this runtime sees them
   (name, shape, dtype; a TFLite image model's input is NHWC, an ONNX one often NCHW).
3. ``warmup(feeds)``: a few predictions so first-call costs (allocation, JIT) stay out of
   LoadGen's figures.
4. ``predict(feeds)`` many times: a dict of named inputs in, the list of all outputs out
   (the MLCommons reference backend's shape), in ``outputs`` order, which is the model
   file's own output order (``tests/test_backends.py`` checks every runtime).
5. ``close()``: free native resources before the next trial.

``KNOBS`` names the options a runtime takes (the search space's ``backends.<name>.knobs``;
any other is refused in ``load``). ``OUTPUT_INVARIANT_KNOBS`` names those that never change
a model's outputs (thread counts, say), so an accuracy measured under one setting holds for
the others; any other knob (a graph optimisation level, a kernel library, a precision) may
change them.

Backends know nothing of studies, tasks or LoadGen; they only run a model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """A model input or output as the runtime sees it: name, shape (None or a negative
    number for a dynamic axis), numpy dtype."""

    name: str
    shape: tuple
    dtype: np.dtype

    @property
    def batch_dynamic(self) -> bool:
        return not self.shape or not isinstance(self.shape[0], int) or self.shape[0] <= 0


class BackendOptionError(ValueError):
    """An option the runtime does not take, or a value it cannot use: the config's fault,
    not the model file's or the node's."""


class BackendUnavailable(RuntimeError):
    """The runtime cannot run on this node (not installed, no device)."""


class Backend:
    name: ClassVar[str] = ""
    #: the model file format this runtime loads ("onnx", "tflite", ...)
    model_format: ClassVar[str] = "onnx"
    #: the options (knobs) it takes; ``load`` refuses any other (``_unknown_options``)
    KNOBS: ClassVar[frozenset[str]] = frozenset()
    #: knobs that leave the outputs bit for bit the same (see the module docstring)
    OUTPUT_INVARIANT_KNOBS: ClassVar[frozenset[str]] = frozenset()

    @classmethod
    def available(cls) -> str | None:
        raise NotImplementedError

    @classmethod
    def version(cls) -> str:
        raise NotImplementedError

    def __init__(self, model_path: str, options: dict[str, Any] | None = None,
                 cache_dir: str | None = None):
        self.model_path = str(model_path)
        self.options = dict(options or {})
        self.cache_dir = cache_dir  # where a runtime may cache compiled artifacts
        self.inputs: list[TensorSpec] = []
        self.outputs: list[TensorSpec] = []

    def load(self) -> None:
        raise NotImplementedError

    def predict(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def warmup(self, feeds: dict[str, np.ndarray], iterations: int = 5) -> None:
        for _ in range(iterations):
            self.predict(feeds)

    def close(self) -> None:
        pass

    def option_bool(self, name: str, default: bool) -> bool:
        """A boolean knob, accepting what a YAML or CLI override may give (true/"true"/1)."""
        value = self.options.get(name, default)
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if isinstance(value, (int, np.integer)) and value in (0, 1):
            return bool(value)
        raise BackendOptionError(f"{self.name}: {name}={value!r} is not a boolean")

    def _unknown_options(self, known: frozenset[str] | set[str]) -> None:
        unknown = set(self.options) - known
        if unknown:
            raise BackendOptionError(f"{self.name}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(known)}")
