"""python -m tuner: compose the config (Hydra), check it, then run; see ``HELP``.

Hydra's ``@hydra.main`` writes ``.hydra/`` into the run directory before any check of ours
runs, so a failing command rewrote a finished run's saved config. Here the config is
composed with Hydra's compose API and checked first; only a command that passed writes the
run's ``.hydra/`` (config.yaml, hydra.yaml, overrides.yaml, as Hydra writes them), and one
that fails later puts them back and removes a run folder it created and recorded nothing
in. Tests compose with ``hydra.compose`` and call ``tuner.study.driver.run`` directly.
"""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from tuner.config import ConfigError, register

# conf/ sits beside the package (checkout or editable install); see README for wheels.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
SHOW_PLAN = "--show-plan"
SAVED = ("config.yaml", "hydra.yaml", "overrides.yaml")  # the run's .hydra/ files

HELP = """\
usage: python -m tuner +space=NAME [OVERRIDE ...] [--show-plan | --cfg job]
       python -m tuner promote RUN_DIR [TRIAL ...] [options]   (python -m tuner promote -h)
       python -m tuner reproduce RUN_DIR TRIAL [options]        (python -m tuner reproduce -h)
       python -m tuner dashboard RUN_DIR [--port N] [--host H]  (optuna-dashboard, feasible front)

Search a design space for the latency/accuracy Pareto front, every trial measured by
MLCommons LoadGen; records, journal and report go to runs/<study.name>/ (rerunning the
same study name resumes it).

Main overrides (Hydra syntax, key=value):
  +space=NAME                 the space to search: {spaces}
  workload=NAME               the task and its data: {workloads}
  scenario=NAME               LoadGen scenario: {scenarios}
  study.n_trials=N            trials per platform (default 40)
  study.name=NAME             the study, and its run folder runs/NAME
  study.accuracy_floor=X      absolute floor on the task's metric (default: 99% of fp32)
  space.backends=[A,B]        runtimes to search: onnxruntime, litert, tvm, tensorrt
  platform=NAME               the local node's platform (default: detected)
  cluster=NAME                local (default), ray (a fleet), replay (a table of records)
  hydra.run.dir=DIR           where the run's files go

Options:
  --show-plan                 print each platform's plan (nodes, runtimes, knob ranges);
                              runs nothing and writes nothing
  --cfg job                   print the composed config: every key you can override
  -h, --help                  this page

Examples:
  python -m tuner +space=mobilenet
  python -m tuner +space=mobilenet study.n_trials=80 scenario=offline
  python -m tuner +space=mobilenet space.backends=[onnxruntime] --show-plan
"""


def _choices(group: str, hidden: str = "_schema") -> str:
    """A conf group's options as a user picks them (no schema entries, no sub-folders)."""
    folder = Path(CONF_DIR) / group
    names = sorted(p.stem for p in folder.glob("*.yaml") if not p.stem.endswith(hidden))
    return ", ".join(names)


def help_text() -> str:
    return HELP.format(spaces=_choices("space"), workloads=_choices("workload"),
                       scenarios=_choices("scenario"))


def fail(message: str, code: int = 2) -> None:
    """One line on stderr, then exit (2: a usage or config error, as argparse does)."""
    cause = getattr(message, "__cause__", None)  # Hydra's message, then the reason
    text = f"{message} ({cause})" if cause is not None and str(cause) not in str(message) \
        else str(message)
    for noise in ("Config search path", "full_key:"):  # Hydra's and OmegaConf's internals
        if noise in text:
            text = text.split(noise)[0].rstrip() + (")" if text.startswith(str(message)
                                                              + " (") else "")
    first = " ".join(text.split())  # Hydra's messages span several lines
    print(f"error: {first}", file=sys.stderr)
    sys.exit(code)


def compose(overrides: list[str]) -> tuple[DictConfig, DictConfig]:
    """(job config, hydra config) as ``@hydra.main`` would hand them over, nothing written."""
    from hydra import compose as hydra_compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3", job_name="tuner"):
            cfg = hydra_compose("config", overrides, return_hydra_config=True)
        with open_dict(cfg.hydra.runtime):
            cfg.hydra.runtime.output_dir = os.path.abspath(str(cfg.hydra.run.dir))
        HydraConfig.instance().set_config(cfg)  # ${hydra:runtime.output_dir} resolves
        hydra_cfg = OmegaConf.create({"hydra": cfg.hydra})
        with open_dict(cfg):
            del cfg["hydra"]
    except (HydraException, OmegaConfBaseException) as exc:
        fail(exc)
    return cfg, hydra_cfg


