"""Which Pythons make one fleet: the same Ray everywhere, the same Python *minor* release
(3.11.x) on every node and the driver; patch releases may differ. Raspberry Pi OS bookworm's
system Python 3.11.2 joins a server head on 3.11.7 with no extra step; each node's exact
release is in its facts (``software.Python``) and in every trial's record (``system.python``).

Ray 2.60 compares Python to the patch release unless ``RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL``
is ``minor`` (``ray._private.utils.check_version_info``, read from the environment by each
Ray process: a node's ``ray start``, a worker, a driver's ``ray.init``). ``apply`` sets it
where this project starts Ray: ``tuner.node start`` in the environment of ``ray start`` (every
daemon and worker inherits it) and the driver in its own process before ``ray.init``. An
explicit setting by the user wins.

This module imports nothing of the project, so ``python -m tuner.node`` can say in one line
that an interpreter is too old (a Jetson's system Python 3.10) before importing code or
packages that need a newer one.
"""
from __future__ import annotations

import sys
from collections.abc import MutableMapping

MATCH_ENV = "RAY_DEFAULT_PYTHON_VERSION_MATCH_LEVEL"  # Ray's own switch; its default "patch"
MATCH_LEVEL = "minor"                                 # this project's policy
# requires-python; the pinned onnxruntime 1.31.1, pyarrow 26.0.1, scikit-learn 1.9.1 and
# matplotlib 3.11.2 publish nothing for 3.10 (scripts/aarch64_resolution.py)
PYTHON_RANGE = ((3, 11), (3, 13))
GUIDE = "docs/arm64_and_jetson.md"


def apply(env: MutableMapping[str, str]) -> str:
    """Put the fleet's match level into ``env`` unless it is set; returns the level in force."""
    return env.setdefault(MATCH_ENV, MATCH_LEVEL)


def level(env: MutableMapping[str, str] | None = None) -> str:
    """The match level Ray will use for a process started with ``env`` under this policy."""
    import os

    return (env if env is not None else os.environ).get(MATCH_ENV) or MATCH_LEVEL


def too_old(version: tuple[int, ...] | None = None, *, tegra: bool | None = None) -> str | None:
    """One line when ``version`` (this interpreter's) is outside PYTHON_RANGE, else None;
    ``tegra`` (default: whether /etc/nv_tegra_release exists) tells a Jetson how."""
    import os

    version = tuple(version or sys.version_info[:3])
    if tegra is None:
        tegra = os.path.exists("/etc/nv_tegra_release")
    (lo, hi) = PYTHON_RANGE
    if lo <= version[:2] < hi:
        return None
    shown = ".".join(map(str, version))
    span = f">= {lo[0]}.{lo[1]}, < {hi[0]}.{hi[1]}"
    if version[:2] >= hi:
        how = "make the venv with python3.11 or 3.12 (e.g. uv venv --python 3.11)"
    elif tegra and version[:2] == (3, 10):
        how = ("a Jetson on JetPack 6 (Python 3.10): install Python 3.11 beside the system one "
               "(uv python install 3.11; uv venv --python 3.11 ~/tuner-venv) and start the node "
               f"with that venv, or run it in a container (see {GUIDE})")
    elif tegra:
        how = ("a Jetson Nano on JetPack 4: run the node in a container with Python 3.11 "
               "(conf/platform/jetson-nano.yaml)")
    else:
        how = ("make the venv with python3.11 or 3.12 (uv python install 3.11 puts one beside "
               "the system's)")
    return f"Python {shown} here; the tuner's pinned packages need Python {span}: {how}"


__all__ = ["GUIDE", "MATCH_ENV", "MATCH_LEVEL", "PYTHON_RANGE", "apply", "level", "too_old"]
