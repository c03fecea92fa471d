"""python -m tuner +space=mobilenet [overrides]   (the Hydra app: compose, validate, run)
python -m tuner +space=mobilenet [overrides] --show-plan   (each platform's plan; runs nothing)
python -m tuner promote RUN_DIR [TRIAL ...] | reproduce RUN_DIR TRIAL   (argparse: promote.py)

Thin on purpose: composition and validation here, the work in ``tuner.study.driver.run`` which
tests call with a config composed by ``hydra.compose``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from tuner.config import ConfigError, register

# conf/ sits beside the package (checkout or editable install); see README for wheels.
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")

register()
SHOW_PLAN = "--show-plan"
_show_plan = False


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    from tuner.fleet.dispatch import DispatchError
    from tuner.study.driver import run
    from tuner.study.run_setup import show_plan

    try:
        show_plan(cfg) if _show_plan else run(cfg)
    except (ConfigError, DispatchError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:  # the run dir is full or read-only: the records so far are kept
        print(f"error: cannot write the run's files: {exc}", file=sys.stderr)
        sys.exit(1)


# Subcommands that work on an existing run dir take plain arguments, not Hydra overrides.
SUBCOMMANDS = ("promote", "reproduce")

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in SUBCOMMANDS:
        from tuner.commands.promote import main as subcommand

        sys.exit(subcommand(sys.argv[1:]))
    if SHOW_PLAN in sys.argv:  # ours, not Hydra's: take it off before Hydra parses argv
        sys.argv.remove(SHOW_PLAN)
        _show_plan = True
    main()
