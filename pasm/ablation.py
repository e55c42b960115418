"""The paper's ablations (Tables 6-7, Figs. 7-8) plus the seeded search, each trained like PASM
round 1 from the same round-0 model, and the table that puts them next to the paper's numbers.

Variant names (results/{ds}/ablation/{variant}/):
  random_erasing   Zhong et al.: random rectangles, cross-entropy only (Table 6)
  adv_erasing      Wei et al.: the round-0 model's class-activation region erased, cross-entropy only (Table 6)
  pasm_noteacher   PASM round-1 masks, cross-entropy only (Table 6, "PASM w/o teacher")
  pasm_seeded      PASM round 1 with points from the seeded search instead of the full DE (Eq. 4)
  cross_network    round-1 masks mined by the main backbone, learnt by another one, cross-entropy only (Table 7)
  mask_size_{S}    PASM round 1 with an S x S mask (Fig. 7)
  beta_{b}         PASM round 1 with beta = b in Eq. 4 (Fig. 8)
"""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from pasm.augment import to_input
from pasm.h5store import atomic_path, read_faces, read_table
from pasm.models import load_model
from pasm.inference import resolve_device
from pasm.stages import fit_student, train_rows

log = logging.getLogger(__name__)

# Test accuracies (%) the paper reports for one round with ResNet-34 (Table 6: no teacher, no
# iteration; Table 7: ResNet-34 mining, VGG-16 training) and PASM's final result (abstract).
PAPER = {
    "rafdb": {"random_erasing": 85.93, "adv_erasing": 86.57, "pasm_noteacher": 86.86, "cross_network": 87.09,
              "pasm_final": 88.68},
    "fer2013": {"random_erasing": 72.92, "adv_erasing": 73.08, "pasm_noteacher": 73.24, "cross_network": 72.73,
                "pasm_final": 73.59},
}


def variant_names(ablation: dict[str, Any]) -> list[str]:
    """Every ablation variant a config asks for, including one per swept mask size and beta."""
    return ([*ablation["variants"]] + [f"mask_size_{s}" for s in ablation["mask_sizes"]]
            + [f"beta_{b:g}" for b in ablation["betas"]])


# --------------------------------------------------------------------------- erasing, on arrays


