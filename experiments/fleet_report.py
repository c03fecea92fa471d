"""The fleet report: every platform's front on one page (``fleet.html``, ``fleet.png``).

One plot with a colour per platform, a panel per platform, and a table of the best
configuration per platform at each accuracy level (the fastest feasible trial reaching at
least that accuracy), so a user picks a device and a configuration for an accuracy need.
Written beside the per-study ``pareto.*`` files when a run holds more than one platform.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from experiments import pareto
from experiments.emulated import is_emulated
from experiments.mlperf import REPLAY, SHORT
from experiments.objectives import accuracy_title, metric_of, objective
from experiments.plot_axes import log_latency_axis

SEARCH_FIDELITIES = (SHORT, REPLAY)  # the fidelities a study's search records carry


def platform_fronts(rows: list[dict[str, Any]]) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """platform -> (speed objective, its front) over the search records of one scenario
    (the run's most common one: an imported tree holds SingleStream and Offline side by
    side, and their speeds are not on one axis). An emulated node's records are left out:
    its latencies are a translator's, never set beside a device's (``experiments.emulated``)."""
    search = [r for r in rows if r["fidelity"] in SEARCH_FIDELITIES and not is_emulated(r)]
    if not search:
        return {}
    scenarios = [r["scenario"] for r in search]
    scenario = max(sorted(set(scenarios)), key=scenarios.count)
    out: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    for platform in sorted({r["platform"] for r in search}):
        group = [r for r in search if r["platform"] == platform and r["scenario"] == scenario]
        if group:
            speed = group[0]["objective"]
            out[platform] = (speed, pareto.front(group, speed))
    return out


def best_at_levels(fronts: dict[str, tuple[str, list[dict[str, Any]]]],
                   decimals: int = 3) -> list[dict[str, Any]]:
    """One row per accuracy level on any front: per platform the fastest front point with
    at least that accuracy (None where the platform cannot reach it)."""
    levels = sorted({round(r["accuracy"], decimals) for _, front in fronts.values()
                     for r in front}, reverse=True)
    table = []
    for level in levels:
        row: dict[str, Any] = {"accuracy": level}
        for platform, (speed, front) in fronts.items():
            reach = [r for r in front if round(r["accuracy"], decimals) >= level]
            pick = max if pareto.MAXIMISE[speed] else min
            row[platform] = pick(reach, key=lambda r: r[speed]) if reach else None
        table.append(row)
    return table


def write(run_dir: str | Path, rows: list[dict[str, Any]]) -> dict[str, Path]:
    """fleet.png and fleet.html, or nothing when the run has fewer than two platforms."""
    fronts = platform_fronts(rows)
    if len(fronts) < 2:
        return {}
    run_dir = Path(run_dir)
    metric = metric_of(r for _, front in fronts.values() for r in front)
    return {"fleet_png": _png(run_dir / "fleet.png", fronts, metric),
            "fleet_html": _html(run_dir / "fleet.html", fronts, metric, rows)}


def _png(path: Path, fronts: dict[str, tuple[str, list[dict[str, Any]]]], metric: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(fronts)
    fig, axes = plt.subplots(1, n + 1, figsize=(5.5 * (n + 1), 4.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for i, (platform, (speed, front)) in enumerate(fronts.items()):
        xs, ys = [r[speed] for r in front], [r["accuracy"] for r in front]
        for ax in (axes[0][0], axes[0][i + 1]):
            ax.plot(xs, ys, "-o", c=colours(i), label=f"{platform} ({len(front)})",
                    drawstyle="steps-post" if speed == "latency_ms" else "steps-pre")
        panel = axes[0][i + 1]
        for r in front:
            panel.annotate(f"{r['backend']} {r['model']}", (r[speed], r["accuracy"]),
                           fontsize=6, xytext=(4, -8), textcoords="offset points")
        panel.set_title(platform)
    for ax in axes[0]:
        speed = next(iter(fronts.values()))[0]
        ax.set_xlabel(objective(speed).axis_title())
        ax.set_ylabel(accuracy_title(metric))
        if speed == "latency_ms":
            log_latency_axis(ax)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_title("all platforms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _html(path: Path, fronts: dict[str, tuple[str, list[dict[str, Any]]]], metric: str,
          rows: list[dict[str, Any]]) -> Path:
    import plotly.graph_objects as go

    from experiments.report_html import drift_section

    fig = go.Figure()
    for platform, (speed, front) in fronts.items():
        fig.add_trace(go.Scatter(
            x=[r[speed] for r in front], y=[r["accuracy"] for r in front], mode="lines+markers",
            name=platform, line_shape="hv" if speed == "latency_ms" else "vh",
            text=[f"{r['backend']} {r['model']} (trial {r['trial']})" for r in front]))
    speed = next(iter(fronts.values()))[0]
    fig.update_layout(title="Pareto fronts by platform", xaxis_title=objective(speed).axis_title(),
                      yaxis_title=accuracy_title(metric), xaxis_type="log" if speed == "latency_ms"
                      else "linear")
    platforms = list(fronts)
    head = "".join(f"<th>{html.escape(p)}</th>" for p in platforms)
    body = []
    for row in best_at_levels(fronts):
        cells = []
        for p in platforms:
            r = row[p]
            cells.append("<td>-</td>" if r is None else
                         f"<td>{html.escape(str(r['backend']))} {html.escape(str(r['model']))}"
                         f"<br>{r[fronts[p][0]]:.4g} {objective(fronts[p][0]).unit}, "
                         f"{html.escape(metric)} {r['accuracy']:.3f}</td>")
        body.append(f"<tr><td>&ge; {row['accuracy']:.3f}</td>{''.join(cells)}</tr>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>Fleet report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}</style></head><body>"
        "<h1>Fleet report</h1>"
        + fig.to_html(full_html=False, include_plotlyjs=True, div_id="fleet")  # same rows, same page
        + "<h2>Best configuration per platform at each accuracy level</h2>"
        + f"<table><tr><th>{html.escape(metric)} at least</th>{head}</tr>{''.join(body)}</table>"
        + drift_section(rows) + "</body></html>")
    path.write_text(page)
    return path
