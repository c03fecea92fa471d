"""Apache TVM 0.27 (Relax) on the CPU: the ONNX file -> Relax -> LLVM, optionally tuned by
MetaSchedule (``backends.tvm_tuning``), run by the Relax VM.

Knobs:
- ``num_threads`` (int, default: the CPUs this process may use): TVM's runtime thread
  count. Always set explicitly: TVM otherwise reads ``OMP_NUM_THREADS``, which Ray sets to
  1 in its tasks, and on x86 it halves the core count for hyper-threading. Untuned kernels
  have no parallel loops, so the knob only matters for tuned builds.
- ``tuning_trials`` (int, default 0): the MetaSchedule budget (measured candidates over all
  tasks); 0 builds untuned with the default Relax pipeline.
- ``target`` (str or dict, default: this host): a TVM tag (``raspberry-pi/4b-aarch64``), a
  kind (``llvm``) or a target dict; by default ``{"kind": "llvm", "mcpu": <host CPU>}``
  (``backends.tvm_target``).
- ``batch_size`` (int, default 1): the batch the model is compiled for (static shapes are
  what MetaSchedule tunes); other batch sizes run in chunks, the last one zero-padded.
- ``bind_threads`` (bool, default False): let TVM pin its threads to cores. Off because
  nodes are shared by several workers, where pinning makes threads queue for one core.

Not a knob: ``cache_dir`` (the engine may pass it; default ``default_cache_dir()``).

Compiling takes seconds (untuned) to minutes (tuned), so the exported library (``.so``) and
each MetaSchedule database are cached under ``<cache_dir>/tvm/``, keyed by the model
file's contents, the target, the options that change the code and the TVM version, and
published whole (``backends.cache``), so concurrent trials and later runs reuse one build.
``TVMBackend.compiles``/``tunings`` count the builds this process did; ``self.cache_hit``
says whether ``load`` found its library built.
"""
from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, Iterator

import numpy as np

from backends.base import Backend, BackendOptionError, BackendUnavailable, TensorSpec
from backends.cache import content_hash, default_cache_dir, publish_file
from backends.tvm_target import resolve_target, usable_cpus
from backends.tvm_tuning import SEED as TUNING_SEED
from backends.tvm_tuning import tuning_database

log = logging.getLogger(__name__)

#: bump when the way a library or a database is built changes (invalidates the cache)
BUILD_VERSION = 1
_NOT_KNOBS = {"cache_dir"}

__all__ = ["TVMBackend"]


