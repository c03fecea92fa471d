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
   ``input_shape`` is the batch shape the model takes.
3. ``warmup(sample)``: a few predictions so first-call costs (allocation, JIT) stay out of
   LoadGen's figures.
4. ``predict(batch)`` many times: a float32 NCHW batch in, logits (N, classes) out.
5. ``close()``: free native resources before the next trial.

Backends know nothing of studies or LoadGen; they only run a model.
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np


class BackendOptionError(ValueError):
    """An option the runtime does not take, or a value it cannot use: the config's fault,
    not the model file's or the node's."""


class BackendUnavailable(RuntimeError):
    """The runtime cannot run on this node (not installed, no device)."""


class Backend:
    name: ClassVar[str] = ""
    #: the model file format this runtime loads ("onnx", "tflite", ...)
    model_format: ClassVar[str] = "onnx"

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
        self.input_shape: tuple[int, ...] | None = None

    def load(self) -> None:
        raise NotImplementedError

    def predict(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def warmup(self, sample: np.ndarray, iterations: int = 5) -> None:
        for _ in range(iterations):
            self.predict(sample)

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

    def _unknown_options(self, known: set[str]) -> None:
        unknown = set(self.options) - known
        if unknown:
            raise BackendOptionError(f"{self.name}: unknown option(s) {sorted(unknown)}; "
                             f"known: {sorted(known)}")
