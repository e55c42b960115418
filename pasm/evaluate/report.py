"""What a reader of a run looks at: accuracy over rounds and metric tables as HTML.

Functions here turn metrics dicts into rows, series, HTML and pictures; the evaluate stage writes
them beside metrics.json for Snakemake's report.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any, Sequence

from pasm.data.atomic import atomic_path
from pasm.evaluate.plots import accuracy_plot

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


def cross_by_round(results: Sequence[dict[str, Any]]) -> dict[int, dict[str, dict[str, Any]]]:
    """Cross-data-set results (cross_evaluate's metrics.json contents) by round, then by target."""
    out: dict[int, dict[str, dict[str, Any]]] = {}
    for result in results:
        out.setdefault(int(result["round"]), {})[result["target"]] = result
    return out


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
    "td:first-child,th:first-child{text-align:left}"
    "caption{text-align:left;font-weight:bold;padding:4px 0}</style>"
)


def _table(caption: str, header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    rows = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body)
    return f"<table><caption>{html.escape(caption)}</caption><tr>{head}</tr>{rows}</table>"


def rounds_table_html(rows: list[dict[str, Any]], title: str) -> str:
    """A page of tables, rounds as rows and evaluated sets as columns, one table per score (percent)."""
    parts = [
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}</head><body>",
        f"<h3>{html.escape(title)}</h3>",
    ]
    for score in SCORES:
        rounds, series = accuracy_series(rows, score)
        n = {r["name"]: r["n"] for r in rows}
        header = ["round", *[f"{name} (n={n[name]})" for name in series]]
        body = [[str(rnd), *[_pct(series[name][i]) for name in series]] for i, rnd in enumerate(rounds)]
        parts.append(_table(f"{SCORES[score]} (%)", header, body))
    return "".join(parts) + "</body></html>"


def round_metrics_html(
    sets: list[tuple[str, str, dict]], title: str, pictures: Sequence[tuple[str, bytes]] = ()
) -> str:
    """A page with, per evaluated set, its headline scores, per-class precision/recall/F1 and count
    matrix, then the given (caption, PNG bytes) pictures, embedded."""
    parts = [
        f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>{_STYLE}</head><body>",
        f"<h3>{html.escape(title)}</h3>",
        "<p>Precision is &ndash; for a class never predicted, recall for a class without samples, "
        "F1 (2TP/(2TP+FP+FN)) only for a class absent from both; such classes are left out of the means.</p>",
    ]
    for name, kind, m in sets:
        parts.append(
            f"<h4>{html.escape(name)} ({kind}): n={m['n']}, accuracy {_pct(m['accuracy'])}%, "
            f"mean class accuracy {_pct(m['mean_class_accuracy'])}%, macro F1 {_num(m.get('macro_f1'))}</h4>"
        )
        if "per_class" not in m:  # written before per-class scores existed (an older cross-data-set result)
            parts.append("<p>no per-class scores in this result; rebuild it to see them</p>")
            continue
        classes = list(m["per_class"])
        body = [
            [
                html.escape(c),
                str(s["support"]),
                str(s["predicted"]),
                _num(s["precision"]),
                _num(s["recall"]),
                _num(s["f1"]),
            ]
            for c, s in m["per_class"].items()
        ]
        parts.append(
            _table("per class", ["class", "support", "predicted", "precision", "recall", "F1"], body)
        )
        cm = m["confusion_matrix"]
        body = [[html.escape(c), *map(str, cm[i])] for i, c in enumerate(classes)]
        parts.append(
            _table("counts: rows true class, columns predicted", ["true \\ predicted", *classes], body)
        )
    for caption, png in pictures:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f"<h4>{html.escape(caption)}</h4>"
            f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
        )
    return "".join(parts) + "</body></html>"


def write_round_report(
    metrics: dict[str, Any],
    cross: dict[str, dict[str, Any]],
    earlier: Sequence[tuple[dict[str, Any], dict[str, dict[str, Any]]]],
    name: str,
    out_png: str | Path,
    out_rounds_html: str | Path,
    out_round_html: str | Path,
    pictures: Sequence[tuple[str, bytes]] = (),
) -> list[dict[str, Any]]:
    """Accuracy-per-round plot and table over the ``earlier`` rounds' (metrics, cross results) and
    this round's, and this round's tables with its ``pictures``."""
    rnd = int(metrics["round"])
    rows = []
    for m, c in earlier:
        rows += metric_rows(int(m["round"]), m, c)
    rows += metric_rows(rnd, metrics, cross)
    rounds, series = accuracy_series(rows)
    accuracy_plot(rounds, series, out_png, title=f"{name}: accuracy per round")
    with atomic_path(out_rounds_html) as tmp:
        tmp.write_text(rounds_table_html(rows, f"{name}: scores per round (rounds 0-{rnd})"))
    with atomic_path(out_round_html) as tmp:
        tmp.write_text(
            round_metrics_html(
                evaluated_sets(metrics, cross), f"{name} round {rnd}: metrics per class", pictures
            )
        )
    return rows