class TVMBackend(Backend):
    name = "tvm"
    model_format = "onnx"
    KNOBS = frozenset({"num_threads", "tuning_trials", "target", "batch_size", "bind_threads"})
    # tuned kernels (another schedule) and the target (other instructions) may change
    # float results; the thread count and pinning do not
    OUTPUT_INVARIANT_KNOBS = frozenset({"num_threads", "bind_threads", "batch_size"})

    #: builds done by this process (a cache hit adds nothing): tests assert on these
    compiles: ClassVar[int] = 0
    tunings: ClassVar[int] = 0

    @classmethod
    def available(cls) -> str | None:
        import importlib.util

        if importlib.util.find_spec("tvm") is None or importlib.util.find_spec("tvm_ffi") is None:
            return "apache-tvm is not installed; pip install 'tuner[tvm]'"
        if _c_compiler() is None:
            return "TVM needs a C/C++ compiler (g++, or $CXX) to export compiled models"
        return None

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("apache-tvm")
        except PackageNotFoundError:
            import tvm

            return str(tvm.__version__)

    def __init__(self, model_path: str, options: dict[str, Any] | None = None,
                 cache_dir: str | None = None):
        super().__init__(model_path, options, cache_dir)
        self.cache_hit = False
        self.library_path: Path | None = None
        self.target: str = ""  # the resolved target, as TVM prints it (JSON)
        self.num_threads = 0
        self.build_seconds = 0.0

    # --- load -----------------------------------------------------------------------
    def load(self) -> None:
        reason = self.available()
        if reason:
            raise BackendUnavailable(reason)
        self._unknown_options(self.KNOBS | _NOT_KNOBS)
        self.num_threads = int(self.options.get("num_threads") or usable_cpus())
        if self.num_threads < 1:
            raise BackendOptionError(f"tvm: num_threads={self.num_threads} must be >= 1")
        trials = int(self.options.get("tuning_trials", 0))
        if trials < 0:
            raise BackendOptionError(f"tvm: tuning_trials={trials} must be >= 0")
        self._batch = int(self.options.get("batch_size", 1))
        if self._batch < 1:
            raise BackendOptionError(f"tvm: batch_size={self._batch} must be >= 1")
        self._bind = self.option_bool("bind_threads", False)

        import tvm
        from tvm import relax

        self._thread_ready: set[int] = set()
        self._ready_this_thread()  # before the build: tuning runs kernels on this thread
        # Tuned kernels split parallel loops by the target's num-cores: tune for the thread
        # count they will run with. Untuned kernels do not read it; leaving it out there lets
        # every thread count share one library.
        target = resolve_target(self.options.get("target"),
                                num_cores=self.num_threads if trials else None)
        self.target = str(target)
        cache_root = Path(self.cache_dir or self.options.get("cache_dir") or default_cache_dir()) / "tvm"
        model = Path(self.model_path)
        stem = f"{model.stem}-b{self._batch}-t{trials}"
        key = content_hash(model, self.target, self._batch, trials, tvm.__version__,
                           BUILD_VERSION)
        self.library_path = cache_root / f"{stem}-{key}.so"
        self.inputs = [TensorSpec(name, (self._batch, *shape), dtype)
                       for name, shape, dtype in _onnx_inputs(model)]
        self.outputs = _onnx_outputs(model)

        built = []

        def build(tmp: Path) -> None:
            db_dir = None
            if trials:
                db_key = content_hash(model, self.target, self._batch, trials,
                                      tvm.__version__, BUILD_VERSION, TUNING_SEED)
                db_dir = cache_root / f"{stem}-{db_key}.db"
            self._build(target, db_dir, trials).export_library(str(tmp))
            built.append(True)

        if not self.library_path.exists():
            publish_file(self.library_path, build)
        self.cache_hit = not built
        self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(self.library_path)),
                                        tvm.cpu())
        self._main = self._vm["main"]
        self._buffers = [tvm.runtime.empty(spec.shape, str(spec.dtype), tvm.cpu())
                         for spec in self.inputs]

    def _build(self, target, db_dir: Path | None, trials: int):
        """Compile the model (tuned from the database at ``db_dir`` when given): the
        executable, for the caller to export."""
        import tvm

        started = time.perf_counter()
        mod = self._import()
        if db_dir is not None:
            from tvm import relax
            from tvm.ir.transform import PassContext

            # MetaSchedule tunes the fused kernels (task extraction only collects call_tir
            # functions already in the module), and the database applies to that same fused
            # module; tvm.compile then only lowers it.
            with target:
                mod = relax.get_pipeline("zero")(mod)
            db, tuned = tuning_database(mod, target, trials, db_dir)
            TVMBackend.tunings += tuned
            with target, db, PassContext(opt_level=3):
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        # Untuned: the default pipeline (no fusion) compiles 3-4x faster than the fused one
        # and runs within 10% of it.
        ex = tvm.compile(mod, target=target)
        TVMBackend.compiles += 1
        self.build_seconds = time.perf_counter() - started
        log.info("tvm: compiled %s (%d tuning trials) in %.1f s", self.model_path, trials,
                 self.build_seconds)
        return ex

    def _import(self):
        import onnx
        from tvm.relax.frontend.onnx import from_onnx

        model = onnx.load(self.model_path)
        # Fix the symbolic batch dimension: static shapes are what MetaSchedule tunes.
        return from_onnx(model, shape_dict={s.name: list(s.shape) for s in self.inputs},
                         dtype_dict={s.name: str(s.dtype) for s in self.inputs})

    def _ready_this_thread(self) -> None:
        """Size the calling thread's TVM pool before its first kernel runs: the loading
        thread, then each thread that predicts (LoadGen's issue thread, a Server pool)."""
        ident = threading.get_ident()
        if ident not in self._thread_ready:
            _configure_threads(self.num_threads, self._bind)
            self._thread_ready.add(ident)

    # --- run ------------------------------------------------------------------------
    def predict(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        # One call at a time (as LoadGen's SUT calls it): the input buffers are reused, since
        # copying into them costs a third of allocating new tensors per call.
        if threading.get_ident() not in self._thread_ready:
            self._ready_this_thread()
        arrays = [np.ascontiguousarray(feeds[s.name], dtype=s.dtype) for s in self.inputs]
        n, b = len(arrays[0]), self._batch
        if n == b:
            return self._run(arrays)
        outs: list[list[np.ndarray]] = []
        for start in range(0, n, b):
            chunk = [a[start:start + b] for a in arrays]
            if len(chunk[0]) < b:  # the compiled shape is static: pad the tail
                chunk = [np.concatenate([c, np.zeros((b - len(c), *c.shape[1:]), c.dtype)])
                         for c in chunk]
            outs.append(self._run(chunk))
        return [np.concatenate(parts)[:n] for parts in zip(*outs)]

    def _run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        for buf, a in zip(self._buffers, arrays):
            buf.copyfrom(a)
        out = self._main(*self._buffers)
        return [o.numpy() for o in out] if isinstance(out, (tuple, list)) or \
            type(out).__name__ == "Array" else [out.numpy()]

    def close(self) -> None:
        self._main = self._vm = self._buffers = None


# --- threads -----------------------------------------------------------------------------
@contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then put back what was there."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _configure_threads(n: int, bind: bool) -> None:
    """Size and (un)pin the calling thread's TVM pool.

    Each thread gets its own pool, created on first use with ``MaxConcurrency()`` workers:
    ``TVM_NUM_THREADS``, else ``OMP_NUM_THREADS`` (1 in a Ray task), read at that moment.
    ``runtime.config_threadpool`` can only use fewer workers than that, and TVM has no API
    for the pool's size, so the variable is set while this call creates the pool, and put
    back after. ``TVM_BIND_THREADS`` is read by the same call (0: no pinning)."""
    import tvm

    with _env(TVM_NUM_THREADS=str(n), TVM_BIND_THREADS="1" if bind else "0"):
        tvm.get_global_func("runtime.config_threadpool")(1, n)  # 1 = kBig: every core on x86
    got = int(tvm.get_global_func("runtime.NumThreads")())
    if got != n:
        # A pool created earlier in this thread (a previous load) keeps its worker count.
        log.warning("tvm: asked for %d runtime threads, this thread's pool uses %d", n, got)


# --- helpers ----------------------------------------------------------------------------
def _onnx_inputs(model: Path) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Each graph input's name, shape without the batch dimension, and dtype."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    out = []
    for inp in graph.input:
        if inp.name in initializers:
            continue
        dims = inp.type.tensor_type.shape.dim[1:]
        if any(not d.HasField("dim_value") for d in dims):
            raise ValueError(f"tvm: {model.name}: only the batch dimension may be symbolic")
        out.append((inp.name, tuple(int(d.dim_value) for d in dims),
                    np.dtype(tensor_dtype_to_np_dtype(inp.type.tensor_type.elem_type))))
    return out


def _onnx_outputs(model: Path) -> list[TensorSpec]:
    """The graph's outputs in its order, which is the order relax's ``main`` returns them:
    name, shape (None where symbolic), dtype."""
    import onnx
    from onnx.helper import tensor_dtype_to_np_dtype

    graph = onnx.load(str(model), load_external_data=False).graph
    return [TensorSpec(out.name, tuple(d.dim_value if d.HasField("dim_value") else None
                                       for d in out.type.tensor_type.shape.dim),
                       np.dtype(tensor_dtype_to_np_dtype(out.type.tensor_type.elem_type)))
            for out in graph.output]


def _c_compiler() -> str | None:
    """The compiler TVM's export_library will use (tvm.support.cc.get_cc's search)."""
    env = os.environ.get("CXX") or os.environ.get("CC")
    if env:
        return env
    return next((path for cc in ("g++", "gcc", "clang++", "clang", "c++", "cc")
                 if (path := shutil.which(cc))), None)
