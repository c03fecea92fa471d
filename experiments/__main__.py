"""python -m experiments report RUN_DIR   (re-render the Pareto report from the records)"""
from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="re-render pareto.csv/png/html from trials.parquet")
    rep.add_argument("run_dir")
    args = parser.parse_args(argv)
    if args.command == "report":
        from experiments.records import read
        from experiments.report import print_fronts, render

        try:
            paths = render(args.run_dir)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print_fronts(read(args.run_dir).to_pylist())
        for kind, path in paths.items():
            print(f"{kind}: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
