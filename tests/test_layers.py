"""The layer rule, checked on the source: arrows only downward between packages.

tuner (engine, CLI) may import search_spaces, backends and experiments; experiments imports
nothing of tuner; backends and search_spaces import nothing of the project. Imports inside
functions count too (a lazy import is still an arrow). Also: no module grows past the size
at which it stops having one job.
"""
from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

PACKAGES = ("tuner", "workloads", "search_spaces", "backends", "experiments")
ALLOWED = {
    "tuner": {"tuner", "workloads", "search_spaces", "backends", "experiments"},
    # a task may use the runtimes' cache helpers and the evidence floor's log readers
    "workloads": {"workloads", "backends", "experiments"},
    "experiments": {"experiments"},
    "backends": {"backends"},
    "search_spaces": {"search_spaces"},
}
MAX_LINES = 350  # the redesign's aim: past this a module is doing several jobs


def modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def imported_packages(path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PACKAGES:
                found.add((top, node.lineno))
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_arrows_only_point_down(package):
    upward = [f"{path.relative_to(ROOT)}:{line} imports {top}"
              for path in modules(package)
              for top, line in sorted(imported_packages(path))
              if top not in ALLOWED[package]]
    assert not upward, "imports against the layer rule:\n" + "\n".join(upward)


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tuner.study.driver import run\n")
    assert imported_packages(bad) == {("tuner", 2)}


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_too_long(package):
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in modules(package)
            if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not long, "split these by job:\n" + "\n".join(long)
