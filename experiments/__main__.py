"""python -m experiments report RUN_DIR [--compare RUN_DIR...]
                                               (re-render the Pareto report from the records,
                                                other runs' fronts, e.g. published, beside)
python -m experiments submission RUN_DIR --out DIR --org ORG --division open [--draft] ...
python -m experiments check DIR [--draft]      (our checks of a packed tree; non-zero on failure)
python -m experiments results DIR [--format md|csv] [--round vX.Y]
                                               (the results table of a packed tree, a
                                                published tree or an imported run dir)
python -m experiments import TREE... --out RUN_DIR [--round vX.Y]
                                               (published MLPerf results as records)
"""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="re-render pareto.csv/png/html from trials.parquet")
    rep.add_argument("run_dir")
    rep.add_argument("--compare", nargs="+", default=None, metavar="RUN_DIR",
                     help="draw these runs' fronts (e.g. imported published results) beside")
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
    res.add_argument("--round", default=None, metavar="vX.Y",
                     help="read DIR as a published tree of this round (default: from a "
                          "folder named inference_results_vX.Y)")
    imp = sub.add_parser("import", help="published MLPerf results trees -> trials.parquet")
    imp.add_argument("trees", nargs="+", metavar="TREE")
    imp.add_argument("--out", required=True, help="new run dir for the records")
    imp.add_argument("--round", default=None, metavar="vX.Y",
                     help="the round (default: from a folder named inference_results_vX.Y)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":
        from experiments.records import read
        from experiments.report import print_fronts, print_promoted, render

        try:
            paths = render(args.run_dir, compare=args.compare)
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

        from experiments.results_table import TABLE_COLUMNS, markdown

        rows = _results(args.dir, args.round)
        if not rows:
            print(f"error: no results under {args.dir}", file=sys.stderr)
            return 2
        if args.format == "csv":
            writer = csv.DictWriter(sys.stdout, TABLE_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        else:
            print(markdown(rows))
    elif args.command == "import":
        return _import(args.trees, args.out, args.round)
    return 0


def _results(path: str, round_name: str | None) -> list[dict]:
    """A run dir's published records, a published tree (round known), else a packed tree."""
    from pathlib import Path

    from experiments import published
    from experiments.published_names import round_of
    from experiments.records import FILENAME, read
    from experiments.results_table import results_table

    if (Path(path) / FILENAME).exists():
        return published.results_rows(read(path).to_pylist())
    if round_name or round_of(list(Path(path).resolve().parts)):
        rows, problems = published.import_trees([path], round_name)
        for problem in problems:
            print(f"skipped: {problem}", file=sys.stderr)
        return published.results_rows(rows)
    return results_table(path)


def _import(trees: list[str], out: str, round_name: str | None) -> int:
    from collections import Counter

    from experiments.published import of_our_runtimes, write_run

    try:
        rows, problems = write_run(trees, out, round_name)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(f"skipped: {problem}", file=sys.stderr)
    if not rows:
        print(f"error: no result imported from {', '.join(trees)}", file=sys.stderr)
        return 2
    for study, n in sorted(Counter(r["study"] for r in rows).items()):
        print(f"{study}: {n} results")
    print(f"imported {len(rows)} results ({len(problems)} skipped) into {out}/trials.parquet")
    _, left_out = of_our_runtimes(rows, "replay and warm start")
    if left_out:
        print(left_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