def random_erasing(x: torch.Tensor, generator: torch.Generator, probability: float,
                   area: Sequence[float], aspect: Sequence[float]) -> torch.Tensor:
    """Zhong et al.'s random erasing on a float (B, 3, H, W) batch of 0..255 values: with the given
    probability per image, one rectangle of area fraction U(area) and log-uniform aspect ratio
    U(aspect) (clipped to the image) at a uniform position is filled with uniform random values."""
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator)
    frac = area[0] + (area[1] - area[0]) * u[:, 0]
    ratio = torch.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * u[:, 1])
    eh = torch.sqrt(frac * h * w * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(frac * h * w / ratio).round().clamp(1, w).long()
    top = (u[:, 2] * (h - eh + 1)).long()
    left = (u[:, 3] * (w - ew + 1)).long()
    erase = u[:, 4] < probability
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    inside = (((rows >= top[:, None]) & (rows < (top + eh)[:, None]))[:, :, None]
              & ((cols >= left[:, None]) & (cols < (left + ew)[:, None]))[:, None, :] & erase[:, None, None])
    noise = torch.rand(x.shape, generator=generator) * 255.0
    return torch.where(inside[:, None].to(x.device), noise.to(x.device), x)


class RandomErasing:
    """random_erasing with fixed settings, in the (batch, generator) form the training loop calls."""

    def __init__(self, probability: float, area: Sequence[float], aspect: Sequence[float]) -> None:
        self.probability, self.area, self.aspect = probability, tuple(area), tuple(aspect)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return random_erasing(x, generator, self.probability, self.area, self.aspect)


def feature_layer(model: torch.nn.Module, arch: str) -> torch.nn.Module:
    """The last convolutional stage, whose activations give the class activation map."""
    if arch == "compact":
        return model.blocks
    if arch.startswith("resnet"):
        return model.layer4
    if arch == "vgg16":
        return model.features
    raise ValueError(f"no class activation layer known for arch {arch!r}")


def class_activation_maps(model: torch.nn.Module, arch: str, images: np.ndarray, labels: np.ndarray,
                          mean: Sequence[float], std: Sequence[float], *, batch_size: int = 50,
                          device: str = "cpu") -> np.ndarray:
    """(N, H, W) float32 Grad-CAM of each image's true class, upsampled to the image and scaled to
    max 1 (all zero where no activation supports the class); the region Wei et al. erase."""
    model.eval()
    layer = feature_layer(model, arch)
    acts: list[torch.Tensor] = []
    hook = layer.register_forward_hook(lambda _m, _i, out: acts.append(out))
    out = []
    try:
        for s in range(0, len(images), batch_size):
            acts.clear()
            x = to_input(torch.from_numpy(np.ascontiguousarray(images[s:s + batch_size])).to(device), mean, std)
            y = torch.from_numpy(np.asarray(labels[s:s + batch_size], dtype=np.int64)).to(device)
            logits = model(x)
            feat = acts[-1]
            (grad,) = torch.autograd.grad(logits.gather(1, y[:, None]).sum(), feat)
            cam = F.relu((grad.mean(dim=(2, 3), keepdim=True) * feat).sum(1, keepdim=True))
            cam = F.interpolate(cam, size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
            peak = cam.flatten(1).max(1).values.clamp_min(1e-12)[:, None, None]
            out.append((cam / peak).detach().cpu().numpy().astype(np.float32))
    finally:
        hook.remove()
    return np.concatenate(out) if out else np.zeros((0, *images.shape[1:3]), np.float32)


def erase_regions(images: np.ndarray, maps: np.ndarray, threshold: float, fill: Sequence[int]) -> np.ndarray:
    """Copy of uint8 (N, H, W, 3) images with pixels where maps > threshold set to the fill colour."""
    out = images.copy()
    out[maps > threshold] = np.asarray(fill, dtype=np.uint8)
    return out


# --------------------------------------------------------------------------- stage


def train_variant(variant: str, faces_path: str | Path, round0_path: str | Path, name: str, config: dict[str, Any],
                  out_model: str | Path, out_log: str | Path, *, masked_path: str | Path | None = None,
                  init_path: str | Path | None = None, progress: bool = True) -> None:
    """Train one ablation variant with PASM round 1's budget from the round-0 model (or, for
    cross_network, from the other backbone's round-0 model ``init_path``)."""
    method, abl = config["method"], config["method"]["ablation"]
    faces = read_faces(faces_path)
    inputs = [p for p in (faces_path, round0_path, masked_path, init_path) if p]
    common = dict(inputs=inputs, stage=f"ablation/{variant}", progress=progress)
    if variant in ("random_erasing", "adv_erasing"):
        rows = train_rows(faces, config["datasets"][name], config["seed"])
        images, labels = faces.images[rows], faces.labels[rows]
        transform = None
        if variant == "random_erasing":
            re = abl["random_erasing"]
            transform = RandomErasing(re["probability"], re["area"], re["aspect"])
        else:
            model, meta = load_model(round0_path, resolve_device(config["device"]))
            maps = class_activation_maps(model, meta["arch"], images, labels, meta["mean"], meta["std"],
                                         device=resolve_device(config["device"]))
            fill = np.rint(255 * np.asarray(meta["mean"])).astype(np.uint8)  # zero after normalisation
            images = erase_regions(images, maps, abl["adv_erasing"]["threshold"], fill)
            log.info("adversarial erasing: %.1f%% of pixels erased on average",
                     100 * float((maps > abl["adv_erasing"]["threshold"]).mean()))
        fit_student(faces, images, labels, rows, round0_path, name, config, 1, out_model, out_log, alpha=1.0,
                    beta=0.0, student_transform=transform, extra_meta={"ablation": variant}, **common)
        return
    if masked_path is None:
        raise ValueError(f"ablation {variant!r} needs masked images")
    masked, _ = read_table(masked_path)
    beta = {"pasm_noteacher": 0.0, "cross_network": 0.0}.get(variant, method["beta"])
    if variant.startswith("beta_"):
        beta = float(variant[len("beta_"):])
    start = init_path if variant == "cross_network" else round0_path
    fit_student(faces, masked["images"], masked["labels"], masked["index"], start, name, config, 1, out_model,
                out_log, alpha=method["alpha"], beta=beta, extra_meta={"ablation": variant}, **common)


# --------------------------------------------------------------------------- table


def _seconds(history: list[dict[str, Any]]) -> float:
    return float(sum(h["seconds"] for h in history))


def ablation_table(name: str, fmt: str, main_split: str, rows: list[dict[str, Any]],
                   out_md: str | Path, out_csv: str | Path) -> list[dict[str, Any]]:
    """Write the side-by-side table (markdown and CSV). Each row: method, metrics path, model path,
    and the search seconds behind its points (0 when it uses none of its own)."""
    paper = PAPER.get(fmt, {})
    table = []
    for row in rows:
        metrics = json.loads(Path(row["metrics"]).read_text())
        split = metrics["splits"][main_split]
        history = torch.load(row["model"], map_location="cpu", weights_only=True)["meta"].get("history", [])
        table.append({
            "method": row["method"],
            f"{main_split}_accuracy": round(100 * split["accuracy"], 2),
            f"{main_split}_mean_class_accuracy": round(100 * split["mean_class_accuracy"], 2),
            "paper": paper.get(row.get("paper_key", row["method"]), ""),
            "search_s": round(row.get("search_seconds", 0.0), 1),
            "train_s": round(_seconds(history), 1),
        })
    columns = list(table[0]) if table else []
    with atomic_path(out_csv) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(table)
    lines = [f"# {name}: ablations ({main_split} accuracy, %)", "",
             "| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in table]
    lines += ["", "paper: the paper's ResNet-34 numbers at 224 px (Tables 6-7, abstract) for this data set;",
              "blank where the paper has none. Budgets here follow this run's config, not the paper's."]
    with atomic_path(out_md) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return table


def make_ablation_table(name: str, config: dict[str, Any], variants: Sequence[str], metrics: Sequence[str],
                        models: Sequence[str], points: Sequence[str], out_md: str | Path,
                        out_csv: str | Path) -> list[dict[str, Any]]:
    """Rows for round 0, PASM round 1 and each variant (inputs in that order), with the search
    time behind each one's masks, written by ablation_table."""
    ds = config["datasets"][name]
    _, round1_attrs = read_table(points[0])
    pasm_search = float(round1_attrs.get("search_seconds", 0.0))
    seeded_search = float(read_table(points[1])[1].get("seconds", 0.0)) if len(points) > 1 else 0.0
    labels = ["round 0 (pretrained)", "PASM round 1", *variants]
    rows = []
    for label, m, p in zip(labels, metrics, models):
        search = 0.0
        if label == "pasm_seeded":
            search = seeded_search
        elif label not in ("round 0 (pretrained)", "random_erasing", "adv_erasing"):
            search = pasm_search
        rows.append({"method": label, "metrics": m, "model": p, "search_seconds": search})
    return ablation_table(name, ds["format"], ds["eval_splits"][0], rows, out_md, out_csv)