def save_config(run_dir: Path, cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, bytes]:
    """Write .hydra/ as Hydra does; returns what was there before (to put back on failure)."""
    folder = run_dir / ".hydra"
    before = {n: (folder / n).read_bytes() for n in SAVED if (folder / n).is_file()}
    folder.mkdir(parents=True, exist_ok=True)
    texts = {"config.yaml": OmegaConf.to_yaml(cfg),
             "hydra.yaml": OmegaConf.to_yaml(hydra_cfg),
             "overrides.yaml": OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task)}
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return before


def _records_stamp(run_dir: Path) -> tuple | None:
    from experiments.records import FILENAME

    path = run_dir / FILENAME
    if not path.exists():
        return None
    files = sorted(path.iterdir()) if path.is_dir() else [path]
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files)


def undo(run_dir: Path, existed: bool, before: dict[str, bytes], stamp: tuple | None) -> None:
    """After a failed start: a run folder this command made and recorded nothing in goes;
    an existing run gets its saved config back, unless this command recorded trials (they
    were measured under the new config)."""
    from experiments.records import FILENAME, exists

    if not existed:
        if not exists(run_dir / FILENAME):
            shutil.rmtree(run_dir, ignore_errors=True)
        return
    if _records_stamp(run_dir) != stamp:
        return
    for name in SAVED:
        path = run_dir / ".hydra" / name
        if name in before:
            path.write_bytes(before[name])
        else:
            path.unlink(missing_ok=True)


def start(overrides: list[str], show: bool, print_cfg: str | None) -> None:
    from tuner.fleet.dispatch import DispatchError
    from tuner.study.run_setup import prepare, show_plan

    cfg, hydra_cfg = compose(overrides)
    if print_cfg:
        parts = {"job": [cfg], "hydra": [hydra_cfg], "all": [cfg, hydra_cfg]}[print_cfg]
        print("".join(OmegaConf.to_yaml(part) for part in parts), end="")
        return
    try:
        if show:
            show_plan(cfg)
            return
        setup = prepare(cfg)  # everything that can fail before a trial, once
    except (ConfigError, DispatchError) as exc:
        fail(exc)
    run_dir = Path(cfg.run_dir)
    existed, stamp = run_dir.exists(), _records_stamp(run_dir)
    before = {}
    try:
        before = save_config(run_dir, cfg, hydra_cfg)
        from tuner.study.driver import run

        run(setup)
    except (ConfigError, DispatchError) as exc:
        undo(run_dir, existed, before, stamp)
        fail(exc)
    except OSError as exc:  # the run dir is full or read-only: the records so far are kept
        fail(f"cannot write the run's files: {exc}", code=1)
    except BaseException:  # a crash or Ctrl-C before any trial leaves nothing behind either
        undo(run_dir, existed, before, stamp)
        raise


def main(argv: list[str]) -> int:
    if argv and argv[0] in ("promote", "reproduce"):  # plain arguments on an existing run
        from tuner.commands.promote import main as subcommand

        return subcommand(argv)
    if argv and argv[0] == "dashboard":
        from tuner.study.dashboard import main as dashboard

        return dashboard(argv[1:])
    if not argv or "-h" in argv or "--help" in argv:
        print(help_text(), end="")
        return 0 if argv else 2
    show, print_cfg, overrides = False, None, []
    args = iter(argv)
    for arg in args:
        if arg == SHOW_PLAN:
            show = True
        elif arg == "--cfg" or arg.startswith("--cfg="):
            print_cfg = arg.split("=", 1)[1] if "=" in arg else next(args, "")
            if print_cfg not in ("job", "hydra", "all"):
                fail("--cfg takes job, hydra or all (e.g. --cfg job)")
        elif arg.startswith("-"):
            fail(f"unknown option {arg} (python -m tuner --help lists the options)")
        else:
            overrides.append(arg)
    register()
    logging.basicConfig(level=logging.INFO,
                        format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    start(overrides, show, print_cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
