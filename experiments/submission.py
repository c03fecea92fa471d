"""Pack promoted (compliant) trial records into an MLPerf inference v6.x submission tree.

    python -m experiments submission RUN_DIR --out DIR --org ORG --division open
        [--system-overrides FILE.json|yaml] [--draft] [--trials N|STUDY:N ...] [--no-infer]
    python -m experiments results DIR [--format md|csv]

Layout (what the official checker v6.1 accepts; the rules are in ``experiments/check.py``)::

    DIR/open/<org>/systems/<system>.json          system_description(node facts) + overrides
    DIR/open/<org>/src/                           the run's .hydra config, trial configs, README
    DIR/open/<org>/model_mapping.json             model folders the checker does not know
    DIR/open/<org>/results/<system>/<model>/<Scenario>/
        performance/run_1/mlperf_log_{detail,summary}.txt, mlperf_log_accuracy.json
        accuracy/mlperf_log_{detail,summary}.txt, accuracy.txt, mlperf_log_accuracy.json
        measurements.json  user.conf  README.md
    DIR/results.csv, DIR/results.md, DIR/tuner_submission.json   (outside open/: not checked)

A system is one node that measured (platform + hostname). The model folder is the
variant's name (e.g. ``mobilenet_v1_w0.25_r64_int8``), with ``_t<trial>`` added when two
promoted trials of one system share a variant.

Inferred scenarios (edge systems only, as ``preprocess_submission.py``): with a
SingleStream result and no measured MultiStream, the SingleStream folder is copied to
MultiStream; with no measured Offline it is copied from the measured MultiStream if any,
else from SingleStream. The checker (and ``results``) derive their figures from the copied
log: MultiStream = early_stopping_latency_ms x 8, Offline = result_qps_without_loadgen_overhead.

Refusals (``--draft`` packs anyway, marks the tree DRAFT in ``sw_notes``, the READMEs and
``tuner_submission.json``): see ``experiments.promoted_result.refusals``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from experiments.check import DRAFT_MARK, MANIFEST
from experiments.mlperf import CHECKER_ALIASES, KNOWN_BENCHMARKS
from experiments.records import read
from experiments.loadgen_logs import ACCURACY, DETAIL, SUMMARY
from experiments.mlperf import INFERABLE
from experiments.promoted_result import Result, describe_system, load_result, system_id
from experiments.results_table import markdown, results_table, write_table
from experiments.selection import promoted as promoted_rows

VIEWABLE_SIZE = 4096  # truncate_accuracy_log.py: keep the first and last 4 KB


class Refused(Exception):
    """The packer will not submit these results; ``reasons`` says why, one per line."""

    def __init__(self, reasons: list[str]):
        super().__init__("refusing to pack (use --draft to pack anyway, marked DRAFT):\n  "
                         + "\n  ".join(reasons))
        self.reasons = reasons


# --------------------------------------------------------------------------- pieces

def truncate_accuracy_log(acc_json: Path, acc_txt: Path) -> str:
    """As MLCommons' truncate_accuracy_log.py: append ``hash=<sha256 of the full log>`` to
    accuracy.txt, then keep the first and last 4 KB of the log around ``\\n\\n...\\n\\n``.
    A log already within 8 KB is kept whole (the script would repeat its middle, or fail to
    seek before the start of a file under 4 KB). Returns the hash."""
    data = acc_json.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with open(acc_txt, "a") as fh:
        fh.write(f"hash={digest}\n")
    if len(data) > 2 * VIEWABLE_SIZE:
        text = data.decode()
        acc_json.write_text(text[:VIEWABLE_SIZE] + "\n\n...\n\n" + text[-VIEWABLE_SIZE:])
    return digest


def load_overrides(path: str | Path | None) -> dict[str, Any]:
    if not path:
        return {}
    text = Path(path).read_text()
    if str(path).endswith((".yaml", ".yml")):
        import yaml

        data = yaml.safe_load(text) or {}
    else:
        data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: system overrides must be a mapping of field -> value")
    return data


# --------------------------------------------------------------------------- packing

def pack(run_dir: str | Path, out: str | Path, org: str, division: str = "open",
         system_overrides: str | Path | None = None, draft: bool = False,
         picks: list[str] | None = None, infer: bool = True, say=print) -> Path:
    """Write the submission tree; raises Refused (nothing written) unless draft."""
    run_dir, out = Path(run_dir).resolve(), Path(out)
    if division != "open":
        raise ValueError(f"division {division!r}: only 'open' is packed (closed needs accuracy "
                         "targets and TEST01/TEST04 compliance runs)")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    rows = promoted_rows(read(run_dir).to_pylist(), picks)
    if not rows:
        raise ValueError(f"no promoted records in {run_dir}: run "
                         f"`python -m tuner promote {run_dir}` first")
    results = [load_result(run_dir, r) for r in rows]
    reasons = [f"{r.label}: [{rule}] {why}" for r in results for rule, why in r.problems]
    if reasons and not draft:
        raise Refused(reasons)
    overrides = load_overrides(system_overrides)

    org_dir = out / division / org
    systems: dict[str, list[Result]] = {}
    for r in results:
        r.system = system_id(r.row["platform"], r.row["node"] or "unknown")
        systems.setdefault(r.system, []).append(r)
    manifest_results, notes = [], {}
    for name, group in systems.items():
        desc, source = describe_system(group, org, division, overrides)
        if draft:
            desc["sw_notes"] = (f"{DRAFT_MARK} - not for submission ({len(reasons)} refusal(s), "
                                f"see tuner_submission.json); " + desc["sw_notes"])
        notes[name] = source
        _write_json(org_dir / "systems" / f"{name}.json", desc)
        _assign_model_dirs(group)
        for r in group:
            _write_result(r, org_dir / "results" / name / r.model_dir / r.scenario, draft,
                          run_dir)
            manifest_results.append(_manifest_entry(r, r.scenario, None))
        if infer and "edge" in desc["system_type"]:
            for r, scenario, source_scenario in _infer(group, org_dir / "results" / name):
                manifest_results.append(_manifest_entry(r, scenario, source_scenario))
    mapping = {r.model_dir: r.benchmark for r in results
               if r.model_dir not in KNOWN_BENCHMARKS and r.model_dir not in CHECKER_ALIASES}
    if mapping:
        _write_json(org_dir / "model_mapping.json", mapping)
    _write_src(org_dir / "src", run_dir, results, draft)
    _write_json(out / MANIFEST, {
        "run_dir": str(run_dir), "org": org, "division": division, "draft": draft,
        "refusals": reasons, "system_facts": notes, "results": manifest_results})
    table = results_table(out)
    write_table(table, out)
    say(markdown(table))
    return out


def _assign_model_dirs(group: list[Result]) -> None:
    trials_per_model: dict[str, set] = {}
    for r in group:
        trials_per_model.setdefault(r.row["model"], set()).add((r.row["study"], r.row["trial"]))
    for r in group:
        shared = len(trials_per_model[r.row["model"]]) > 1
        r.model_dir = f"{r.row['model']}_t{r.row['trial']}" if shared else r.row["model"]


def _manifest_entry(r: Result, scenario: str, inferred_from: str | None) -> dict[str, Any]:
    return {"system": r.system, "model": r.model_dir, "scenario": scenario,
            "study": r.row["study"], "trial": r.row["trial"], "fidelity": r.row["fidelity"],
            "log_dir": r.row["log_dir"], "benchmark": r.benchmark,
            "dataset_size": r.dataset_size, "inferred_from": inferred_from,
            "accuracy_source": r.row.get("accuracy_source"),
            "refusals": [f"[{rule}] {why}" for rule, why in r.problems]}


def _infer(group: list[Result], results_dir: Path) -> list[tuple[Result, str, str]]:
    """preprocess_submission.py's inference for each model folder of an edge system."""
    done = []
    for model_dir in sorted({r.model_dir for r in group}):
        have = {r.scenario: r for r in group if r.model_dir == model_dir}
        base = results_dir / model_dir
        plan = []
        if "SingleStream" in have and "MultiStream" not in have:
            plan.append(("MultiStream", "SingleStream"))
        if "Offline" not in have and ("MultiStream" in have or "SingleStream" in have):
            plan.append(("Offline", "MultiStream" if "MultiStream" in have else "SingleStream"))
        for target, source in plan:
            assert (source, target) in INFERABLE
            shutil.copytree(base / source, base / target)
            readme = base / target / "README.md"
            readme.write_text(f"# {target}: inferred from {source}\n\nThis folder is a copy of "
                              f"`../{source}` (MLCommons `preprocess_submission.py` inference "
                              f"for edge systems); the checker derives the {target} result from "
                              f"its {source} log.\n\n" + readme.read_text())
            done.append((have[source], target, source))
    return done


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _write_result(r: Result, dest: Path, draft: bool, run_dir: Path) -> None:
    src = r.log_dir
    for name in (DETAIL, SUMMARY, ACCURACY):
        if (src / "performance" / name).is_file():
            _copy(src / "performance" / name, dest / "performance" / "run_1" / name)
    for name in (DETAIL, SUMMARY, ACCURACY, "accuracy.txt"):
        if (src / "accuracy" / name).is_file():
            _copy(src / "accuracy" / name, dest / "accuracy" / name)
    if (dest / "accuracy" / ACCURACY).is_file() and (dest / "accuracy" / "accuracy.txt").is_file():
        truncate_accuracy_log(dest / "accuracy" / ACCURACY, dest / "accuracy" / "accuracy.txt")
    if (src / "user.conf").is_file():
        _copy(src / "user.conf", dest / "user.conf")
    _write_json(dest / "measurements.json", r.measurements)
    (dest / "README.md").write_text(_scenario_readme(r, draft, run_dir))


