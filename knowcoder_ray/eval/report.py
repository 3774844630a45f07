"""The plotly HTML report of an evaluation run: metric vs checkpoint lines, per-type F1 bars (one chart
per dataset), a per-dataset table and the parse statistics. One self-contained file (plotly.js inlined),
so it opens offline."""
from __future__ import annotations

import html
import json
from pathlib import Path

import plotly.graph_objects as go
import plotly.io as pio

from knowcoder_ray import storage
from knowcoder_ray.settings import UsageError

CLASSIFICATION = ("EC", "RC", "TC", "AC")  # the per-type bars show these
ROW = 24  # table row height (px)
F1_AXIS = {"yaxis_title": "F1 (%)", "yaxis_range": [0, 100], "height": 420}  # the charts' layout


def _table_figure(title: str, header: list[str], columns: list[list], rows: int):
    """A table tall enough that it shows whole, without an inner scroll bar."""
    fig = go.Figure(go.Table(header={"values": header, "align": "left", "height": ROW},
                             cells={"values": columns, "align": "left", "height": ROW}))
    fig.update_layout(title=title, height=60 + 20 + ROW * (rows + 2), margin={"t": 60, "b": 20})
    return fig


def _lines(labels: list[str], metrics: list[dict]):
    fig = go.Figure()
    for m in dict.fromkeys(k for ck in metrics for k in ck["summary"]):
        fig.add_trace(go.Scatter(x=labels, y=[ck["summary"].get(m) for ck in metrics], mode="lines+markers", name=m))
    fig.update_layout(title="Overall F1 (%) per checkpoint", xaxis_title="checkpoint", **F1_AXIS)
    return fig


def _type_bars(dataset: str, labels: list[str], metrics: list[dict]):
    fig = go.Figure()
    for label, ck in zip(labels, metrics):
        scores = ck["datasets"][dataset]["metrics"]
        x, y = [], []
        for m in CLASSIFICATION:
            for t, c in scores.get(m, {}).get("per_type", {}).items():
                x.append(f"{m} · {t}")
                y.append(round(100 * c["f1"], 2))
        fig.add_trace(go.Bar(x=x, y=y, name=label))
    fig.update_layout(title=f"{dataset}: F1 (%) per type", barmode="group", **F1_AXIS)
    return fig


def _table(labels: list[str], metrics: list[dict], mode: str):
    rows = []
    for dataset, d in metrics[0]["datasets"].items():
        for m in d["modes"][mode]["metrics"]:
            overall = [ck["datasets"][dataset]["modes"][mode]["metrics"][m]["overall"] for ck in metrics]
            rows.append([dataset, m, str(d["records"]),
                         *[f"{100 * c['f1']:.2f} ({100 * c['p']:.1f} / {100 * c['r']:.1f})" for c in overall]])
    for m in metrics[0]["modes"][mode]["overall"]:
        f1s = [ck["modes"][mode]["overall"][m]["overall"]["f1"] for ck in metrics]
        rows.append(["all", m, "", *[f"{100 * f1:.2f}" for f1 in f1s]])
    columns = list(zip(*rows)) if rows else [[]] * (3 + len(labels))
    header = ["dataset", "metric", "sentences", *[f"{lab}: F1 (P / R)" for lab in labels]]
    return _table_figure(f"Per-dataset scores ({mode} metrics)", header, [list(c) for c in columns], len(rows))


def _parse_table(labels: list[str], metrics: list[dict]):
    keys = ["prompts", "outputs_with_errors", "errors", "hallucinated", "truncated"]
    return _table_figure("Model outputs: parse statistics", ["checkpoint", *keys],
                         [labels, *[[ck["parse"][k] for ck in metrics] for k in keys]], len(labels))


def _json(path: str):
    try:
        return json.loads(storage.read_text(path))
    except (json.JSONDecodeError, RecursionError) as e:
        raise UsageError(f"{path}: not JSON ({e})") from None


def build_report(run_dir: str | Path) -> str:
    """The report page as one HTML string, from summary.json and each checkpoint's metrics.json."""
    path = storage.join(run_dir, "summary.json")
    if not storage.isfile(path):
        raise FileNotFoundError(f"{path} not found: run `knowcoder eval` first")
    summary = _json(path)
    if not isinstance(summary, dict) or not isinstance(summary.get("checkpoints"), list) or not all(
            isinstance(c, dict) and isinstance(c.get("checkpoint"), str) and isinstance(c.get("metrics"), str)
            for c in summary["checkpoints"]):
        raise UsageError(f"{path}: not a summary of `knowcoder eval` (a 'checkpoints' list of objects with "
                         "'checkpoint' and 'metrics')")
    if not summary["checkpoints"]:
        raise UsageError(f"{path}: lists no checkpoints: nothing to report")
    metrics = [_json(storage.join(run_dir, c["metrics"])) for c in summary["checkpoints"]]
    labels = [c["checkpoint"] for c in summary["checkpoints"]]
    try:  # a metrics.json cut short or hand-edited, or checkpoints scored on different datasets
        modes = dict.fromkeys([metrics[0]["mode"], *metrics[0]["modes"]])  # the summary's mode first
        figs = [_lines(labels, metrics), *(_table(labels, metrics, mode) for mode in modes)]
        figs += [_type_bars(d, labels, metrics) for d in metrics[0]["datasets"]]
        figs.append(_parse_table(labels, metrics))
        split, datasets = str(summary.get("split", "?")), ", ".join(map(str, summary.get("datasets") or []))
    except (KeyError, TypeError, IndexError, AttributeError, ValueError) as e:
        raise UsageError(f"{run_dir}: the metrics of its checkpoints are incomplete or disagree "
                         f"({type(e).__name__}: {e}); rerun `knowcoder eval`") from None
    divs = [pio.to_html(f, full_html=False, include_plotlyjs=(i == 0), div_id=f"fig{i}") for i, f in enumerate(figs)]
    title = f"KnowCoder evaluation: {len(labels)} checkpoint(s), split {split}"
    info = (f"<p>Datasets: {html.escape(datasets)}<br>"
            f"Checkpoints: {html.escape(', '.join(labels))}</p>")
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body style=\"font-family: sans-serif; margin: 1em 2em\"><h1>{html.escape(title)}</h1>{info}"
            + "\n".join(divs) + "</body></html>\n")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> str:
    path = str(out) if out else storage.join(run_dir, "report.html")
    if storage.isdir(path):  # (else "Is a directory" naming the temporary file beside it)
        raise UsageError(f"{path} is a folder: give the report's file path")
    storage.write_text(path, build_report(run_dir))
    return path
