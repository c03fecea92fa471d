"""python -m experiments report RUN_DIR         (re-render the Pareto report from the records)
python -m experiments submission RUN_DIR --out DIR --org ORG --division open [--draft] ...
python -m experiments check DIR [--draft]      (our checks of a packed tree; non-zero on failure)
python -m experiments results DIR [--format md|csv]   (the results table of a packed tree)
"""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="re-render pareto.csv/png/html from trials.parquet")
    rep.add_argument("run_dir")
    pack = sub.add_parser("submission", help="pack promoted results as an MLPerf tree")
    pack.add_argument("run_dir")
    pack.add_argument("--out", required=True, help="new (or empty) folder for the tree")
    pack.add_argument("--org", required=True, help="submitter name (the folder under open/)")
    pack.add_argument("--division", default="open", choices=["open"])
    pack.add_argument("--system-overrides", default=None, metavar="FILE.json|yaml",
                      help="system description fields to set (cooling, memory layout, ...)")
    pack.add_argument("--draft", action="store_true",
                      help="pack refused results anyway, marked DRAFT")
    pack.add_argument("--trials", nargs="+", default=None, metavar="TRIAL",
                      help="only these promoted trials (N or STUDY:N)")
    pack.add_argument("--no-infer", action="store_true",
                      help="edge: do not infer MultiStream/Offline from SingleStream")
    chk = sub.add_parser("check", help="check a packed tree against the submission rules")
    chk.add_argument("dir")
    chk.add_argument("--draft", action="store_true",
                     help="waive the failures a --draft tree of test-setting runs has by design")
    res = sub.add_parser("results", help="print the results table of a packed tree")
    res.add_argument("dir")
    res.add_argument("--format", choices=["md", "csv"], default="md")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        from experiments.records import read
        from experiments.report import print_fronts, print_promoted, render

        try:
            paths = render(args.run_dir)
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        rows = read(args.run_dir).to_pylist()
        print_fronts(rows)
        print_promoted(rows)
        for kind, path in paths.items():
            print(f"{kind}: {path}")
    elif args.command == "submission":
        from experiments.submission import Refused, pack

        try:
            out = pack(args.run_dir, args.out, args.org, args.division, args.system_overrides,
                       args.draft, args.trials, not args.no_infer)
        except Refused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 3
        except (FileNotFoundError, FileExistsError, ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"submission tree: {out}" + ("  (DRAFT)" if args.draft else ""))
        print(f"results table: {out / 'results.csv'}, {out / 'results.md'}")
    elif args.command == "check":
        from experiments.check import main as check

        return check(args.dir, args.draft)
    elif args.command == "results":
        import csv

        from experiments.results_table import TABLE_COLUMNS, markdown, results_table

        rows = results_table(args.dir)
        if not rows:
            print(f"error: no results under {args.dir}", file=sys.stderr)
            return 2
        if args.format == "csv":
            writer = csv.DictWriter(sys.stdout, TABLE_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        else:
            print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
