"""pareto.html: a plotly section per study (the page embeds plotly.js, so it opens offline).

Points are coloured by runtime and shaped by precision; infeasible ones are the open form
of their shape. Hover text is one line per field. plotly renders hover text as a small
subset of HTML and decodes only a few entities (``&lt;``, ``&gt;``, ``&amp;``): ``&quot;``
shows literally, so hover strings are escaped without quotes (``_txt``); table cells are
ordinary HTML (``_esc``). Every string that came from a config, a model file name or an
imported tree is escaped: a model folder may be named anything.
"""
from __future__ import annotations

import html
import json
import math
import textwrap
from typing import Any

from experiments import drift, emulated, ties
from experiments.mlperf import SCENARIOS
from experiments.noise import BOUNDS
from experiments.objectives import LATENCY, accuracy_title, metric_of, objective

RUNTIME_COLOURS = {"onnxruntime": "#1f77b4", "litert": "#ff7f0e", "tvm": "#2ca02c",
                   "tensorrt": "#9467bd", "edgetpu": "#8c564b"}
OTHER_RUNTIME_COLOURS = ["#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
PRECISION_SYMBOLS = {"fp32": "circle", "fp16": "diamond", "int8": "square"}
PLOTLY_SYMBOL = {"compliant": "star", "compliant-reduced": "star-open", "reproduce": "diamond"}
PLOTLY_OTHER = ["seagreen", "mediumpurple", "sienna", "olive", "teal"]
MODEL_DIMS = ("width", "resolution", "precision", "backend", "family", "variant", "model")


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _txt(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=False)


def _num(value: Any) -> str:
    return "" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def knobs(row: dict[str, Any]) -> list[str]:
    """The runtime's knobs of a trial, "name=value" ("onnxruntime.x" -> "x": the runtime
    has a column of its own)."""
    params = json.loads(row.get("params") or "{}")
    return [f"{k.split('.', 1)[-1]}={v}" for k, v in params.items() if k not in MODEL_DIMS]


def precision(row: dict[str, Any]) -> str:
    params = json.loads(row.get("params") or "{}")
    if params.get("precision"):
        return str(params["precision"])
    tail = str(row.get("model") or "").rsplit("_", 1)[-1]
    return tail if tail in PRECISION_SYMBOLS else "other"


def colour(runtime: str, runtimes: list[str]) -> str:
    if runtime in RUNTIME_COLOURS:
        return RUNTIME_COLOURS[runtime]
    others = [r for r in runtimes if r not in RUNTIME_COLOURS]
    return OTHER_RUNTIME_COLOURS[others.index(runtime) % len(OTHER_RUNTIME_COLOURS)]


def _wrapped(label: str, text: str, width: int = 70) -> list[str]:
    lines = textwrap.wrap(text, width - len(label) - 2) or [""]
    return [f"{label}: {lines[0]}", *[f"&nbsp;&nbsp;{line}" for line in lines[1:]]]


def hover(row: dict[str, Any], metric: str, note: str = "") -> str:
    """A point's hover text: one line per field, escaped for plotly."""
    head = f"trial {row['trial']} ({row['state']}"
    head += f", {row['fidelity']})" if row.get("fidelity") not in (None, "short") else ")"
    lines = [head + (f" {note}" if note else ""), f"runtime: {row.get('backend')}",
             f"model: {row.get('model')} ({precision(row)})"]
    lines += _wrapped("knobs", ", ".join(knobs(row)) or "-")
    if row.get("latency_ms") is not None:
        p90 = row.get("p90_latency_ms")
        lines.append(f"latency: {_num(row['latency_ms'])} ms"
                     + (f" (p90 {_num(p90)} ms)" if p90 is not None else ""))
    if row.get("qps") is not None:
        lines.append(f"throughput: {_num(row['qps'])} samples/s")
    if row.get("accuracy") is not None:
        extras = json.loads(row.get("accuracy_extras") or "{}")
        more = ", ".join(f"{k} {_num(v)}" for k, v in extras.items())
        lines.append(f"{metric}: {row['accuracy']:.4f}" + (f" ({more})" if more else ""))
    if row.get("cause"):
        lines += _wrapped("cause", str(row["cause"]))
    if row.get("node"):
        lines.append(f"node: {row['node']}")
    return "<br>".join(_txt(line).replace("&amp;nbsp;", "&nbsp;") for line in lines)


def scenario_note(group: list[dict[str, Any]], speed: str) -> str:
    """'SingleStream; latency = LoadGen's 90th percentile latency (early stopping)'."""
    scenario = group[0].get("scenario")
    facts = SCENARIOS.get(scenario)
    figure = facts.metric if facts else "as recorded"
    label = objective(speed).label
    mark = f"; {emulated.MARK.upper()}" if any(emulated.is_emulated(r) for r in group) else ""
    return f"{scenario}; {label} = LoadGen's {figure}, {objective(speed).unit}{mark}"


def plottable(rows: list[dict[str, Any]], speed: str) -> list[dict[str, Any]]:
    """Rows with both figures; a latency of 0 (a run that stopped before its first query)
    has no place on a log axis."""
    return [r for r in rows if r[speed] is not None and r["accuracy"] is not None
            and (r[speed] > 0 or speed != LATENCY.column)]


def study_figure(name: str, group: list[dict[str, Any]], searched, best, remeasured,
                 beside, go) -> Any:
    """The plot of one study: search points, its front, the floor, re-measurements and
    other runs' fronts."""
    speed, metric = group[0]["objective"], metric_of(group)
    fig = go.Figure()
    measured = plottable(searched, speed)
    runtimes = sorted({str(r["backend"]) for r in measured})
    for runtime in runtimes:
        for feasible in (True, False):
            pts = [r for r in measured if str(r["backend"]) == runtime
                   and (r["state"] == "complete") == feasible]
            if not pts:
                continue
            shapes = [PRECISION_SYMBOLS.get(precision(r), "triangle-up") for r in pts]
            fig.add_trace(go.Scatter(
                x=[r[speed] for r in pts], y=[r["accuracy"] for r in pts], mode="markers",
                name=_txt(runtime if feasible else f"{runtime} (infeasible)"),
                legendgroup=_txt(runtime), text=[hover(r, metric) for r in pts],
                hovertemplate="%{text}<extra></extra>",
                marker=dict(color=colour(runtime, runtimes), size=10 if feasible else 8,
                            opacity=0.85 if feasible else 0.5,
                            symbol=shapes if feasible else [s + "-open" for s in shapes])))
    for prec in sorted({precision(r) for r in measured}):  # the legend of the shapes
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=_txt(prec),
                                 legendgroup="precision", legendgrouptitle_text="precision",
                                 marker=dict(color="gray", symbol=PRECISION_SYMBOLS.get(
                                     prec, "triangle-up"))))
    fig.add_trace(go.Scatter(
        x=[r[speed] for r in best], y=[r["accuracy"] for r in best], mode="lines+markers",
        name=f"Pareto front ({len(best)})", hoverinfo="skip", error_x=error_bars(best, speed),
        line=dict(color="crimson", shape="hv" if speed == LATENCY.column else "vh"),
        marker=dict(size=17, color="rgba(0,0,0,0)", line=dict(width=2, color="crimson"))))
    for fidelity, pts in remeasured.items():
        fig.add_trace(go.Scatter(
            x=[r[speed] for r in pts], y=[r["accuracy"] for r in pts], mode="markers",
            name=_txt(fidelity), text=[hover(r, metric, "VALID" if r["valid"] else "INVALID")
                                       for r in pts], hovertemplate="%{text}<extra></extra>",
            marker=dict(symbol=PLOTLY_SYMBOL.get(fidelity, "square"), size=15,
                        line=dict(width=1, color="black"))))
    for tint, other in zip(PLOTLY_OTHER * 4, beside):
        fig.add_trace(go.Scatter(
            x=[r[speed] for r in other.rows], y=[r["accuracy"] for r in other.rows],
            mode="lines+markers", name=_txt(f"{other.label} front"),
            line=dict(color=tint, shape="hv", dash="dash"),
            marker=dict(size=8, color=tint, symbol="square"),
            text=[hover(r, metric) for r in other.rows], hovertemplate="%{text}<extra></extra>"))
    for floor in sorted({r["accuracy_floor"] for r in group if r.get("accuracy_floor")}):
        fig.add_hline(y=floor, line=dict(color="darkorange", dash="dash", width=1.5),
                      annotation_text=f"accuracy floor {floor:.4g}",
                      annotation_position="bottom right", annotation_font_color="darkorange")
    fig.update_layout(
        title=_txt(f"{name}: {trial_count(searched)} ({scenario_note(group, speed)})"),
        xaxis_title=objective(speed).axis_title(), yaxis_title=accuracy_title(metric),
        height=560, hoverlabel=dict(align="left", font_size=12),
        xaxis_type="log" if speed == LATENCY.column else "linear")
    if speed == LATENCY.column:  # plotly labels a log axis's minor ticks "5 6 7" for 0.5-0.7
        shown = measured + best + [r for pts in remeasured.values() for r in pts] \
            + [r for other in beside for r in other.rows]
        ticks = log_ticks([r[speed] for r in shown if r[speed] is not None])
        fig.update_xaxes(tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return fig


def error_bars(rows: list[dict[str, Any]], speed: str) -> dict | None:
    """The 90% intervals of front points as asymmetric horizontal error bars."""
    low_col, high_col = BOUNDS.get(speed, ("", ""))
    if not any(r.get(low_col) is not None for r in rows):
        return None
    return dict(type="data", symmetric=False, color="crimson", thickness=1.5, width=6,
                array=[(r.get(high_col) or r[speed]) - r[speed] for r in rows],
                arrayminus=[r[speed] - (r.get(low_col) or r[speed]) for r in rows])


def trial_count(rows: list[dict[str, Any]]) -> str:
    """"40 trials + 9 re-measurements" (racing, canary, rechecks)."""
    again = sum((r.get("measured_for") or "search") != "search" for r in rows)
    return f"{len(rows) - again} trials" + (f" + {again} re-measurements" if again else "")


def log_ticks(values: list[float]) -> list[float]:
    """1-2-5 ticks per decade spanning ``values`` (positive), each one labelled in full."""
    values = [v for v in values if v and v > 0]
    if not values:
        return []
    low, high = math.floor(math.log10(min(values))), math.ceil(math.log10(max(values)))
    return [m * 10.0 ** e for e in range(low, high + 1) for m in (1, 2, 5)
            if min(values) / 2.5 <= m * 10.0 ** e <= max(values) * 2.5]


FRONT_HEAD = [("trial", "trial"), ("backend", "runtime"), ("model", "model"),
              ("precision", "precision"), ("latency_ms", "latency (ms)"),
              ("interval", "90% interval (records)"),
              ("p90_latency_ms", "p90 latency (ms)"), ("qps", "throughput (samples/s)"),
              ("accuracy", None), ("knobs", "knobs"), ("node", "node"),
              ("log_dir", "LoadGen logs"), ("ties", "the same within noise")]


def interval(row: dict[str, Any], speed: str) -> str:
    low, high = (row.get(c) for c in BOUNDS.get(speed, ("", "")))
    if low is None or high is None:
        return ""
    return f"{low:.4g} - {high:.4g} ({row.get('repeats') or 1})"


def tie_cell(row: dict[str, Any]) -> str:
    """"litert or onnxruntime: the same within noise" and each tied configuration."""
    others = json.loads(row.get("equivalent") or "[]")
    lines = [ties.tie_text(row)] if others else []
    lines += [f"{o['backend']} {o.get('model') or ''} {_params(o.get('params'))}" for o in others]
    if row.get("flagged"):
        lines.append(f"FLAGGED: {row['flagged']}")
    return "; ".join(lines)


def _params(params) -> str:
    return ", ".join(f"{k.split('.', 1)[-1]}={v}" for k, v in (params or {}).items()
                     if k not in ("width", "resolution", "precision", "backend"))


def drift_section(rows: list[dict[str, Any]]) -> str:
    """Every drift the nodes' canaries caught: when, where, by how much (their causes)."""
    events = drift.events(rows)
    if not events:
        return ""
    body = "".join(f"<tr><td>{_esc(e['node'])}</td><td>{_esc(e['at'])}</td>"
                   f"<td>{_esc(e['study'])} #{e['trial']}</td><td>{_esc(e['cause'])}</td></tr>"
                   for e in events)
    return ("<h2>Node drift caught by the canary</h2><p>Records measured on a node while it "
            "drifted are measured again once it is steady; a front point resting on them "
            "alone is flagged.</p><table><tr><th>node</th><th>when</th><th>canary</th>"
            f"<th>by how much</th></tr>{body}</table>")


def front_table(rows: list[dict[str, Any]], metric: str, speed: str) -> str:
    """The front, best speed first: every figure, the knobs and the log folder (a link,
    relative to the run dir the page sits in)."""
    head = "".join(f"<th>{_esc(label or metric)}</th>" for _, label in FRONT_HEAD)
    body = []
    for r in rows:
        cells = {**{k: _esc(_num(r.get(k))) for k, _ in FRONT_HEAD},
                 "precision": _esc(precision(r)), "knobs": _esc(", ".join(knobs(r))),
                 "accuracy": _esc("" if r.get("accuracy") is None else f"{r['accuracy']:.4f}"),
                 "interval": _esc(interval(r, speed)), "ties": _esc(tie_cell(r))}
        if r.get("log_dir"):
            cells["log_dir"] = f"<a href=\"{_esc(r['log_dir'])}\">{_esc(r['log_dir'])}</a>"
        body.append("<tr>" + "".join(f"<td>{cells[k]}</td>" for k, _ in FRONT_HEAD) + "</tr>")
    title = f"Pareto front ({len(rows)}), best {objective(speed).label} first"
    return f"<h3>{_esc(title)}</h3><table><tr>{head}</tr>{''.join(body)}</table>"

