"""Pictures a person would rather see than read: masked samples, confusion matrices, accuracy per
round, point densities."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pasm.data.atomic import atomic_path  # noqa: E402


def _save(fig: plt.Figure, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def masked_grid(
    clean: np.ndarray,
    masked: np.ndarray,
    labels: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    classes: Sequence[str],
    path: str | Path,
    per_class: int = 4,
    title: str = "",
) -> None:
    """Grid like the paper's Fig. 3: one row per class, each clean image beside its masked copy (point
    in red)."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in range(len(classes))]
    rows = [(c, p) for c, p in enumerate(picks) if len(p)]
    if not rows:
        raise ValueError("no images to show")
    fig, axes = plt.subplots(
        len(rows), 2 * per_class, figsize=(1.0 * 2 * per_class, 1.05 * len(rows)), squeeze=False
    )
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.axis("off")
    for r, (c, idx) in enumerate(rows):
        for j, i in enumerate(idx):
            for k, img in enumerate((clean[i], masked[i])):
                ax = axes[r, 2 * j + k]
                ax.axis("on")
                ax.imshow(img, interpolation="nearest")
                if k == 1:
                    ax.plot([x[i]], [y[i]], "r.", markersize=3)
                if r == 0:
                    ax.set_title("clean" if k == 0 else "masked", fontsize=7)
        axes[r, 0].set_ylabel(classes[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


def confusion_plot(cm: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix (the paper's Fig. 5): fraction of each true class, count below it.

    Colour and fraction are the row-normalised matrix; a true class without samples is left blank.
    """
    cm = np.asarray(cm, dtype=np.int64)
    support = cm.sum(1, keepdims=True)
    norm = np.divide(cm, support, out=np.zeros(cm.shape), where=support > 0)
    fig, ax = plt.subplots(figsize=(0.75 * len(classes) + 1.6, 0.68 * len(classes) + 1.4))
    ax.imshow(np.where(support > 0, norm, np.nan), cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        if not support[i, 0]:
            ax.text(
                len(classes) / 2 - 0.5,
                i,
                "no samples of this class",
                ha="center",
                va="center",
                fontsize=7,
                color="grey",
            )
            continue
        for j in range(len(classes)):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n({cm[i, j]})",
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), [f"{c} ({n})" for c, n in zip(classes, support[:, 0])], fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (number of samples)")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def accuracy_plot(
    rounds: Sequence[int],
    series: dict[str, Sequence[float | None]],
    path: str | Path,
    title: str = "",
) -> None:
    """Accuracy (percent) of every split against the round (the paper's Fig. 6); None values are gaps."""
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for k, (name, values) in enumerate(series.items()):
        acc = np.array([np.nan if v is None else 100 * v for v in values], dtype=float)
        line = ax.plot(rounds, acc, marker="o", label=name)[0]
        for r, a in zip(rounds, acc):  # alternate series label above and below, so close lines stay readable
            if np.isfinite(a):
                ax.annotate(
                    f"{a:.1f}",
                    (r, a),
                    textcoords="offset points",
                    xytext=(0, 5 if k % 2 == 0 else -10),
                    ha="center",
                    fontsize=6,
                    color=line.get_color(),
                )
    ax.set_xticks(list(rounds))
    ax.set_xlabel("round (0 = pretrained)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title, fontsize=9)
    _save(fig, path)


def density_grid(
    face: np.ndarray,
    densities: np.ndarray,
    names: Sequence[str],
    counts: Sequence[int],
    path: str | Path,
    title: str = "",
    cols: int = 4,
) -> None:
    """One panel per density: the grey face with the density as a heat map (opacity grows with density).

    The face is contrast-stretched so its features show through; each panel's density is scaled to
    its own maximum, so it shows where that group's points are, not how many.
    """
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.35 * rows), squeeze=False)
    heat = plt.get_cmap("inferno")
    lo, hi = float(face.min()), float(face.max())
    face = (face - lo) / (hi - lo) if hi > lo else np.full_like(face, 0.5)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, dens, name, n in zip(axes.ravel(), densities, names, counts):
        ax.imshow(
            face, cmap="gray", vmin=-0.3, vmax=1.4, interpolation="bilinear"
        )  # muted, so the heat stands out
        if n:
            level = dens / dens.max()
            rgba = heat(0.25 + 0.55 * level)  # purple to orange: neither black (reads as shadow) nor white
            rgba[..., 3] = 0.9 * level**1.2  # transparent where there are few points, opaque at the peak
            ax.imshow(rgba, interpolation="bilinear")
        ax.set_title(f"{name} (n={n})", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    _save(fig, path)


def comparison_plot(
    methods: Sequence[str],
    acc_mean: Sequence[float],
    acc_sd: Sequence[float],
    diff: Sequence[float],
    ci_low: Sequence[float],
    ci_high: Sequence[float],
    reference: str,
    path: str | Path,
    title: str = "",
) -> None:
    """Two panels: accuracy (mean and standard deviation over seeds) per method, and each method's
    paired difference against the reference with its 95% interval (a bar crossing 0: no difference)."""
    y = np.arange(len(methods))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 0.45 * len(methods) + 1.6), sharey=True)
    left.barh(y, 100 * np.asarray(acc_mean), xerr=100 * np.asarray(acc_sd), color="#4c72b0", capsize=3)
    lo = min(100 * (np.asarray(acc_mean) - np.asarray(acc_sd)))
    left.set_xlim(max(0, lo - 5), min(100, max(100 * (np.asarray(acc_mean) + np.asarray(acc_sd))) + 2))
    left.set_yticks(y, methods)
    left.set_xlabel("accuracy % (mean +- sd over seeds)")
    d = 100 * np.asarray(diff)
    err = np.vstack([d - 100 * np.asarray(ci_low), 100 * np.asarray(ci_high) - d])
    right.errorbar(d, y, xerr=err, fmt="o", color="#c44e52", capsize=3)
    right.axvline(0, color="grey", lw=1)
    right.set_xlabel(f"difference to {reference}, points (95% paired bootstrap interval)")
    if title:
        fig.suptitle(title)
    _save(fig, path)


def robustness_plot(
    rows: Sequence[dict], methods: Sequence[str], clean_set: str, path: str | Path, title: str = ""
) -> None:
    """Two panels from the robustness rows: each method's accuracy drop per corruption family (bars,
    mean and sd over seeds; the clean accuracy in the legend), and its success rate per attack."""
    fams = list(dict.fromkeys(r["set"] for r in rows if r["kind"] == "family"))
    attacks = list(dict.fromkeys(r["set"] for r in rows if r["kind"] == "attack"))
    get = {(r["set"], r["method"]): r for r in rows}
    fig, (left, right) = plt.subplots(
        1, 2, figsize=(13, 0.35 * max(len(fams), 1) * len(methods) / 2 + 2.5), width_ratios=[3, 1]
    )
    height = 0.8 / len(methods)
    colours = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        clean = get.get((clean_set, m))
        label = f"{m} (clean {100 * clean['accuracy_mean']:.1f}%)" if clean else m
        y = np.arange(len(fams))[::-1] + 0.4 - (i + 0.5) * height
        left.barh(
            y,
            [100 * get[(f, m)]["drop_mean"] for f in fams],
            height=height,
            xerr=[100 * np.nan_to_num(get[(f, m)]["drop_sd"]) for f in fams],
            color=colours(i % 10),
            capsize=2,
            label=label,
        )
        ya = np.arange(len(attacks))[::-1] + 0.4 - (i + 0.5) * height
        right.barh(
            ya,
            [100 * get[(a, m)]["attack_success_mean"] for a in attacks],
            height=height,
            xerr=[100 * np.nan_to_num(get[(a, m)]["attack_success_sd"]) for a in attacks],
            color=colours(i % 10),
            capsize=2,
        )
    left.set_yticks(np.arange(len(fams))[::-1], [f.removeprefix("drop ") for f in fams])
    left.set_xlabel("accuracy drop, points (clean minus corrupted; mean +- sd over seeds)")
    left.legend(fontsize=8, loc="lower right")
    right.set_yticks(np.arange(len(attacks))[::-1], [a.removeprefix("attack ") for a in attacks])
    right.set_xlabel("one-pixel attack success rate %")
    right.set_xlim(0, 100)
    if title:
        fig.suptitle(title)
    _save(fig, path)


def corruption_examples(
    faces: np.ndarray, copies: Sequence[tuple[str, np.ndarray]], path: str | Path, title: str = ""
) -> None:
    """A grid of example faces (rows): the clean face, then each named corrupted copy (columns)."""
    cols = [("clean", faces), *copies]
    fig, axes = plt.subplots(
        len(faces), len(cols), figsize=(1.1 * len(cols), 1.2 * len(faces) + 0.6), squeeze=False
    )
    for j, (name, images) in enumerate(cols):
        for i in range(len(faces)):
            ax = axes[i, j]
            ax.imshow(images[i])
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=6, rotation=30, ha="left")
    if title:
        fig.suptitle(title, y=1.06)  # above the slanted column titles
    _save(fig, path)
