"""Apache TVM 0.27 (Relax) on the CPU: the ONNX file -> Relax -> LLVM, optionally tuned by
MetaSchedule, run by the Relax VM.

Knobs:
- ``num_threads`` (int, default: the CPUs this process may use): TVM's runtime thread
  count. Always set explicitly: TVM otherwise reads ``OMP_NUM_THREADS``, which Ray sets to
  1 in its tasks, and on x86 it halves the core count for hyper-threading. Untuned kernels
  have no parallel loops, so the knob only matters for tuned builds.
- ``tuning_trials`` (int, default 0): the MetaSchedule budget (measured candidates over all
  tasks); 0 builds untuned with the default Relax pipeline.
- ``target`` (str or dict, default: this host): a TVM tag (``raspberry-pi/4b-aarch64``), a
  kind (``llvm``) or a target dict; by default ``{"kind": "llvm", "mcpu": <host CPU>}``.
- ``batch_size`` (int, default 1): the batch the model is compiled for (static shapes are
  what MetaSchedule tunes); other batch sizes run in chunks, the last one zero-padded.
- ``bind_threads`` (bool, default False): let TVM pin its threads to cores. Off because
  nodes are shared by several workers, where pinning makes threads queue for one core.

Not a knob: ``cache_dir`` (the engine may pass it; default ``default_cache_dir()``).

Compiling takes seconds (untuned) to minutes (tuned), so the exported library (``.so``) and
each MetaSchedule database are cached under ``<cache_dir>/tvm/``, keyed by the model
file's contents, the target, the options that change the code and the TVM version. Builders
of one artifact are serialised by a file lock and publish by atomic rename, so concurrent
trials and later runs reuse one build. ``TVMBackend.compiles``/``tunings`` count the builds
this process did; ``self.cache_hit`` says whether ``load`` found its library built.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from backends.base import Backend, BackendUnavailable
from backends.cache import cache_lock, content_hash, default_cache_dir

log = logging.getLogger(__name__)

#: bump when the way a library or a database is built changes (invalidates the cache)
BUILD_VERSION = 1
TUNING_SEED = 0  # MetaSchedule's search is random; a fixed seed makes a budget repeatable
_NOT_KNOBS = {"cache_dir"}

# x86 feature flag -> an LLVM CPU that has it: the fallback when LLVM cannot name the host
_X86_BY_FLAG = (("avx512f", "skylake-avx512"), ("avx2", "haswell"), ("avx", "sandybridge"),
                ("sse4_2", "nehalem"))
# Arm "CPU part" (/proc/cpuinfo) -> LLVM CPU name
_ARM_PARTS = {0xd03: "cortex-a53", 0xd04: "cortex-a35", 0xd05: "cortex-a55",
              0xd07: "cortex-a57", 0xd08: "cortex-a72", 0xd09: "cortex-a73",
              0xd0a: "cortex-a75", 0xd0b: "cortex-a76", 0xd0c: "neoverse-n1",
              0xd0d: "cortex-a77", 0xd41: "cortex-a78", 0xd42: "cortex-a78ae",
              0xd40: "neoverse-v1", 0xd49: "neoverse-n2", 0xd4f: "neoverse-v2"}


class TVMBackend(Backend):
    name = "tvm"
    model_format = "onnx"
    KNOBS = {"num_threads", "tuning_trials", "target", "batch_size", "bind_threads"}

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
        self.num_threads = int(self.options.get("num_threads") or _usable_cpus())
        if self.num_threads < 1:
            raise ValueError(f"tvm: num_threads={self.num_threads} must be >= 1")
        trials = int(self.options.get("tuning_trials", 0))
        if trials < 0:
            raise ValueError(f"tvm: tuning_trials={trials} must be >= 0")
        self._batch = int(self.options.get("batch_size", 1))
        if self._batch < 1:
            raise ValueError(f"tvm: batch_size={self._batch} must be >= 1")
        bind = self.option_bool("bind_threads", False)
        # Before TVM creates a thread pool: each calling thread builds its own pool on first
        # use, sized by TVM_NUM_THREADS (read at that moment), and pins it if TVM_BIND_THREADS=1.
        os.environ["TVM_NUM_THREADS"] = str(self.num_threads)
        os.environ["TVM_BIND_THREADS"] = "1" if bind else "0"

        import tvm
        from tvm import relax

        _configure_threads(self.num_threads)
        # Tuned kernels split parallel loops by the target's num-cores: tune for the thread
        # count they will run with. Untuned kernels do not read it; leaving it out there lets
        # every thread count share one library.
        target = resolve_target(self.options.get("target"),
                                num_cores=self.num_threads if trials else None)
        self.target = str(target)
        cache_root = Path(self.cache_dir or self.options.get("cache_dir") or default_cache_dir()) / "tvm"
        model = Path(self.model_path)
        key = content_hash(model, self.target, self._batch, trials, tvm.__version__,
                           BUILD_VERSION)
        self.library_path = cache_root / f"{model.stem}-b{self._batch}-t{trials}-{key}.so"
        sample_shape, self._input_name = _onnx_input(model)
        self.input_shape = (self._batch, *sample_shape)

        self.cache_hit = self.library_path.exists()
        if not self.cache_hit:
            with cache_lock(self.library_path):
                self.cache_hit = self.library_path.exists()  # another process built it
                if not self.cache_hit:
                    self._build(target, trials, cache_root)
        self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(self.library_path)),
                                        tvm.cpu())
        self._main = self._vm["main"]
        self._input = tvm.runtime.empty(self.input_shape, "float32", tvm.cpu())

    def _build(self, target, trials: int, cache_root: Path) -> None:
        import tvm

        assert self.library_path is not None
        started = time.perf_counter()
        mod = self._import()
        if trials:
            from tvm import relax
            from tvm.ir.transform import PassContext

            # MetaSchedule tunes the fused kernels (task extraction only collects call_tir
            # functions already in the module), and the database applies to that same fused
            # module; tvm.compile then only lowers it.
            with target:
                mod = relax.get_pipeline("zero")(mod)
            db = self._tuning_database(mod, target, trials, cache_root)
            with target, db, PassContext(opt_level=3):
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        # Untuned: the default pipeline (no fusion) compiles 3-4x faster than the fused one
        # and runs within 10% of it.
        ex = tvm.compile(mod, target=target)
        tmp = self.library_path.with_name(f"{self.library_path.stem}.tmp{os.getpid()}.so")
        try:
            ex.export_library(str(tmp))
            os.replace(tmp, self.library_path)
        finally:
            tmp.unlink(missing_ok=True)
        TVMBackend.compiles += 1
        self.build_seconds = time.perf_counter() - started
        log.info("tvm: compiled %s (%d tuning trials) in %.1f s", self.library_path.name,
                 trials, self.build_seconds)

    def _import(self):
        import onnx
        from tvm.relax.frontend.onnx import from_onnx

        model = onnx.load(self.model_path)
        # Fix the symbolic batch dimension: static shapes are what MetaSchedule tunes.
        return from_onnx(model, shape_dict={self._input_name: list(self.input_shape)})

    def _tuning_database(self, mod, target, trials: int, cache_root: Path):
        """The MetaSchedule database for (model, target, batch, budget): cached, else tuned."""
        import tvm
        from tvm.s_tir import meta_schedule as ms

        key = content_hash(Path(self.model_path), str(target), self._batch, trials,
                           tvm.__version__, BUILD_VERSION, TUNING_SEED)
        db_dir = cache_root / f"{Path(self.model_path).stem}-b{self._batch}-t{trials}-{key}.db"
        if not db_dir.exists():
            with cache_lock(db_dir):
                if not db_dir.exists():
                    tmp = Path(tempfile.mkdtemp(prefix=db_dir.name + ".tmp", dir=cache_root))
                    try:
                        tune(mod, target, str(tmp), trials)
                        os.rename(tmp, db_dir)  # a directory: atomic when db_dir is absent
                    finally:
                        shutil.rmtree(tmp, ignore_errors=True)
                    TVMBackend.tunings += 1
        return ms.database.JSONDatabase(work_dir=str(db_dir), allow_missing=False)

    # --- run ------------------------------------------------------------------------
    def predict(self, batch: np.ndarray) -> np.ndarray:
        # One call at a time (as LoadGen's SUT calls it): the input buffer is reused, since
        # copying into it costs a third of allocating a new tensor per call.
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        n, b = len(batch), self._batch
        if n == b:
            self._input.copyfrom(batch)
            return self._main(self._input).numpy()
        outs = []
        for start in range(0, n, b):
            chunk = batch[start:start + b]
            if len(chunk) < b:  # the compiled shape is static: pad the tail
                pad = np.zeros((b - len(chunk), *chunk.shape[1:]), dtype=np.float32)
                chunk = np.concatenate([chunk, pad])
            self._input.copyfrom(chunk)
            outs.append(self._main(self._input).numpy())
        return np.concatenate(outs)[:n]

    def close(self) -> None:
        self._main = self._vm = self._input = None


# --- threads -----------------------------------------------------------------------------
def _configure_threads(n: int) -> None:
    """Size this thread's TVM pool; the env var (set by the caller) covers other threads."""
    import tvm

    config = tvm.get_global_func("runtime.config_threadpool")
    config(1, n)  # 1 = kBig: on x86 every core; nthreads caps the workers used
    got = int(tvm.get_global_func("runtime.NumThreads")())
    if got != n:
        # A pool created earlier in this thread (a previous load) keeps its worker count.
        log.warning("tvm: asked for %d runtime threads, this thread's pool uses %d", n, got)


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- target ------------------------------------------------------------------------------
def host_cpu() -> str | None:
    """The host CPU's LLVM name (``znver3``, ``cortex-a72``), or None when unknown."""
    try:
        from tvm.target import codegen

        name = str(codegen.llvm_get_system_cpu())
        if name and name != "generic":
            return name
    except Exception:  # noqa: BLE001 - fall back to /proc/cpuinfo
        pass
    return _cpuinfo_cpu()


