"""The paper's ablations (Tables 6-7, Figs. 7-8) plus the seeded search, each trained like PASM
round 1 from the same round-0 model, and the table that puts them next to the paper's numbers.

What each variant is lives in one frozen table (``variant_table``), read by the rules' input
functions and params (workflow/rules/ablation.smk), by training (``ablation_train``) and by the table:
  random_erasing   Zhong et al.: random rectangles, cross-entropy only (Table 6)
  adv_erasing      Wei et al.: the round-0 model's class-activation region erased, cross-entropy only
                   (Table 6)
  pasm_noteacher   PASM round-1 masks, cross-entropy only (Table 6, "PASM w/o teacher")
  pasm_seeded      PASM round 1 with points from the seeded search instead of the full DE (Eq. 4)
  cross_network    round-1 masks mined by the main backbone, learnt by another one, cross-entropy only
                   (Table 7)
  mask_size_{S}    PASM round 1 with an S x S mask (Fig. 7)
  beta_{b}         PASM round 1 with beta = b in Eq. 4 (Fig. 8)
"""

from __future__ import annotations

import csv as csvlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Sequence

import numpy as np
import torch

from pasm.data.atomic import atomic_path
from pasm.data.h5store import read_faces, read_masked, read_table, write_table
from pasm.data.rows import H5Rows
from pasm.nn.inference import resolve_device
from pasm.nn.models import load_model
from pasm.train.erasing import RandomErasing, class_activation_maps, erase_regions
from pasm.workflow.common import train_rows
from pasm.workflow.train import StudentSettings, fit_student

log = logging.getLogger(__name__)

# Test accuracies (%) the paper reports for one round with ResNet-34 (Table 6: no teacher, no
# iteration; Table 7: ResNet-34 mining, VGG-16 training) and PASM's final result (abstract).
PAPER = {
    "rafdb": {
        "random_erasing": 85.93,
        "adv_erasing": 86.57,
        "pasm_noteacher": 86.86,
        "cross_network": 87.09,
        "pasm_final": 88.68,
    },
    "fer2013": {
        "random_erasing": 72.92,
        "adv_erasing": 73.08,
        "pasm_noteacher": 73.24,
        "cross_network": 72.73,
        "pasm_final": 73.59,
    },
}


@dataclass(frozen=True)
class Variant:
    """One ablation variant: what it trains on, from which model, and with which loss."""

    name: str
    images: str  # "clean" (erased on the fly), "round1_masks" (PASM round 1's) or "own_masks"
    points: str | None  # points behind its masks: "round1", "seeded" (its own search) or None
    learner: str = (
        "round0"  # the model it starts from: "round0" or "cross_network" (the other backbone's round 0)
    )
    mask_size: int | None = None  # own masks' side S (None: the configured mask size)
    alpha: float | None = None  # Eq. 4's alpha (None: method.alpha)
    beta: float | None = None  # Eq. 4's beta (None: method.beta; 0: cross-entropy only, no teacher)
    erasing: str | None = None  # "random_erasing" or "adv_erasing": the method.ablation block it reads

    def as_params(self) -> dict[str, Any]:
        """Plain values, for a rule's params."""
        return asdict(self)


FIXED_VARIANTS = MappingProxyType(
    {
        "random_erasing": Variant(
            "random_erasing", "clean", None, alpha=1.0, beta=0.0, erasing="random_erasing"
        ),
        "adv_erasing": Variant("adv_erasing", "clean", None, alpha=1.0, beta=0.0, erasing="adv_erasing"),
        "pasm_noteacher": Variant("pasm_noteacher", "round1_masks", "round1", beta=0.0),
        "pasm_seeded": Variant("pasm_seeded", "own_masks", "seeded"),
        "cross_network": Variant(
            "cross_network", "round1_masks", "round1", learner="cross_network", beta=0.0
        ),
    }
)


def variant_table(ablation: dict[str, Any]) -> MappingProxyType[str, Variant]:
    """Every ablation variant a config's method.ablation block asks for, by name, in table order:
    the listed variants, then one per swept mask size and beta."""
    table = {name: FIXED_VARIANTS[name] for name in ablation["variants"]}
    for s in ablation["mask_sizes"]:
        table[f"mask_size_{s}"] = Variant(f"mask_size_{s}", "own_masks", "round1", mask_size=int(s))
    for b in ablation["betas"]:
        table[f"beta_{b:g}"] = Variant(f"beta_{b:g}", "round1_masks", "round1", beta=float(b))
    return MappingProxyType(table)


def variant_names(ablation: dict[str, Any]) -> list[str]:
    """The names of variant_table(ablation), in order."""
    return list(variant_table(ablation))


# --------------------------------------------------------------------------- stage


ERASE_BLOCK = 500
"""Faces erased per Grad-CAM pass and write (adversarial erasing): memory holds this many; a
multiple of the Grad-CAM batch (50), so the batches are those of one pass over all faces."""


def write_erased(
    images: Any,
    labels: np.ndarray,
    model_path: str | Path,
    threshold: float,
    device: str,
    out_path: str | Path,
) -> None:
    """Adversarial erasing (Table 6): each face with its Grad-CAM region above ``threshold`` filled
    with the mean colour (zero after normalisation), written to ``out_path`` block by block."""
    model, meta = load_model(model_path, resolve_device(device))
    fill = np.rint(255 * np.asarray(meta["mean"])).astype(np.uint8)
    counts = {"erased": 0, "total": 0}

    def blocks():
        for start in range(0, len(images), ERASE_BLOCK):
            block = np.asarray(images[start : start + ERASE_BLOCK])
            maps = class_activation_maps(
                model,
                meta["arch"],
                block,
                labels[start : start + ERASE_BLOCK],
                meta["mean"],
                meta["std"],
                device=resolve_device(device),
            )
            counts["erased"] += int((maps > threshold).sum())
            counts["total"] += maps.size
            yield erase_regions(block, maps, threshold, fill)

    write_table(out_path, {}, images=(tuple(images.shape), blocks()))
    erased, total = counts["erased"], counts["total"]
    log.info("adversarial erasing: %.1f%% of pixels erased on average", 100 * erased / max(total, 1))


