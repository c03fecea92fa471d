"""Does every dependency in pyproject.toml install on a 64-bit ARM board, and how?

    python scripts/aarch64_resolution.py [--python 3.10 3.11 3.12] [--glibc 2.35]
                                         [--extras tvm litert train test] [--jobs 4]

For each requirement (core and extras, markers evaluated per Python version) and each
CPython version, asks pip which file it would install on Linux aarch64 with glibc up to
``--glibc`` (2.35: Ubuntu 22.04 / JetPack 6; Raspberry Pi OS bookworm has 2.36; JetPack 4
has 2.27), binaries only; when no wheel fits, whether an sdist exists (it then builds
from source on the board: compiler and headers needed). pip runs ``--isolated`` against
PyPI alone, ``--no-deps``, and downloads metadata only, never a wheel: what a board would
see, not this machine's local mirrors. Prints a Markdown table and a summary; exits 1
when some requirement has neither wheel nor sdist for some version.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
INDEX = "https://pypi.org/simple"


def requirements(pyproject: Path, extras: list[str]) -> list[tuple[str, Requirement]]:
    """(group, requirement) for the core dependencies and the chosen extras; an extra that
    only names other extras of this project (``all``) is skipped."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    project = tomllib.loads(pyproject.read_text())["project"]
    out = [("core", Requirement(r)) for r in project["dependencies"]]
    for extra in extras:
        for r in project.get("optional-dependencies", {}).get(extra, []):
            req = Requirement(r)
            if req.name != project["name"]:
                out.append((extra, req))
    return out


def applies(req: Requirement, python: str) -> bool:
    """Whether the requirement's marker holds on Linux aarch64 with this Python."""
    if req.marker is None:
        return True
    env = {**default_environment(), "python_version": python, "python_full_version": python + ".0",
           "platform_machine": "aarch64", "sys_platform": "linux", "platform_system": "Linux"}
    return req.marker.evaluate(env)


def _pip(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check",
                           *args], capture_output=True, text=True, timeout=timeout)


def platform_tags(glibc: str) -> list[str]:
    major, minor = (int(x) for x in glibc.split("."))
    tags = [f"manylinux_{major}_{m}_aarch64" for m in range(17, minor + 1)]
    return tags + ["manylinux2014_aarch64"]


def _without_marker(req: Requirement) -> str:
    return str(req).split(";")[0].strip()


def wheel_for(req: Requirement, python: str, glibc: str) -> str | None:
    """The wheel pip would pick on the target (file name), or None."""
    abi = "cp" + python.replace(".", "")
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        args = ["install", "--dry-run", "--ignore-installed", "--no-deps", "--quiet",
                "--only-binary=:all:", "--index-url", INDEX, "--python-version", python,
                "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
                "--report", str(report), _without_marker(req)]
        for tag in platform_tags(glibc):
            args[1:1] = ["--platform", tag]
        done = _pip(args)
        if done.returncode != 0 or not report.is_file():
            return None
        items = json.loads(report.read_text())["install"]
        return items[0]["download_info"]["url"].rsplit("/", 1)[1] if items else None


def has_sdist(req: Requirement, python: str) -> bool:
    """An sdist of a version the requirement allows, for this Python (requires-python).
    pip fetches it and then may fail to prepare its metadata here (no build tools, as with
    LoadGen's pybind11): fetching it is the answer."""
    with tempfile.TemporaryDirectory() as tmp:
        done = _pip(["download", "--no-deps", "--no-binary=:all:", "--no-build-isolation",
                     "--index-url", INDEX, "--python-version", python, "-d", tmp,
                     _without_marker(req)])
    text = done.stdout + done.stderr
    return done.returncode == 0 or bool(re.search(r"Downloading \S+\.(tar\.gz|zip)|"
                                                  r"Processing \S+\.(tar\.gz|zip)", text))


def describe(wheel: str | None) -> str:
    """A wheel file name as the cell of the table: its platform tag (or "any")."""
    if wheel is None:
        return ""
    tag = wheel[:-4].split("-")[-1]
    if tag == "any":
        return "wheel (pure Python)"
    m = re.search(r"manylinux_(\d+)_(\d+)", tag)
    glibc = f"{m[1]}.{m[2]}" if m else "2.17" if "manylinux2014" in tag else "?"
    return f"wheel (glibc >= {glibc})"


def resolve(req: Requirement, python: str, glibc: str) -> str:
    if not applies(req, python):
        return "n/a (marker)"
    cell = describe(wheel_for(req, python, glibc))
    if cell:
        return cell
    return "sdist: builds from source" if has_sdist(req, python) else "NONE"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python", nargs="+", default=["3.10", "3.11", "3.12"])
    ap.add_argument("--glibc", default="2.35", help="the board's glibc (ldd --version)")
    ap.add_argument("--extras", nargs="*", default=["tvm", "litert", "train", "test"])
    ap.add_argument("--jobs", type=int, default=4, help="pip queries at a time")
    args = ap.parse_args(argv)
    reqs = requirements(ROOT / "pyproject.toml", args.extras)
    jobs = [(g, r, py) for g, r in reqs for py in args.python]
    with ThreadPoolExecutor(args.jobs) as pool:
        cells = list(pool.map(lambda j: resolve(j[1], j[2], args.glibc), jobs))
    table = {(g, str(r), py): c for (g, r, py), c in zip(jobs, cells)}
    print(f"Linux aarch64, glibc <= {args.glibc}, PyPI only ({INDEX})\n")
    print("| group | requirement | " + " | ".join(f"CPython {p}" for p in args.python) + " |")
    print("|---|---|" + "---|" * len(args.python))
    for group, req in reqs:
        row = [table[(group, str(req), py)] for py in args.python]
        print(f"| {group} | `{req}` | " + " | ".join(row) + " |")
    source = sorted({f"{r.name} ({py})" for (g, r, py), c in zip(jobs, cells) if c.startswith("sdist")})
    missing = sorted({f"{r.name} ({py})" for (g, r, py), c in zip(jobs, cells) if c == "NONE"})
    print(f"\nbuilds from source: {', '.join(source) or 'nothing'}")
    print(f"no distribution at all: {', '.join(missing) or 'nothing'}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