def _cpuinfo_cpu() -> str | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        field, _, value = line.partition(":")
        field = field.strip()
        if field == "flags":
            flags = set(value.split())
            return next((cpu for flag, cpu in _X86_BY_FLAG if flag in flags), None)
        if field == "CPU part":
            try:
                return _ARM_PARTS.get(int(value.strip(), 16))
            except ValueError:
                return None
    return None


def resolve_target(spec: Any = None, num_cores: int | None = None):
    """The ``target`` knob as a ``tvm.target.Target``: None/"host" = this machine's CPU."""
    from tvm.target import Target

    if spec is None or spec in ("", "host", "native"):
        cpu = host_cpu()
        spec = {"kind": "llvm", "mcpu": cpu} if cpu else {"kind": "llvm"}
    elif isinstance(spec, str) and spec.lstrip().startswith("{"):
        spec = json.loads(spec)
    elif not isinstance(spec, (str, dict)):
        spec = dict(spec)  # e.g. an OmegaConf DictConfig
    target = Target(spec)
    if num_cores:
        config = json.loads(str(target))
        config["num-cores"] = int(num_cores)
        if isinstance(config.get("host"), dict):
            config["host"]["num-cores"] = int(num_cores)
        target = Target(config)
    return target


# --- MetaSchedule, in process --------------------------------------------------------------
def tune(mod, target, work_dir: str, trials: int) -> None:
    """Tune the kernels of the fused module ``mod`` with MetaSchedule, recording into
    ``work_dir``'s JSON database. Candidates are built and run in this process:
    ``LocalBuilder``/``LocalRunner`` start workers that each re-import TVM (~25 s on 2 cores).
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import (
        extract_tasks, extracted_tasks_to_tune_contexts)

    ms_log = logging.getLogger("tvm.s_tir.meta_schedule")
    if ms_log.level == logging.NOTSET:
        # MetaSchedule echoes its DEBUG log to stdout unless its logger has a level; the full
        # log still goes to the database's logs/ directory.
        ms_log.setLevel(logging.WARNING)
    _import_cpu_intrinsics(target)
    tasks = extract_tasks(mod, target)
    # A few candidates per task per round: with the default 64, a small budget is spent on
    # the first tasks only and the rest stay untuned.
    per_iter = max(4, min(64, trials // max(1, len(tasks))))
    # The default population (512) costs ~12 s of search per task round on 2 cores; scale
    # it with the candidates a round measures (64 for 4 per round: ~3 s).
    strategy = ms.search_strategy.EvolutionarySearch(
        population_size=min(512, 16 * per_iter), init_min_unmeasured=min(50, 8 * per_iter))
    contexts, weights = extracted_tasks_to_tune_contexts(
        tasks, work_dir, strategy=strategy, num_threads=_usable_cpus(), seed=TUNING_SEED)
    # XGBoost on one thread: its training sets are tiny, and two OpenMP threads on a busy
    # 2-core node took ~10 s per model update (against well under 1 s on one).
    has_xgboost = _has_xgboost()
    cost_model = ms.cost_model.XGBModel(num_tuning_cores=1) if has_xgboost else "random"
    if not has_xgboost:
        log.warning("tvm: xgboost is not installed; MetaSchedule falls back to a random "
                    "cost model (pip install 'tuner[tvm]')")
    ms.tune_tasks(
        tasks=contexts, task_weights=weights, work_dir=work_dir, max_trials_global=trials,
        num_trials_per_iter=per_iter, builder=_in_process_builder(),
        runner=_in_process_runner(), database=ms.database.JSONDatabase(work_dir=work_dir),
        cost_model=cost_model)


def _import_cpu_intrinsics(target) -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (MetaSchedule needs it) without the intrinsics of
    other devices. The package parses every intrinsic's TVMScript at import: 50 s on 2
    cores, 45 of them for CUDA, ROCm, Hexagon and the other CPU family, which an llvm CPU
    target never uses. Stand-ins hold their place during the import only, so a later
    explicit import of one of them still loads the real module."""
    import sys
    import types

    package = "tvm.s_tir.tensor_intrin"
    if package in sys.modules or target.kind.name != "llvm":
        return
    arm = "arm_cpu" in target.keys or str(target.attrs.get("mtriple", "")).startswith(
        ("aarch64", "arm"))
    skip = ["cuda", "rocm", "hexagon", "metal", "x86" if arm else "arm_cpu"]
    stubs = {f"{package}.{name}": types.ModuleType(f"{package}.{name}") for name in skip}
    stubs = {name: mod for name, mod in stubs.items() if name not in sys.modules}
    sys.modules.update(stubs)
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
        for name in skip:  # the package binds `from . import cuda` to the stand-in
            if isinstance(getattr(sys.modules[package], name, None), types.ModuleType) and \
                    f"{package}.{name}" in stubs:
                delattr(sys.modules[package], name)


