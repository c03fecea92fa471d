"""The layer rule, checked on the source: arrows only downward between packages.

tuner (engine, CLI) may import search_spaces, backends and experiments; experiments imports
nothing of tuner; backends and search_spaces import nothing of the project. Inside tuner the
same rule holds between its parts (``TUNER_ORDER``), and no modules import each other in a
circle. Imports inside functions count too (a lazy import is still an arrow). Also: no module
grows past the size at which it stops having one job.
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
# tuner's parts, top to bottom: a part imports only parts on a lower line (and itself).
# commands and the CLI run studies; a study dispatches to the fleet; the fleet starts nodes
# and runs the worker; the worker measures one TrialConfig (the wire contract), which carries
# an accuracy plan; at the bottom the facts all of them share: the config schema, what this
# machine is.
TUNER_ORDER = (
    ("__main__",),
    ("commands",),
    ("study",),
    ("fleet",),
    ("node",),
    ("worker",),
    ("trial",),
    ("accuracy",),
    ("config", "machine"),
)
MAX_LINES = 350  # the redesign's aim: past this a module is doing several jobs


def modules(package: str):
    return sorted((ROOT / package).rglob("*.py"))


def imported_modules(path) -> set[tuple[str, int]]:
    """(dotted module name, line) of every import in ``path``; a relative import is resolved
    against ``path``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = list(module_name(path).split("."))[:-node.level]
                if path.name == "__init__.py":
                    here = list(module_name(path).split("."))[:len(here) + 1]
                base = ".".join(here + ([base] if base else []))
            # ``from a import b``: the module a.b where b is one, else a itself
            names = [f"{base}.{alias.name}" if is_module(f"{base}.{alias.name}") else base
                     for alias in node.names]
        else:
            continue
        found.update((name, node.lineno) for name in names if name)
    return found


def is_module(name: str) -> bool:
    where = ROOT.joinpath(*name.split("."))
    return where.with_suffix(".py").is_file() or (where / "__init__.py").is_file()


def imported_packages(path) -> set[tuple[str, int]]:
    return {(name.split(".")[0], line) for name, line in imported_modules(path)
            if name.split(".")[0] in PACKAGES}


def module_name(path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def tuner_part(name: str) -> str | None:
    """The part of tuner a dotted module name belongs to (``tuner.study.driver`` -> study)."""
    parts = name.split(".")
    return parts[1] if parts[0] == "tuner" and len(parts) > 1 else None


def rank(part: str) -> int | None:
    return next((i for i, line in enumerate(TUNER_ORDER) if part in line), None)


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


def test_every_part_of_tuner_has_a_place():
    parts = {tuner_part(module_name(path)) for path in modules("tuner")} - {None}
    missing = sorted(p for p in parts if rank(p) is None)
    assert not missing, f"add these parts of tuner to TUNER_ORDER: {missing}"


def test_arrows_only_point_down_inside_tuner():
    upward = []
    for path in modules("tuner"):
        here = tuner_part(module_name(path))
        for name, line in sorted(imported_modules(path)):
            there = tuner_part(name)
            if here is None or there is None or there == here or rank(there) is None:
                continue
            if rank(there) <= rank(here):
                upward.append(f"{path.relative_to(ROOT)}:{line} ({here}) imports {name} ({there})")
    assert not upward, "imports against tuner's order (TUNER_ORDER):\n" + "\n".join(upward)


def import_graph() -> dict[str, set[str]]:
    """module -> the project's modules it imports (lazy imports included)."""
    paths = [path for package in PACKAGES for path in modules(package)]
    known = {module_name(path) for path in paths}
    return {module_name(path): {name for name, _ in imported_modules(path)
                                if name in known and name != module_name(path)}
            for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [node, nxt] if nxt in path else [node, nxt]
            if state.get(nxt) is None and (found := visit(nxt, path + [node])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if state.get(start) is None and (found := visit(start, [])):
            return found
    return None


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "modules importing each other in a circle: " + " -> ".join(cycle)


def test_the_checkers_see_an_upward_arrow_inside_tuner_and_a_cycle(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from tuner.study.driver import run\n")
    assert imported_modules(bad) == {("tuner.study.driver", 2)}
    assert rank(tuner_part("tuner.study.driver")) < rank("worker")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a"}}) is None


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_too_long(package):
    long = [f"{path.relative_to(ROOT)}: {n} lines" for path in modules(package)
            if (n := len(path.read_text().splitlines())) > MAX_LINES]
    assert not long, "split these by job:\n" + "\n".join(long)
