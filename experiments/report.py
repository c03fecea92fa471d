"""Pareto reports from trial records: ``pareto.csv``, ``pareto.png``, ``pareto.html``, console.

One section per study (a study is one platform's search). The HTML (``report_html``) embeds
plotly.js, so it opens offline; the PNG is matplotlib with the Agg backend, so it renders on
a headless node. Axes and tables name the run's own accuracy metric (records'
``accuracy_metric``: top1, mAP, AUC) and speed objective (``experiments.objectives``).
A study's search rows are its short runs, or the replayed or published rows of a replay
or an import; ``compare=`` draws other runs' fronts (e.g. published results) beside it.
Every string in the HTML that came from a config, a model file name or an imported tree
is escaped: a model folder may be named anything.
"""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path
from typing import Any

from experiments import compare as comparing
from experiments import fleet_report, noise, pareto, report_html, ties
from experiments.mlperf import REPLAY, SHORT
from experiments.noise import BOUNDS
from experiments.objectives import accuracy_title, metric_of, objective
from experiments.plot_axes import log_latency_axis
from experiments.records import read

CSV_COLUMNS = ["study", "platform", "trial", "fidelity", "backend", "model", "scenario",
               "latency_ms", "latency_low_ms", "latency_high_ms", "p90_latency_ms", "qps",
               "qps_low", "qps_high", "repeats", "accuracy", "accuracy_metric", "node",
               "params", "log_dir", "equivalent", "flagged"]
# Re-measurements beside the search's short runs (tuner.commands.promote): drawn with their own
# markers, only where their scenario is the study's (other scenarios' figures are not
# comparable on one axis) and listed in full in a table.
REMEASURED_STYLE = {
    "compliant": dict(c="tab:green", marker="*", s=160, edgecolors="black"),
    "compliant-reduced": dict(c="yellowgreen", marker="*", s=110, edgecolors="gray"),
    "reproduce": dict(c="tab:purple", marker="D", s=40, alpha=0.7),
}
PROMOTED_COLUMNS = ["trial", "fidelity", "scenario", "state", "backend", "model", "latency_ms",
                    "p90_latency_ms", "qps", "accuracy", "valid", "node", "log_dir"]


def studies(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["study"], r["trial"])):
        out.setdefault(row["study"], []).append(row)
    return out


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def is_search(row: dict[str, Any]) -> bool:
    """A row of a study's search (short, replayed, published, simulated), not a
    re-measurement of one of its points."""
    return row["fidelity"] not in comparing.NOT_SEARCH


def searched(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in group if is_search(r)]


