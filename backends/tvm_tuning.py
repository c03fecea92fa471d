"""MetaSchedule tuning for the TVM backend: a cached tuning database per (model, target,
batch, budget), filled by a search whose candidates are built and run in this process.

``LocalBuilder``/``LocalRunner`` start worker processes that each re-import TVM (~25 s on
2 cores), more than a small budget's whole search; the in-process builder and runner here
do the same work (LocalBuilder's default build, LocalRunner's evaluator) without them.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from backends.cache import publish_dir
from backends.tvm_target import usable_cpus

log = logging.getLogger(__name__)

SEED = 0  # MetaSchedule's search is random; a fixed seed makes a budget repeatable


def tuning_database(mod, target, trials: int, db_dir: Path) -> tuple[Any, bool]:
    """The JSON database at ``db_dir`` for the fused module ``mod``, tuned with ``trials``
    candidates on first use (one builder at a time; published whole by rename). Returns
    (database, whether this call tuned)."""
    from tvm.s_tir import meta_schedule as ms

    tuned = []

    def build(tmp: Path) -> None:
        tune(mod, target, str(tmp), trials)
        tuned.append(True)

    publish_dir(db_dir, build)
    return ms.database.JSONDatabase(work_dir=str(db_dir), allow_missing=False), bool(tuned)


def tune(mod, target, work_dir: str, trials: int) -> None:
    """Tune the kernels of the fused module ``mod`` with MetaSchedule, recording into
    ``work_dir``'s JSON database."""
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
        tasks, work_dir, strategy=strategy, num_threads=usable_cpus(), seed=SEED)
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
    """Import ``tvm.s_tir.tensor_intrin`` without the intrinsics of other devices.

    Why ``sys.modules`` stand-ins: MetaSchedule's ``TuneContext`` imports the whole package
    unconditionally, and the package's ``__init__`` imports every device's intrinsics, each
    parsing its TVMScript at import: 50 s on 2 cores, 45 of them for CUDA, ROCm, Hexagon and
    the other CPU family, which an llvm CPU target never uses. TVM has no switch for this,
    and a submodule cannot be imported without its package's ``__init__``. Importing the
    package once here with stand-ins for the unused submodules leaves it in
    ``sys.modules``, so ``TuneContext``'s import is free. The stand-ins live only during
    this import, so a later explicit import of one of them loads the real module."""
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
