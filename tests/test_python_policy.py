"""The fleet's Python policy: the same minor release joins (Raspberry Pi OS's 3.11.2 with a
server's 3.11.7), and every place this project starts Ray applies it; a Python outside what
the pins publish is one line from ``python -m tuner.node`` before anything imports."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tuner.node import python_policy
from tuner.node.doctor import compare_versions
from tuner.node.python_policy import MATCH_ENV, too_old


def test_apply_sets_minor_unless_the_user_chose():
    env: dict[str, str] = {}
    assert python_policy.apply(env) == "minor" and env == {MATCH_ENV: "minor"}
    chosen = {MATCH_ENV: "patch"}
    assert python_policy.apply(chosen) == "patch" and chosen[MATCH_ENV] == "patch"


def test_a_pi_python_joins_a_server_head(monkeypatch):
    monkeypatch.delenv(MATCH_ENV, raising=False)
    found = compare_versions(("2.60.0", "3.11.7"), ("2.60.0", "3.11.2"))
    assert [f.ok for f in found] == [True] and "head 3.11.7" in found[0].line
    # another minor release never joins, whatever the level
    other = compare_versions(("2.60.0", "3.12.1"), ("2.60.0", "3.11.2"))
    assert not other[0].ok and "uv venv --python 3.12.1" in other[0].line


def test_rays_own_check_accepts_what_the_policy_accepts(monkeypatch):
    # Ray's check_version_info is what a node's `ray start` and a driver's ray.init run
    from ray._private.utils import check_version_info, compute_version_info

    ray_version, python = compute_version_info()
    major, minor, patch = python.split(".")
    other_patch = {"ray_version": ray_version, "python_version": f"{major}.{minor}.{int(patch) + 1}"}
    monkeypatch.setenv(MATCH_ENV, "minor")
    check_version_info(other_patch, "test")  # no raise
    monkeypatch.setenv(MATCH_ENV, "patch")
    with pytest.raises(RuntimeError, match="Version mismatch"):
        check_version_info(other_patch, "test")


@pytest.mark.parametrize("version,tegra,says", [
    ((3, 10, 12), True, "JetPack 6"), ((3, 10, 12), False, "uv python install 3.11"),
    ((3, 6, 9), True, "JetPack 4"), ((3, 13, 0), False, "python3.11 or 3.12")])
def test_too_old_or_too_new_is_one_line_saying_how(version, tegra, says):
    line = too_old(version, tegra=tegra)
    assert line and "\n" not in line and says in line
    assert line.startswith(f"Python {'.'.join(map(str, version))} here")
    assert too_old((3, 11, 2), tegra=tegra) is None and too_old((3, 12, 1)) is None


def test_the_agent_says_it_before_importing_anything():
    old = Path("/root/.pyenv/versions/3.10.13/bin/python")
    if not old.exists():
        pytest.skip("no Python 3.10 interpreter here")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([str(old), "-m", "tuner.node", "doctor"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "Python 3.10" in out.stderr and "need Python >= 3.11" in out.stderr


def test_the_driver_applies_it(monkeypatch):
    # RayDispatcher applies the policy before ray.init; checked without starting Ray
    import tuner.fleet.dispatch as dispatch

    monkeypatch.delenv(MATCH_ENV, raising=False)

    class Stop(Exception):
        pass

    class FakeRay:
        def init(self, **kw):
            raise Stop(os.environ.get(MATCH_ENV))

    monkeypatch.setitem(sys.modules, "ray", FakeRay())
    with pytest.raises(Stop, match="minor"):
        dispatch.RayDispatcher("local", platform="x8664")


def test_the_ray_up_example_needs_no_python_step():
    # its start commands go through the agent, which applies the policy itself
    config = yaml.safe_load((ROOT / "conf/cluster/examples/onprem-ray-up.yaml").read_text())
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        assert any("tuner.node start" in c for c in config[key])
        assert not any(MATCH_ENV in c for c in config[key])
