"""Shared fixtures. The real stack runs on small data; nothing here mocks it."""
from __future__ import annotations

import multiprocessing as mp
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Public MLPerf files the tests read, in the repository (tests/data/README.md)
DATA = ROOT / "tests" / "data"
PUBLISHED_V10 = DATA / "published" / "inference_results_v1.0"
PUBLISHED_V10_TASKS = DATA / "published" / "inference_results_v1.0_tasks"


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One model cache for the whole test session (built variants are reused across tests)."""
    path = Path(os.environ.get("TUNER_TEST_CACHE") or tmp_path_factory.mktemp("tuner-cache"))
    os.environ["TUNER_CACHE_DIR"] = str(path)
    return path


def _measure(cfg):
    from tuner.worker.measure import measure

    return measure(cfg)


@pytest.fixture
def measure_fresh():
    """Run ``tuner.worker.measure.measure`` in a fresh process, as each trial's fork-server child does
    (LoadGen allows one FromConfig per process)."""
    def run(cfg):
        with mp.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
            return pool.apply(_measure, (cfg,))
    return run


AUTH_KEYS = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def restore_ray_auth(saved: dict[str, str | None]) -> None:
    """Disconnect and put back the auth environment a cluster test changed, for later
    tests in this process."""
    import ray

    from tuner.node.auth import refresh_ray_auth_cache

    ray.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    refresh_ray_auth_cache()


def predict_nchw(backend, x):
    """A classifier's first output for an NCHW float batch, fed in the layout the loaded
    model takes (a TFLite model's input is NHWC)."""
    import numpy as np

    from workloads.tasks.classification import is_nhwc

    spec = backend.inputs[0]
    if is_nhwc(spec, x.shape[-1]):
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    return backend.predict({spec.name: np.ascontiguousarray(x, dtype=np.float32)})[0]
