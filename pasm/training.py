"""SGD training on in-memory uint8 arrays: Eq. 1 for pretraining, Eq. 4 with a frozen teacher after."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pasm.augment import random_crop_flip, to_input
from pasm.evaluation import predict_logits
from pasm.losses import pasm_loss

log = logging.getLogger(__name__)


@dataclass
class TrainParams:
    """Optimiser, schedule and augmentation settings of one training stage (config block)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.01
    lr_milestones: list[int] = field(default_factory=lambda: [20])
    lr_gamma: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_pad: int = 8
    flip: bool = True
    seed: int = 0

    @classmethod
    def from_config(cls, block: dict[str, Any], seed: int) -> "TrainParams":
        """Build from a validated config block (pretrain or finetune)."""
        return cls(**{k: block[k] for k in cls.__dataclass_fields__ if k in block}, seed=seed)


def freeze(teacher: nn.Module) -> nn.Module:
    """Put a teacher in eval mode with gradients off: it only provides q_t in Eq. 4."""
    teacher.eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def train(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    params: TrainParams,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: str | torch.device = "cpu",
    teacher: nn.Module | None = None,
    clean_images: np.ndarray | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    log_csv: str | Path | None = None,
    progress: bool = True,
) -> list[dict[str, float]]:
    """Train `model` in place on uint8 (N, H, W, 3) images; returns the per-epoch history.

    With a teacher, `images` are the student's (masked) inputs and `clean_images` the teacher's,
    row-aligned; both get the same crop and flip in every step.
    """
    if teacher is not None and (clean_images is None or clean_images.shape != images.shape):
        raise ValueError("a teacher needs clean_images with the same shape as images")
    torch.manual_seed(params.seed)
    gen = torch.Generator().manual_seed(params.seed)
    model.to(device).train()
    if teacher is not None:
        freeze(teacher).to(device)
    opt = torch.optim.SGD(
        model.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=params.lr_milestones, gamma=params.lr_gamma)
    x_all = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
    if teacher is not None:
        x_all = torch.cat([x_all, torch.from_numpy(np.ascontiguousarray(clean_images)).permute(0, 3, 1, 2)], 1)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n = len(y_all)
    history: list[dict[str, float]] = []
    writer = None
    fh = None
    if log_csv:
        Path(log_csv).parent.mkdir(parents=True, exist_ok=True)
        fh = open(log_csv, "w", newline="")
        writer = csv.DictWriter(fh, ["epoch", "loss", "train_acc", "val_acc", "lr", "seconds", "images_per_s"])
        writer.writeheader()
    try:
        for epoch in range(1, params.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            order = torch.randperm(n, generator=gen)
            total_loss, correct, seen = 0.0, 0, 0
            lr = opt.param_groups[0]["lr"]
            bar = tqdm(
                range(0, n, params.batch_size), desc=f"epoch {epoch}/{params.epochs}", unit="batch",
                disable=not progress, mininterval=2.0, leave=False,
            )
            for start in bar:
                idx = order[start : start + params.batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on a single image
                    continue
                xb = random_crop_flip(x_all[idx].to(device).float(), params.crop_pad, params.flip, gen)
                yb = y_all[idx].to(device)
                student_x = to_input(xb[:, :3], mean, std)
                teacher_logits = None
                if teacher is not None:
                    with torch.no_grad():
                        teacher_logits = teacher(to_input(xb[:, 3:], mean, std))
                logits = model(student_x)
                loss = pasm_loss(logits, yb, teacher_logits, alpha, beta)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_loss += loss.item() * len(idx)
                correct += (logits.argmax(1) == yb).sum().item()
                seen += len(idx)
            sched.step()
            seconds = time.perf_counter() - t0
            row = {
                "epoch": epoch,
                "loss": total_loss / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "val_acc": float("nan"),
                "lr": lr,
                "seconds": round(seconds, 3),
                "images_per_s": round(seen / seconds, 1),
            }
            if val is not None and len(val[1]):
                pred = predict_logits(model, val[0], mean, std, device=device).argmax(1)
                row["val_acc"] = float((pred == val[1]).mean())
            history.append(row)
            if writer:
                writer.writerow(row)
                fh.flush()
            log.info(
                "epoch %d/%d loss %.4f train_acc %.4f val_acc %.4f lr %.5f %.1fs (%.0f img/s)",
                epoch, params.epochs, row["loss"], row["train_acc"], row["val_acc"], lr, seconds, row["images_per_s"],
            )
    finally:
        if fh:
            fh.close()
    model.eval()
    return history