def ablation_train(
    *,
    faces: str,
    round0: str,
    model: str,
    train_log: str,
    ds: str,
    spec: dict[str, Any],
    schedule: dict[str, Any],
    alpha: float,
    beta: float,
    erasing: dict[str, Any] | None,
    train_split: str,
    train_subset: int | None,
    val_split: str | None,
    seed: int,
    device: str = "cpu",
    masked: str | None = None,
    init: str | None = None,
    progress: bool = True,
) -> None:
    """Train one variant (``spec``: ``Variant.as_params()``) with PASM round 1's ``schedule`` from the
    round-0 model, or from the other backbone's round-0 model ``init`` (learner cross_network).
    ``alpha``/``beta`` are the variant's resolved loss weights, ``erasing`` its erasing block."""
    v = Variant(**spec)
    data = read_faces(faces)
    settings = StudentSettings(schedule, alpha, beta, val_split, seed, device)
    job = dict(
        model=model,
        train_log=train_log,
        ds=ds,
        r=1,
        inputs=[p for p in (faces, round0, masked, init) if p],
        stage=f"ablation/{v.name}",
        extra_meta={"ablation": v.name},
        progress=progress,
    )
    if v.images == "clean":
        rows = train_rows(data, train_split, train_subset, seed)
        images, labels = data.images.subset(rows), data.labels[rows]
        transform = None
        if v.erasing == "random_erasing":
            transform = RandomErasing(erasing["probability"], erasing["area"], erasing["aspect"])
        elif v.erasing == "adv_erasing":
            erased_path = Path(model).with_name(f"{Path(model).stem}.erased.h5")
            write_erased(images, labels, round0, erasing["threshold"], device, erased_path)
            images = H5Rows(erased_path)
        fit_student(data, images, labels, rows, settings, init=round0, transform=transform, **job)
        if v.erasing == "adv_erasing":
            erased_path.unlink(missing_ok=True)
        return
    if masked is None:
        raise ValueError(f"ablation {v.name!r} needs masked images")
    table = read_masked(masked)
    start = init if v.learner == "cross_network" else round0
    fit_student(data, table["images"], table["labels"], table["index"], settings, init=start, **job)


# --------------------------------------------------------------------------- table


def _seconds(history: list[dict[str, Any]]) -> float:
    return float(sum(h["seconds"] for h in history))


def write_ablation_table(
    name: str, fmt: str, main_split: str, rows: list[dict[str, Any]], out_md: str | Path, out_csv: str | Path
) -> list[dict[str, Any]]:
    """Write the side-by-side table (markdown and CSV). Each row: method, metrics path, model path,
    and the search seconds behind its points (0 when it uses none of its own)."""
    paper = PAPER.get(fmt, {})
    table = []
    for row in rows:
        metrics = json.loads(Path(row["metrics"]).read_text())
        split = metrics["splits"][main_split]
        history = torch.load(row["model"], map_location="cpu", weights_only=True)["meta"].get("history", [])
        table.append(
            {
                "method": row["method"],
                f"{main_split}_accuracy": round(100 * split["accuracy"], 2),
                f"{main_split}_mean_class_accuracy": round(100 * split["mean_class_accuracy"], 2),
                "paper": paper.get(row.get("paper_key", row["method"]), ""),
                "search_s": round(row.get("search_seconds", 0.0), 1),
                "train_s": round(_seconds(history), 1),
            }
        )
    columns = list(table[0]) if table else []
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csvlib.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(table)
    lines = [
        f"# {name}: ablations ({main_split} accuracy, %)",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + " --- |" * len(columns),
    ]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in table]
    lines += [
        "",
        "paper: the paper's ResNet-34 numbers at 224 px (Tables 6-7, abstract) for this data set;",
        "blank where the paper has none. Budgets here follow this run's config, not the paper's.",
    ]
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return table


def ablation_table(
    *,
    metrics: Sequence[str],
    models: Sequence[str],
    points: Sequence[str],
    md: str,
    csv: str,
    ds: str,
    fmt: str,
    main_split: str,
    variants: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Rows for round 0, PASM round 1 and each variant (``Variant.as_params()``; inputs in that
    order), with the search time behind each one's masks, written by write_ablation_table.
    ``points``: round 1's points.h5, then the seeded variant's when it is configured."""
    _, round1_attrs = read_table(points[0])
    search = {"round1": float(round1_attrs.get("search_seconds", 0.0)), None: 0.0}
    if len(points) > 1:
        search["seeded"] = float(read_table(points[1])[1].get("seconds", 0.0))
    rows = [
        {"method": "round 0 (pretrained)", "metrics": metrics[0], "model": models[0], "search_seconds": 0.0},
        {
            "method": "PASM round 1",
            "metrics": metrics[1],
            "model": models[1],
            "search_seconds": search["round1"],
        },
    ]
    for v, m, p in zip(variants, metrics[2:], models[2:]):
        rows.append({"method": v["name"], "metrics": m, "model": p, "search_seconds": search[v["points"]]})
    return write_ablation_table(ds, fmt, main_split, rows, md, csv)