def _has_xgboost() -> bool:
    import importlib.util

    return importlib.util.find_spec("xgboost") is not None


_BUILT: dict[str, Any] = {}  # artifact placeholder path -> built module, builder -> runner


def _in_process_builder():
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    @derived_object
    class InProcessBuilder(PyBuilder):
        def build(self, build_inputs):
            results = []
            for item in build_inputs:
                try:
                    # LocalBuilder's default_build, minus its deprecated tvm.build call
                    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(item.mod)
                    built = tvm.tirx.build(mod, item.target)
                    # RemoveBuildArtifact deletes the artifact's directory after the run: give
                    # it one; the module itself stays in memory for the runner.
                    path = os.path.join(tempfile.mkdtemp(prefix="tvm-ms-"), "module")
                    Path(path).touch()
                    _BUILT[path] = built
                    results.append(BuilderResult(path, None))
                except Exception as exc:  # noqa: BLE001 - a bad candidate is data
                    results.append(BuilderResult(None, f"in-process build: {exc}"))
            return results

    return InProcessBuilder()


def _in_process_runner():
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, PyRunner
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture
    from tvm.s_tir.meta_schedule.runner.utils import (alloc_argument_common,
                                                     run_evaluator_common)

    random_fill = tvm.get_global_func("tvm.contrib.random.random_fill_for_measure",
                                      allow_missing=True)
    # LocalRunner's defaults but 50 ms per candidate instead of 100: the kernels of these
    # models run for microseconds, and the budget is measured in candidates.
    config = EvaluatorConfig(number=3, repeat=1, min_repeat_ms=50,
                             enable_cpu_cache_flush=False)

    @derived_object
    class InProcessRunner(PyRunner):
        def run(self, runner_inputs):
            futures = []
            for item in runner_inputs:
                built = _BUILT.pop(str(item.artifact_path), None)
                try:
                    if built is None:
                        raise RuntimeError("no module built for this candidate")
                    dev = tvm.runtime.device(str(item.device_type), 0)
                    args = alloc_argument_common(random_fill, dev,
                                                 [a.as_json() for a in item.args_info], 1)
                    costs = run_evaluator_common(built, dev, config, args)
                    futures.append(LocalRunnerFuture(res=costs, error_message=None))
                except Exception as exc:  # noqa: BLE001 - a failing candidate is data
                    futures.append(LocalRunnerFuture(res=None,
                                                     error_message=f"in-process run: {exc}"))
            return futures

    return InProcessRunner()


# --- helpers ----------------------------------------------------------------------------
def _onnx_input(model: Path) -> tuple[tuple[int, ...], str]:
    """The first graph input's name and its shape without the batch dimension."""
    import onnx

    graph = onnx.load(str(model), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}
    inp = next(i for i in graph.input if i.name not in initializers)
    dims = inp.type.tensor_type.shape.dim[1:]
    if any(not d.HasField("dim_value") for d in dims):
        raise ValueError(f"tvm: {model.name}: only the batch dimension may be symbolic")
    return tuple(int(d.dim_value) for d in dims), inp.name


def _c_compiler() -> str | None:
    """The compiler TVM's export_library will use (tvm.support.cc.get_cc's search)."""
    env = os.environ.get("CXX") or os.environ.get("CC")
    if env:
        return env
    return next((path for cc in ("g++", "gcc", "clang++", "clang", "c++", "cc")
                 if (path := shutil.which(cc))), None)