def _scenario_readme(r: Result, draft: bool, run_dir: Path) -> str:
    row, cfg = r.row, r.config
    banner = (f"**{DRAFT_MARK}: not for submission.** Refusals:\n\n"
              + "".join(f"- [{rule}] {why}\n" for rule, why in r.problems) + "\n"
              if draft and r.problems else "")
    return f"""# {row['model']} / {r.scenario}

{banner}Measured by `tuner` with MLCommons LoadGen (settings from `TestSettings.FromConfig`,
benchmark rules of `{r.benchmark}`), study `{row['study']}`, trial {row['trial']}, fidelity
`{row['fidelity']}`, on node `{row['node']}` (platform `{row['platform']}`), runtime
`{row['backend']}` {r.system_info.get('runtime_version', '')}, model file
`{r.system_info.get('model_file', '')}`.

- model: `{json.dumps(cfg.get('model'))}`
- runtime options: `{json.dumps(cfg.get('knobs'), sort_keys=True)}`
- scenario options: `{json.dumps(cfg.get('scenario_options'), sort_keys=True)}`
- the full trial configuration: `src/trials/{_trial_file(r)}`

## Reproduce

From the run directory the result came from (`{run_dir}`, its config is `src/config.yaml`):

    python -m tuner reproduce RUN_DIR {row['study']}:{row['trial']} --fidelity {row['fidelity']}

or measure it afresh as a compliant run (600 s performance run + full accuracy run):

    python -m tuner promote RUN_DIR {row['study']}:{row['trial']} --scenarios {r.scenario}
"""


