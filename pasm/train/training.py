"""SGD training on uint8 images (in memory or read batch by batch from HDF5): Eq. 1 for pretraining,
Eq. 4 with a frozen teacher after."""

from __future__ import annotations

import csv
import logging
import pickle
import time
import zipfile
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from pasm.data.rows import H5Rows
from pasm.nn.inference import autocast, autocast_dtype, predict_logits
from pasm.nn.inputs import to_input
from pasm.train.augment import CropFlip
from pasm.train.batches import BatchReader, prefetched
from pasm.train.losses import pasm_loss

log = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "loss", "train_acc", "val_acc", "lr", "seconds", "images_per_s"]


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
    precision: str = "auto"  # forwards: auto (bfloat16 on CUDA, float32 on CPU), bfloat16 or float32

    def __post_init__(self) -> None:
        """Reject an unknown precision when the settings are built, before any data is read."""
        autocast_dtype("cpu", self.precision)

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


@dataclass
class Resume:
    """Where a training job keeps its per-epoch state, and the key (hash of its inputs and
    parameters) that state must carry to be reused; a state with another key is ignored."""

    path: str | Path
    key: str


def _save_state(
    resume: Resume,
    epoch: int,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: torch.Generator,
    aug: torch.Generator,
    device: torch.device,
    history: list[dict[str, float]],
) -> None:
    """Everything needed to continue after `epoch`, written atomically (a kill never leaves half
    a state). Of the GPUs' random states only the training device's is kept, so the state resumes
    on a machine with another number of GPUs, or on the CPU."""
    from pasm.data.atomic import atomic_path

    state = {
        "key": resume.key,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "aug_generator": aug.get_state() if aug is not gen else None,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": history,
    }
    Path(resume.path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(resume.path) as tmp:
        torch.save(state, tmp)


STATE_GLOBALS = [Counter]
"""What a training state holds besides tensors and plain values (MultiStepLR keeps its milestones in a
Counter); nothing else may be unpickled from it."""


def _load_state(resume: Resume) -> dict[str, Any] | None:
    """The saved state if it exists, loads without running code (weights_only) and carries this job's
    key; None (with the reason logged, training then starts from epoch 1) otherwise."""
    path = Path(resume.path)
    if not path.exists():
        return None
    if not zipfile.is_zipfile(path):  # e.g. a bare pickle: never handed to an unpickler
        log.warning(
            "ignoring training state %s: it is not a PyTorch zip archive (as every state pasm writes is); "
            "starting from epoch 1",
            path,
        )
        return None
    try:
        with torch.serialization.safe_globals(STATE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    # a pickle of other objects (planted, or not pasm's): torch's message is not repeated, as it
    # advises weights_only=False, i.e. running the file's code
    except pickle.UnpicklingError:
        log.warning(
            "ignoring training state %s: it holds objects other than tensors and plain values, not loaded "
            "as that could run code; starting from epoch 1",
            path,
        )
        return None
    except Exception as exc:  # a state from another torch version, or damaged: start over, say why
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        log.warning(
            "ignoring unreadable training state %s (%s: %s); starting from epoch 1",
            path,
            type(exc).__name__,
            first,
        )
        return None
    if not isinstance(state, dict):
        log.warning(
            "ignoring training state %s: it holds a %s, not a training state; starting from epoch 1",
            path,
            type(state).__name__,
        )
        return None
    if state.get("key") != resume.key:
        log.info("ignoring training state %s: it belongs to other inputs or parameters", path)
        return None
    return state


def _restore_state(
    resume: Resume | None,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    sched: Any,
    gen: torch.Generator,
    aug: torch.Generator,
    device: torch.device,
) -> tuple[int, list[dict[str, float]]]:
    """Continue from a matching saved state, if any: restore weights, optimiser, schedule and random
    generators; return the first epoch still to train and the history of the epochs before it.

    A state written on another kind of device resumes too: the CUDA generators' states are
    restored onto the training device when both were CUDA devices, and left as seeded otherwise."""
    state = _load_state(resume) if resume else None
    if state is None:
        return 1, []
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    if device.type == "cuda":
        if aug is not gen and isinstance(state.get("aug_generator"), torch.Tensor):
            aug.set_state(state["aug_generator"])
        cuda_rng = state.get("cuda_rng")
        if isinstance(cuda_rng, (list, tuple)):  # every visible GPU's, as states used to hold
            cuda_rng = (
                cuda_rng[device.index] if device.index is not None and device.index < len(cuda_rng) else None
            )
        if isinstance(cuda_rng, torch.Tensor):
            torch.cuda.set_rng_state(cuda_rng, device)
    log.info(
        "resuming from %s: epochs 1-%d done, continuing at epoch %d",
        resume.path,
        state["epoch"],
        state["epoch"] + 1,
    )
    return state["epoch"] + 1, list(state["history"])


@contextmanager
def _csv_log(
    log_csv: str | Path | None, history: list[dict[str, float]]
) -> Iterator[Callable[[dict[str, float]], None]]:
    """A writer of one CSV row per epoch (after `history`'s restored rows) into `log_csv`.part, renamed
    to `log_csv` only when training completes, so a killed job never leaves a finished-looking log."""
    if not log_csv:
        yield lambda row: None
        return
    part = Path(f"{log_csv}.part")
    part.parent.mkdir(parents=True, exist_ok=True)
    with open(part, "w", newline="") as fh:
        writer = csv.DictWriter(fh, LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(history)

        def write(row: dict[str, float]) -> None:
            writer.writerow(row)
            fh.flush()

        yield write
    part.replace(log_csv)


MIN_BATCH = 2
"""The smallest batch a training step takes: BatchNorm cannot train on one image, so a smaller
(last) batch of an epoch is dropped."""


def _trained_per_epoch(n_images: int, batch_size: int) -> int:
    """How many of `n_images` an epoch trains on: every batch of `batch_size` but those (only ever the
    last) of fewer than MIN_BATCH images."""
    if batch_size < 1:
        return 0
    full, rest = divmod(n_images, batch_size)
    return (full * batch_size if batch_size >= MIN_BATCH else 0) + (rest if rest >= MIN_BATCH else 0)


def _no_batch_message(n_images: int, batch_size: int) -> str:
    """Why an epoch of `n_images` in batches of `batch_size` would train on nothing."""
    return (
        f"batch_size {batch_size} with {n_images} training images leaves no batch of at least "
        f"{MIN_BATCH} images (smaller ones are dropped: BatchNorm cannot train on one image), so an "
        f"epoch would train on nothing; use batch_size >= {MIN_BATCH} and at least {MIN_BATCH} images"
    )


RUN_AHEAD = 2
"""Training steps the host may queue on a GPU ahead of the one running: enough to keep it busy,
few enough to bound the pinned batches in flight."""


def train_one_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    images: np.ndarray | H5Rows,
    labels: torch.Tensor,
    params: TrainParams,
    gen: torch.Generator,
    epoch: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
    teacher: nn.Module | None = None,
    clean_images: np.ndarray | H5Rows | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    student_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    progress: bool = True,
    aug_generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One pass over `images` (int64 `labels`) in an order drawn from `gen`, one SGD step per batch;
    returns the epoch's mean loss, training accuracy and number of images trained on.

    Crops, flips and `student_transform` draw from `aug_generator` (default `gen`), on its device.
    On CUDA, batches are copied from pinned memory without blocking, and the loss and accuracy
    are summed on the device and read once, at the end of the epoch.
    """
    model.train()
    device = torch.device(device)
    cuda = device.type == "cuda"
    aug = gen if aug_generator is None else aug_generator
    n = len(labels)
    order = torch.randperm(n, generator=gen)
    amp = autocast(device, params.precision)
    sums = device if device.type in ("cpu", "cuda") else torch.device("cpu")  # has float64
    total_loss = torch.zeros((), dtype=torch.float64, device=sums)
    correct = torch.zeros((), dtype=torch.int64, device=sums)
    seen = 0
    bar = tqdm(
        total=-(-n // params.batch_size),
        desc=f"epoch {epoch}/{params.epochs}",
        unit="batch",
        disable=not progress,
        mininterval=2.0,
        leave=False,
    )
    batches = [order[s : s + params.batch_size].numpy() for s in range(0, n, params.batch_size)]
    batches = [b for b in batches if len(b) >= MIN_BATCH]  # BatchNorm cannot train on a single image
    if not batches:
        bar.close()
        raise ValueError(_no_batch_message(n, params.batch_size))
    clean = clean_images if teacher is not None else None
    depth = 2
    queued: deque = deque()
    with BatchReader(images, clean, labels, pin=cuda, ring=depth + 2) as reader:
        for batch in prefetched(reader, batches, depth):
            bar.update(1)
            x = batch.images.to(device, non_blocking=True).permute(0, 3, 1, 2)
            yb = batch.labels.to(device, non_blocking=True)
            view = CropFlip.draw(len(x), params.crop_pad, params.flip, aug)
            student_u8 = view.apply(x).float()
            if student_transform is not None:
                student_u8 = student_transform(student_u8, aug)
            student_x = to_input(student_u8, mean, std).contiguous(memory_format=torch.channels_last)
            teacher_logits = None
            with amp:
                if teacher is not None:
                    with torch.no_grad():
                        clean_u8 = view.apply(batch.clean.to(device, non_blocking=True).permute(0, 3, 1, 2))
                        clean_x = to_input(clean_u8.float(), mean, std)
                        teacher_logits = teacher(
                            clean_x.contiguous(memory_format=torch.channels_last)
                        ).float()
                logits = model(student_x).float()
            loss = pasm_loss(logits, yb, teacher_logits, alpha, beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.detach().to(sums).double() * len(batch.idx)
            correct += (logits.detach().argmax(1) == yb).sum().to(sums)
            seen += len(batch.idx)
            if cuda:  # wait for the step RUN_AHEAD before this one, never for the GPU to run dry
                queued.append(torch.cuda.Event())
                queued[-1].record()
                if len(queued) > RUN_AHEAD:
                    queued.popleft().synchronize()
    bar.close()
    loss_sum, right = total_loss.item(), int(correct.item())
    return {"loss": loss_sum / max(seen, 1), "train_acc": right / max(seen, 1), "images": seen}


def _val_accuracy(
    model: nn.Module,
    val: tuple[np.ndarray, np.ndarray] | None,
    mean: Sequence[float],
    std: Sequence[float],
    device: torch.device,
) -> float:
    """Accuracy on the validation images and labels; NaN when there are none."""
    if val is None or not len(val[1]):
        return float("nan")
    pred = predict_logits(model, val[0], mean, std, device=device).argmax(1)
    return float((pred == val[1]).mean())


def train(
    model: nn.Module,
    images: np.ndarray | H5Rows,
    labels: np.ndarray,
    params: TrainParams,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    device: str | torch.device = "cpu",
    teacher: nn.Module | None = None,
    clean_images: np.ndarray | H5Rows | None = None,
    alpha: float = 1.0,
    beta: float = 0.0,
    val: tuple[np.ndarray, np.ndarray] | None = None,
    log_csv: str | Path | None = None,
    progress: bool = True,
    resume: Resume | None = None,
    student_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> list[dict[str, float]]:
    """Train `model` in place on uint8 (N, H, W, 3) images; returns the per-epoch history.

    With a teacher, `images` are the student's (masked) inputs and `clean_images` the teacher's,
    row-aligned; both get the same crop and flip in every step. `student_transform` (e.g. random
    erasing) is applied to the student's uint8-valued float batch after crop and flip. With
    `resume`, the state after every epoch is saved there and a matching saved state is continued
    from; the result equals an uninterrupted run's. The forward passes run at ``params.precision``
    (by default bfloat16 autocast on CUDA, float32 on CPU); weights and activations are
    channels_last on every device (faster on CPU as well). The batch order is drawn on the host;
    crops, flips and `student_transform` draw from a generator on the training device when it is
    a GPU (seeded with ``params.seed``, saved with the state), and from the host's otherwise.
    """
    if teacher is not None and (clean_images is None or clean_images.shape != images.shape):
        raise ValueError("a teacher needs clean_images with the same shape as images")
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if _trained_per_epoch(len(labels), params.batch_size) == 0:
        raise ValueError(_no_batch_message(len(labels), params.batch_size))
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    torch.manual_seed(params.seed)
    gen = torch.Generator().manual_seed(params.seed)
    # crops, flips and erasing draw on the training device; on the CPU from gen, in its order
    aug = torch.Generator(device=device).manual_seed(params.seed) if device.type == "cuda" else gen
    model.to(device=device, memory_format=torch.channels_last).train()
    if teacher is not None:
        freeze(teacher).to(device=device, memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=params.lr_milestones, gamma=params.lr_gamma)
    first_epoch, history = _restore_state(resume, model, opt, sched, gen, aug, device)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    with _csv_log(log_csv, history) as write_row:
        for epoch in range(first_epoch, params.epochs + 1):
            t0 = time.perf_counter()
            lr = opt.param_groups[0]["lr"]
            stats = train_one_epoch(
                model,
                opt,
                images,
                y_all,
                params,
                gen,
                epoch,
                mean=mean,
                std=std,
                device=device,
                teacher=teacher,
                clean_images=clean_images,
                alpha=alpha,
                beta=beta,
                student_transform=student_transform,
                progress=progress,
                aug_generator=aug,
            )
            sched.step()
            seconds = time.perf_counter() - t0
            row = {
                "epoch": epoch,
                "loss": stats["loss"],
                "train_acc": stats["train_acc"],
                "val_acc": _val_accuracy(model, val, mean, std, device),
                "lr": lr,
                "seconds": round(seconds, 3),
                "images_per_s": round(stats["images"] / seconds, 1),
            }
            history.append(row)
            write_row(row)
            log.info(
                "epoch %d/%d loss %.4f train_acc %.4f val_acc %.4f lr %.5f %.1fs (%.0f img/s)",
                epoch,
                params.epochs,
                row["loss"],
                row["train_acc"],
                row["val_acc"],
                lr,
                seconds,
                row["images_per_s"],
            )
            if resume:
                _save_state(resume, epoch, model, opt, sched, gen, aug, device, history)
            if on_epoch_end:
                on_epoch_end(epoch)
    model.eval().to(memory_format=torch.contiguous_format)
    return history
