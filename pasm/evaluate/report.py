"""What a reader of a run looks at: accuracy over rounds, metric tables as HTML, the point-density figure.

Functions here turn metrics dicts and artifacts into rows, series, HTML and pictures; the
evaluate and point_density rules write them beside metrics.json for Snakemake's report.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pasm.data.atomic import atomic_path
from pasm.data.h5store import read_faces, read_table
from pasm.data.labels import CLASSES
from pasm.evaluate.plots import accuracy_plot, density_grid
from pasm.evaluate.point_density import class_densities, default_sigma, mean_grey_face

SCORES = {"accuracy": "accuracy", "mean_class_accuracy": "mean class accuracy", "macro_f1": "macro F1"}


def evaluated_sets(metrics: dict[str, Any], cross: dict[str, dict[str, Any]]) -> list[tuple[str, str, dict]]:
    """(name, kind, metrics) of every split, subset and cross-data-set target of one round's results."""
    out = [(name, "split", m) for name, m in metrics["splits"].items()]
    out += [(name, "subset", m) for name, m in metrics.get("subsets", {}).items()]
    out += [(f"cross:{target}", "cross", c["all"]) for target, c in cross.items()]
    return out


def metric_rows(rnd: int, metrics: dict[str, Any], cross: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per evaluated set of a round: round, name, kind, n and the headline scores."""
    return [
        {"round": rnd, "name": name, "kind": kind, "n": m["n"], **{k: m.get(k) for k in SCORES}}
        for name, kind, m in evaluated_sets(metrics, cross)
    ]


def load_round(round_dir: str | Path, targets: Sequence[str]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """metrics.json of a round directory and its cross-data-set results for the given targets (those present)."""
    round_dir = Path(round_dir)
    metrics = json.loads((round_dir / "metrics.json").read_text())
    cross = {}
    for target in targets:
        path = round_dir / "cross" / target / "metrics.json"
        if path.exists():
            cross[target] = json.loads(path.read_text())
    return metrics, cross


def accuracy_series(rows: list[dict[str, Any]], score: str = "accuracy") -> tuple[list[int], dict[str, list]]:
    """Rounds in order and, per evaluated set, its score at each round (None where not evaluated)."""
    rounds = sorted({r["round"] for r in rows})
    names = list(dict.fromkeys(r["name"] for r in rows))
    value = {(r["round"], r["name"]): r[score] for r in rows}
    return rounds, {name: [value.get((rnd, name)) for rnd in rounds] for name in names}


def _pct(v: float | None) -> str:
    return "" if v is None else f"{100 * v:.2f}"


def _num(v: float | None) -> str:
    return "&ndash;" if v is None else f"{v:.3f}"


_STYLE = (
    "<style>body{font-family:sans-serif;font-size:13px}table{border-collapse:collapse;margin:6px 0 18px}"
    "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#eef}"
    "td:first-child,th:first-child{text-align:left}caption{text-align:left;font-weight:bold;padding:4px 0}</style>"
)


def _table(caption: str, header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{rows}</table>"


def rounds_table_html(rows: list[dict[str, Any]], title: str) -> str:
    """A page of tables, rounds as rows and evaluated sets as columns, one table per score (percent)."""
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}</head><body>",
             f"<h3>{html.escape(title)}</h3>"]
    for score in SCORES:
        rounds, series = accuracy_series(rows, score)
        n = {r["name"]: r["n"] for r in rows}
        header = ["round", *[f"{name} (n={n[name]})" for name in series]]
        body = [[str(rnd), *[_pct(series[name][i]) for name in series]] for i, rnd in enumerate(rounds)]
        parts.append(_table(f"{SCORES[score]} (%)", header, body))
    return "".join(parts) + "</body></html>"


def round_metrics_html(sets: list[tuple[str, str, dict]], title: str) -> str:
    """A page with, per evaluated set, its headline scores, per-class precision/recall/F1 and count matrix."""
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}</head><body>",
             f"<h3>{html.escape(title)}</h3>",
             "<p>Precision is &ndash; for a class never predicted, recall for a class without samples, "
             "F1 (2TP/(2TP+FP+FN)) only for a class absent from both; such classes are left out of the means.</p>"]
    for name, kind, m in sets:
        parts.append(f"<h4>{html.escape(name)} ({kind}): n={m['n']}, accuracy {_pct(m['accuracy'])}%, "
                     f"mean class accuracy {_pct(m['mean_class_accuracy'])}%, macro F1 {_num(m.get('macro_f1'))}</h4>")
        if "per_class" not in m:  # written before per-class scores existed (an older cross-data-set result)
            parts.append("<p>no per-class scores in this result; rebuild it to see them</p>")
            continue
        classes = list(m["per_class"])
        body = [[html.escape(c), str(s["support"]), str(s["predicted"]), _num(s["precision"]), _num(s["recall"]),
                 _num(s["f1"])] for c, s in m["per_class"].items()]
        parts.append(_table("per class", ["class", "support", "predicted", "precision", "recall", "F1"], body))
        cm = m["confusion_matrix"]
        body = [[html.escape(c), *map(str, cm[i])] for i, c in enumerate(classes)]
        parts.append(_table("counts: rows true class, columns predicted", ["true \\ predicted", *classes], body))
    return "".join(parts) + "</body></html>"


def write_round_report(
    rnd: int, metrics: dict[str, Any], cross: dict[str, dict[str, Any]], earlier_dirs: Sequence[str | Path],
    name: str, out_png: str | Path, out_rounds_html: str | Path, out_round_html: str | Path,
) -> list[dict[str, Any]]:
    """Accuracy-per-round plot and table over rounds 0..rnd (earlier ones read from disk) and this round's tables."""
    rows = []
    for k, d in enumerate(earlier_dirs):
        rows += metric_rows(k, *load_round(d, list(cross)))
    rows += metric_rows(rnd, metrics, cross)
    rounds, series = accuracy_series(rows)
    accuracy_plot(rounds, series, out_png, title=f"{name}: accuracy per round")
    with atomic_path(out_rounds_html) as tmp:
        tmp.write_text(rounds_table_html(rows, f"{name}: scores per round (rounds 0-{rnd})"))
    with atomic_path(out_round_html) as tmp:
        tmp.write_text(round_metrics_html(evaluated_sets(metrics, cross), f"{name} round {rnd}: metrics per class"))
    return rows


def point_density_figure(
    *, faces_path: str | Path, points_path: str | Path, dataset: str, rnd: int, out_png: str | Path,
    sigma: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plot a round's mined points over the mean training face, per class and all together; return densities, counts."""
    faces = read_faces(faces_path)
    points, _ = read_table(points_path)
    idx = points["index"]
    h, w = faces.images.shape[1:3]
    sigma = default_sigma(h) if sigma is None else sigma
    dens, counts = class_densities(points["x"], points["y"], faces.labels[idx], len(CLASSES), h, w, sigma)
    density_grid(mean_grey_face(faces.images, idx), dens, [*CLASSES, "all"], counts.tolist(), out_png,
                 title=f"{dataset} round {rnd}: mined points over the mean training face (Gaussian sigma {sigma:g} px)")
    return dens, counts