def _trial_file(r: Result) -> str:
    return f"{r.row['study']}.{r.row['trial']:05d}.{r.scenario}.json"


def _write_src(src: Path, run_dir: Path, results: list[Result], draft: bool) -> None:
    src.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "overrides.yaml"):
        if (run_dir / ".hydra" / name).is_file():
            _copy(run_dir / ".hydra" / name, src / name)
    for r in results:
        _write_json(src / "trials" / _trial_file(r), r.config)
    banner = f"**{DRAFT_MARK}: not for submission** (packed with --draft).\n\n" if draft else ""
    (src / "README.md").write_text(f"""# How these results were produced

{banner}`tuner` searched the design space with Optuna (short LoadGen runs), then re-measured
the chosen Pareto-front trials as compliant MLPerf runs (LoadGen's own rules: 600 s minimum
duration, official seeds, the benchmark's performance sample count, accuracy over the whole
validation set; Server at a target QPS found first by short runs under the latency bound),
dispatched by Ray to a node of the same platform.

- `config.yaml`: the exact Hydra config of the search run (`.hydra/config.yaml`);
  `overrides.yaml`: the command-line overrides it was started with.
- `trials/<study>.<trial>.<Scenario>.json`: each packed measurement's `TrialConfig`.

Reproduce (from a checkout of tuner, with the run directory at hand):

    python -m tuner <overrides.yaml entries>   # the search itself (e.g. +space=dlrm)
    python -m tuner promote RUN_DIR STUDY:N --scenarios SingleStream
    python -m tuner reproduce RUN_DIR STUDY:N --fidelity compliant
    python -m experiments submission RUN_DIR --out DIR --org ORG --division open
    python -m experiments check DIR
""")
