"""Stages of workflow/rules/train.smk: round 0 pretraining (Eq. 1) and round r distillation (Eq. 4),
and what their model files record."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pasm.data.h5store import Faces, read_faces, read_masked
from pasm.data.labels import CLASSES
from pasm.nn.inference import resolve_device
from pasm.nn.models import IMAGENET_MEAN, IMAGENET_STD, build_model, file_sha256, load_model, save_model
from pasm.train.training import Resume, TrainParams, train
from pasm.workflow.common import round_seed, train_rows
from pasm.workflow.placement import where_made


def model_meta(
    faces: Faces, network: dict[str, Any], dataset: str, rnd: int, params: dict[str, Any]
) -> dict[str, Any]:
    """What a model file records: its network, classes, input, how its faces were made, its job's params."""
    return {
        "arch": network["arch"],
        "width": network["width"],
        "classes": list(CLASSES),
        "image_size": int(faces.images.shape[1]),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "alignment": faces.attrs["preparation"],
        "dataset": dataset,
        "round": rnd,
        "params": params,
    }


def val_set(faces: Faces, val_split: str | None) -> tuple[Any, np.ndarray] | None:
    """Images (read on demand) and labels of the validation split, or None without one."""
    if not val_split:
        return None
    rows = faces.rows(val_split)
    return faces.images.subset(rows), faces.labels[rows]


def resume_state(
    out_model: str | Path, stage: str, inputs: Sequence[str | Path], settings: dict[str, Any]
) -> Resume:
    """Per-epoch training state kept beside the job's model file but not declared as an output
    (Snakemake deletes declared outputs before a rerun), keyed by the SHA-256 of the job's input
    files and settings, so a state left by other inputs or parameters is never continued."""
    blob = json.dumps(
        {"stage": stage, "inputs": [file_sha256(p) for p in inputs], "settings": settings},
        sort_keys=True,
        default=str,
    )
    return Resume(
        Path(out_model).with_name(f"{Path(out_model).stem}.train_state.pt"),
        hashlib.sha256(blob.encode()).hexdigest(),
    )


def finish_model(out_model: str | Path, model: torch.nn.Module, meta: dict[str, Any], resume: Resume) -> None:
    """Write the declared model file once, atomically, then drop the no longer needed training state."""
    save_model(out_model, model, meta)
    Path(resume.path).unlink(missing_ok=True)


def pretrain(
    *,
    faces: str,
    model: str,
    train_log: str,
    ds: str,
    network: dict[str, Any],
    schedule: dict[str, Any],
    train_split: str,
    train_subset: int | None,
    val_split: str | None,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """Round 0: train ``network`` (arch, width, pretrained, weights_file; from scratch or ImageNet
    weights) with cross-entropy (Eq. 1) on the training rows, with the ``schedule`` block."""
    params = dict(
        model=network,
        schedule=schedule,
        train_split=train_split,
        train_subset=train_subset,
        val_split=val_split,
        seed=seed,
        device=device,
    )
    torch_device = resolve_device(device)
    data = read_faces(faces)
    rows = train_rows(data, train_split, train_subset, seed)
    torch.manual_seed(seed)
    net = build_model(
        network["arch"], len(CLASSES), network["width"], network["pretrained"], network["weights_file"]
    )
    train_params = TrainParams.from_config(schedule, round_seed(seed, "pretrain", 0))
    meta = model_meta(data, network, ds, 0, params)
    meta.update(pretrained=network["pretrained"])
    resume = resume_state(model, "pretrain", [faces], params)
    history = train(
        net,
        data.images.subset(rows),
        data.labels[rows],
        train_params,
        mean=meta["mean"],
        std=meta["std"],
        device=torch_device,
        val=val_set(data, val_split),
        log_csv=train_log,
        progress=progress,
        resume=resume,
    )
    meta.update(history=history, placement=where_made(device))
    finish_model(model, net, meta, resume)


def finetune(
    *,
    faces: str,
    masked: str,
    teacher: str,
    model: str,
    train_log: str,
    ds: str,
    r: int,
    schedule: dict[str, Any],
    alpha: float,
    beta: float,
    val_split: str | None,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """Round r: the student (initialised from the teacher) trained on the masked images with Eq. 4."""
    data = read_faces(faces)
    table = read_masked(masked)
    fit_student(
        data,
        table["images"],
        table["labels"],
        table["index"],
        StudentSettings(schedule, alpha, beta, val_split, seed, device),
        init=teacher,
        model=model,
        train_log=train_log,
        ds=ds,
        r=r,
        inputs=[faces, masked, teacher],
        stage="finetune",
        progress=progress,
    )


@dataclass(frozen=True)
class StudentSettings:
    """How a student is trained: its schedule, Eq. 4's weights, validation, seed and device."""

    schedule: dict[str, Any]
    alpha: float
    beta: float  # 0: cross-entropy alone, no teacher (Table 6's "w/o teacher")
    val_split: str | None
    seed: int
    device: str

    def as_params(self) -> dict[str, Any]:
        """The settings as the plain values a model file records."""
        return asdict(self)


def fit_student(
    faces: Faces,
    images: Any,
    labels: np.ndarray,
    rows: np.ndarray,
    settings: StudentSettings,
    *,
    init: str | Path,
    model: str | Path,
    train_log: str | Path,
    ds: str,
    r: int,
    inputs: Sequence[str | Path],
    stage: str,
    transform: Any = None,
    extra_meta: dict[str, Any] | None = None,
    progress: bool = True,
) -> None:
    """Train a student that starts from the model file ``init`` on ``images`` (rows ``rows`` of
    faces.h5): Eq. 4 with that model as frozen teacher on the clean rows when beta > 0,
    cross-entropy alone when beta == 0; ``transform`` augments the student's batches."""
    params = settings.as_params()
    torch_device = resolve_device(settings.device)
    student, imeta = load_model(init, torch_device)
    teacher = copy.deepcopy(student) if settings.beta > 0 else None  # starts from the teacher's weights
    train_params = TrainParams.from_config(settings.schedule, round_seed(settings.seed, "finetune", r))
    meta = model_meta(faces, imeta, ds, r, params)
    meta.update(**(extra_meta or {}))
    resume = resume_state(model, stage, inputs, {**params, "extra": extra_meta})
    history = train(
        student,
        images,
        labels,
        train_params,
        mean=imeta["mean"],
        std=imeta["std"],
        device=torch_device,
        teacher=teacher,
        clean_images=faces.images.subset(rows) if teacher is not None else None,
        alpha=settings.alpha,
        beta=settings.beta,
        val=val_set(faces, settings.val_split),
        log_csv=train_log,
        progress=progress,
        resume=resume,
        student_transform=transform,
    )
    meta.update(
        history=history,
        teacher_sha256=file_sha256(init),
        teacher_path=str(init),
        alpha=settings.alpha,
        beta=settings.beta,
        placement=where_made(settings.device),
    )
    finish_model(model, student, meta, resume)