def remeasured(group: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A study's rows that are not search trials (compliant, reduced, reproduce)."""
    return [r for r in group if not is_search(r)]


def _plottable(group: list[dict[str, Any]], speed: str) -> dict[str, list[dict[str, Any]]]:
    """fidelity -> re-measured rows on the study's own axes (its scenario, measured)."""
    short = searched(group)
    scenario = short[0]["scenario"] if short else None
    out: dict[str, list[dict[str, Any]]] = {}
    for r in remeasured(group):
        if r["scenario"] == scenario and r[speed] is not None and r["accuracy"] is not None:
            out.setdefault(r["fidelity"], []).append(r)
    return out


def fronts(rows: list[dict[str, Any]], fidelity: str | None = None
           ) -> dict[str, list[dict[str, Any]]]:
    """study -> its Pareto front over its search rows (or the rows of one fidelity). Our own
    measurements (short, replayed) are pooled per configuration, with intervals and ties
    (``experiments.ties``); others' figures (published) are drawn as they were given."""
    out = {}
    for name, group in studies(rows).items():
        chosen = [r for r in group if (r["fidelity"] == fidelity if fidelity else is_search(r))]
        speed = group[0]["objective"]
        noisy = chosen and all(r["fidelity"] == SHORT or (
            r["fidelity"] == REPLAY and "replay_noise" in noise.system_of(r)) for r in chosen)
        out[name] = ties.front(chosen, speed) if noisy else pareto.front(chosen, speed)
    return out


def render(run_dir: str | Path, compare: list[str | Path] | None = None) -> dict[str, Path]:
    """Write the three report files into ``run_dir`` from its records; ``compare``: run
    dirs (e.g. imported published results) whose fronts are drawn beside each study's."""
    run_dir = Path(run_dir)
    rows = read(run_dir).to_pylist()
    front = fronts(rows)
    others = comparing.load(compare or [])
    paths = {"csv": write_csv(run_dir / "pareto.csv", front),
             "png": write_png(run_dir / "pareto.png", rows, front, others),
             "html": write_html(run_dir / "pareto.html", rows, front, others)}
    return {**paths, **fleet_report.write(run_dir, rows)}  # fleet.*: two platforms or more


def write_csv(path: Path, front: dict[str, list[dict[str, Any]]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for rows in front.values():
            writer.writerows(rows)
    return path


OTHER_COLOURS = ["tab:green", "tab:purple", "tab:brown", "tab:olive", "tab:cyan"]


def _other_fronts(others, group: list[dict[str, Any]], speed: str):
    return comparing.matching(others or [], group[0]["platform"], speed, metric_of(group))


PNG_MARKERS = {"fp32": "o", "fp16": "D", "int8": "s"}  # as the HTML's shapes


def _by_runtime_precision(rows: list[dict[str, Any]], state: str) -> dict[tuple, list]:
    out: dict[tuple, list] = {}
    for r in rows:
        if r["state"] == state:
            out.setdefault((str(r["backend"]), report_html.precision(r)), []).append(r)
    return dict(sorted(out.items()))


def write_png(path: Path, rows: list[dict[str, Any]], front: dict[str, list],
              others: list | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = studies(rows)
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(7 * max(1, len(groups)), 5),
                             squeeze=False)
    for ax, (name, group) in zip(axes[0], groups.items()):
        speed = group[0]["objective"]
        measured = report_html.plottable(searched(group), speed)
        for fidelity, pts in _plottable(group, speed).items():
            ax.scatter([r[speed] for r in pts], [r["accuracy"] for r in pts], zorder=5,
                       label=f"{fidelity} ({len(pts)})",
                       **REMEASURED_STYLE.get(fidelity, dict(marker="s")))
        runtimes = sorted({str(r["backend"]) for r in measured})
        for (runtime, prec), pts in _by_runtime_precision(measured, "complete").items():
            ax.scatter([r[speed] for r in pts], [r["accuracy"] for r in pts], alpha=0.7,
                       c=report_html.colour(runtime, runtimes), label=f"{runtime} {prec}",
                       marker=PNG_MARKERS.get(prec, "^"))
        pts = [r for r in measured if r["state"] != "complete"]
        ax.scatter([r[speed] for r in pts], [r["accuracy"] for r in pts], c="tab:gray",
                   marker="x", alpha=0.6, label=f"infeasible ({len(pts)})")
        best = front.get(name, [])
        if best:
            ax.plot([r[speed] for r in best], [r["accuracy"] for r in best], "-o", c="tab:red",
                    label=f"Pareto front ({len(best)})", drawstyle="steps-post"
                    if speed == "latency_ms" else "steps-pre")
            for r in best:
                ax.annotate(f"{r['backend']}\n{r['model']}", (r[speed], r["accuracy"]),
                            fontsize=6, xytext=(4, -8), textcoords="offset points")
        for colour, other in zip(OTHER_COLOURS * 4, _other_fronts(others, group, speed)):
            ax.plot([r[speed] for r in other.rows], [r["accuracy"] for r in other.rows], "--s",
                    c=colour, ms=4, label=f"{other.label} front ({len(other.rows)})",
                    drawstyle="steps-post" if speed == "latency_ms" else "steps-pre")
        floors = {r["accuracy_floor"] for r in group if r.get("accuracy_floor")}  # 0: none
        for floor in floors:
            ax.axhline(floor, ls="--", c="tab:orange", lw=1, label=f"accuracy floor {floor:.3f}")
        short = searched(group)
        failed = sum(r["state"] == "failed" for r in short)
        # infeasible without figures: INVALID runs, replayed points not in the table
        drawn = {id(r) for r in measured}
        blank = sum(r["state"] == "infeasible" and id(r) not in drawn for r in short)
        ax.set_title(f"{name}  ({len(short)} trials, {failed} failed"
                     + (f", {blank} infeasible without figures)" if blank else ")"))
        ax.set_xlabel(f"{objective(speed).axis_title()}\n{report_html.scenario_note(group, speed)}")
        ax.set_ylabel(f"{accuracy_title(metric_of(group))}, LoadGen accuracy run")
        if speed == "latency_ms":
            log_latency_axis(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_html(path: Path, rows: list[dict[str, Any]], front: dict[str, list],
               others: list | None = None) -> Path:
    import plotly.graph_objects as go

    sections = []
    first = True
    for name, group in studies(rows).items():
        speed, metric = group[0]["objective"], metric_of(group)
        best, beside = front.get(name, []), _other_fronts(others, group, speed)
        fig = report_html.study_figure(name, group, searched(group), best,
                                       _plottable(group, speed), beside, go)
        # a fixed div id (plotly's default is random): the same records, the same page
        plot = fig.to_html(full_html=False, include_plotlyjs=True if first else False,
                           div_id=f"pareto-{len(sections)}")
        first = False
        again = remeasured(group)
        promoted = (f"<h3>Re-measured (promoted to compliant runs, reproduced)</h3>"
                    f"{_table(again, PROMOTED_COLUMNS)}" if again else "")
        compared = "".join(f"<h3>Compared: {_esc(o.label)}</h3>"
                           f"{report_html.front_table(o.rows, metric, speed)}" for o in beside)
        note = (f"<p>Scenario and speed: {_esc(report_html.scenario_note(group, speed))} "
                f"(mlperf_log_detail.txt). Accuracy: {_esc(metric)} from LoadGen's accuracy "
                f"log. Hover a point for its runtime, model, knobs, figures and cause.</p>")
        sections.append(f"<h2>{_esc(name)}</h2>{note}{plot}"
                        f"{report_html.front_table(best, metric, speed)}{promoted}{compared}")
    failed = [r for r in rows if r["state"] != "complete"]
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>tuner: Pareto report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:left}}th{{background:#eee}}</style>
</head><body><h1>Pareto report</h1>
<p>{len(rows)} trials; {len(failed)} infeasible or failed. Latency and throughput are
LoadGen's figures (mlperf_log_detail.txt); accuracy is from LoadGen's accuracy log.</p>
{''.join(sections)}
{report_html.drift_section(rows)}
<h2>Infeasible and failed trials</h2>{_cause_table(failed)}
</body></html>"""
    path.write_text(doc)
    return path


def _cause_table(rows: list[dict[str, Any]]) -> str:
    return _table(rows, ["study", "trial", "fidelity", "state", "backend", "model", "cause"])


def _table(rows: list[dict[str, Any]], head: list[str]) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(fmt(r.get(c)))}</td>" for c in head) + "</tr>"
        for r in rows)
    return "<table><tr>" + "".join(f"<th>{_esc(c)}</th>" for c in head) + f"</tr>{body}</table>"


def fmt(value, missing: str = "") -> str:
    """A figure as the reports and the console print it."""
    if value is None:
        return missing
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def interval_text(row: dict[str, Any], speed: str) -> str:
    """"0.412 [0.38, 0.45] x3": the figure, its interval, the records pooled."""
    low, high = (row.get(c) for c in BOUNDS.get(speed, ("", "")))
    text = f"{row[speed]:.4g}"
    if low is not None and high is not None:
        text += f" [{low:.3g}, {high:.3g}]"
    if (row.get("repeats") or 1) > 1:
        text += f" x{row['repeats']}"
    return text


def print_fronts(rows: list[dict[str, Any]], console=None) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    # Piped or logged output gets room for the whole row instead of rich's 80 columns.
    console = console or Console(width=None if Console().is_terminal else 160)
    for name, best in fronts(rows).items():
        if not best:
            console.print(f"[bold]{name}[/]: no feasible trial yet")
            continue
        speed = best[0]["objective"]
        table = Table(title=f"Pareto front: {name} ({len(best)} configurations)",
                      caption=escape("[low, high]: where 9 in 10 re-measurements land "
                                     "(90%); x n: records pooled"))
        for col in ("trial", "backend", "model", speed, metric_of(best)):
            table.add_column(col, no_wrap=True)
        table.add_column("knobs", overflow="fold")
        table.add_column("same within noise", overflow="fold")
        for r in best:
            # "onnxruntime.intra_op_threads" -> "intra_op_threads": the backend has a column
            knobs = " ".join(f"{k.split('.', 1)[-1]}={v}"
                             for k, v in json.loads(r["params"] or "{}").items()
                             if k not in ("width", "resolution", "precision", "backend",
                                          "family", "variant"))
            table.add_row(str(r["trial"]), r["backend"], r["model"], interval_text(r, speed),
                          f"{r['accuracy']:.4f}", knobs,
                          " ".join(t for t in (ties.tie_text(r), r.get("flagged") or "") if t))
        console.print(table)


def print_promoted(rows: list[dict[str, Any]], console=None) -> None:
    """The re-measured rows (compliant, reduced, reproduce) per study, if any."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    for name, group in studies(rows).items():
        again = remeasured(group)
        if not again:
            continue
        table = Table(title=f"Re-measured: {name} ({len(again)} runs)")
        for col in PROMOTED_COLUMNS[:-2]:
            table.add_column(col)
        for r in again:
            table.add_row(*[fmt(r.get(c)) for c in PROMOTED_COLUMNS[:-2]])
        console.print(table)
