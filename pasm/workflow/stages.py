"""One function per workflow stage: read artifacts, call the array functions, write artifacts.

Every stage is a keyword-only function of paths and plain values: the rule's named ``params``
(the values its result depends on) and its threads/resources. Workflow scripts pass the job's
params through unchanged, so every stage can also be run and tested from plain Python.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from pasm.data.atomic import atomic_path
from pasm.data.faces import build_faces, pixels_rgb
from pasm.data.h5store import POINT_FIELDS, Faces, read_faces, read_table, write_faces, write_groups, write_table
from pasm.data.labels import CLASSES
from pasm.data.model_card import face_preparation
from pasm.data.readers import read_dataset
from pasm.evaluate.metrics import classification_metrics
from pasm.evaluate.plots import confusion_plot, masked_grid
from pasm.evaluate.report import write_round_report
from pasm.nn.inference import predict_logits, resolve_device
from pasm.nn.models import IMAGENET_MEAN, IMAGENET_STD, build_model, file_sha256, load_model, save_model
from pasm.train.masking import apply_masks
from pasm.train.training import Resume, TrainParams, train

log = logging.getLogger(__name__)


def round_seed(seed: int, stage: str, rnd: int) -> int:
    """A distinct, reproducible seed per (stage, round)."""
    offsets = {"pretrain": 0, "search": 1, "finetune": 2}
    return seed * 10_000 + rnd * 10 + offsets[stage]


def make_demo(*, root: str | Path, seed: int, per_class: dict[str, int], label_noise: float, image_size: int) -> Path:
    """Generate the synthetic demo data set into root (folder layout plus manifest)."""
    from pasm.data.demo_faces import write_demo_dataset

    return write_demo_dataset(root, seed=seed, size=image_size, per_class=per_class, label_noise=label_noise)


def make_faces(*, dataset: str, fmt: str, root: str, options: dict[str, Any], image_size: int,
               align: dict[str, Any], out_path: str | Path, device: str = "cpu", resize: str = "crop") -> Faces:
    """Read a data set with its reader, align or resize every face, and write faces.h5 with the
    record of how its faces were made (the stages that use a split check that it exists)."""
    output = read_dataset(fmt, root, options)
    preparation = face_preparation({"format": fmt, "root": root, "image_size": image_size, "align": align,
                                    **({fmt: options} if fmt in ("rafdb", "ckplus", "affectnet") else {})})
    return build_faces(
        output, image_size, attrs={"dataset": dataset, "format": fmt, "root": root, "preparation": preparation},
        align=align, device=resolve_device(device), resize=resize, out_path=out_path,
    )


def train_rows(faces: Faces, split: str, subset: int | None, seed: int) -> np.ndarray:
    """Sorted faces.h5 rows used for training: the split, or its class-stratified, seeded subset."""
    rows = faces.rows(split)
    limit = subset
    if not limit or limit >= len(rows):
        return rows
    rng = np.random.default_rng(seed)
    labels = faces.labels[rows]
    keep = []
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / len(rows) * limit).astype(int)
    quota[np.argsort(-(counts / len(rows) * limit - quota))[: limit - quota.sum()]] += 1  # largest remainders
    for c, q in zip(classes, quota):
        members = rows[labels == c]
        keep.append(rng.choice(members, size=min(q, len(members)), replace=False))
    return np.sort(np.concatenate(keep))


def _meta(faces: Faces, model: dict[str, Any], dataset: str, rnd: int, params: dict[str, Any]) -> dict[str, Any]:
    """What a model file records: its network, classes, input, how its faces were made, and its job's params."""
    return {
        "arch": model["arch"],
        "width": model["width"],
        "classes": list(CLASSES),
        "image_size": int(faces.images.shape[1]),
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "alignment": faces.attrs["preparation"],
        "dataset": dataset,
        "round": rnd,
        "params": params,
    }


def _val(faces: Faces, val_split: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    if not val_split:
        return None
    rows = faces.rows(val_split)
    return faces.images.subset(rows), faces.labels[rows]


def resume_state(out_model: str | Path, stage: str, inputs: Sequence[str | Path], settings: dict[str, Any]) -> Resume:
    """Per-epoch training state kept beside the job's model file but not declared as an output
    (Snakemake deletes declared outputs before a rerun), keyed by the SHA-256 of the job's input
    files and settings, so a state left by other inputs or parameters is never continued."""
    blob = json.dumps({"stage": stage, "inputs": [file_sha256(p) for p in inputs], "settings": settings},
                      sort_keys=True, default=str)
    return Resume(Path(out_model).with_name(f"{Path(out_model).stem}.train_state.pt"),
                  hashlib.sha256(blob.encode()).hexdigest())


def _finish(out_model: str | Path, model: torch.nn.Module, meta: dict[str, Any], resume: Resume) -> None:
    """Write the declared model file once, atomically, then drop the no longer needed training state."""
    save_model(out_model, model, meta)
    Path(resume.path).unlink(missing_ok=True)


def pretrain(
    *, faces_path: str | Path, out_model: str | Path, out_log: str | Path, dataset: str, model: dict[str, Any],
    schedule: dict[str, Any], train_split: str, train_subset: int | None, val_split: str | None, seed: int,
    device: str = "cpu", progress: bool = True,
) -> None:
    """Round 0: train the network ``model`` (arch, width, pretrained, weights_file; from scratch or
    ImageNet weights) with cross-entropy (Eq. 1) on the training rows, with the ``schedule`` block."""
    params = dict(model=model, schedule=schedule, train_split=train_split, train_subset=train_subset,
                  val_split=val_split, seed=seed, device=device)
    device = resolve_device(device)
    faces = read_faces(faces_path)
    rows = train_rows(faces, train_split, train_subset, seed)
    torch.manual_seed(seed)
    net = build_model(model["arch"], len(CLASSES), model["width"], model["pretrained"], model["weights_file"])
    train_params = TrainParams.from_config(schedule, round_seed(seed, "pretrain", 0))
    meta = _meta(faces, model, dataset, 0, params)
    meta.update(pretrained=model["pretrained"])
    resume = resume_state(out_model, "pretrain", [faces_path], params)
    history = train(
        net, faces.images.subset(rows), faces.labels[rows], train_params, mean=meta["mean"], std=meta["std"],
        device=device, val=_val(faces, val_split), log_csv=out_log, progress=progress, resume=resume,
    )
    meta["history"] = history
    _finish(out_model, net, meta, resume)


def shard_rows(n_train: int, shard: int, n_shards: int) -> tuple[int, int]:
    """Contiguous [start, stop) positions of shard `shard` (1-based) of n_shards over n_train items."""
    if not 1 <= shard <= n_shards:
        raise ValueError(f"shard {shard} is not in 1..{n_shards}")
    return (shard - 1) * n_train // n_shards, shard * n_train // n_shards


def parse_scatteritem(item: str) -> tuple[int, int]:
    """'3-of-8' -> (3, 8), Snakemake's scatter item naming."""
    try:
        i, n = item.split("-of-")
        return int(i), int(n)
    except ValueError:
        raise ValueError(f"scatter item {item!r} is not of the form '<i>-of-<n>'") from None


def _gpu_slot(device: str, gpus: int, gpu_lock_dir: str | None):
    """Context manager holding a free GPU for this job (yields its index), or None without CUDA or under a scheduler.

    ``gpus``: GPUs of this machine (0: count them); ``gpu_lock_dir``: where the slot locks live
    (None: a per-user folder in the temp dir). Both describe the machine, not the result.
    """
    import os
    import tempfile
    from contextlib import nullcontext

    from pasm.workflow.gpu_slots import claim_gpu, physical_gpu_count

    if device == "cpu":
        return nullcontext(None)
    n = gpus or physical_gpu_count()
    if n == 0:
        return nullcontext(None)
    lock_dir = gpu_lock_dir or Path(tempfile.gettempdir()) / f"pasm-gpu-locks-{os.getuid()}"
    return claim_gpu(n, lock_dir)


SEARCH_BLOCK = 500
"""Images searched together: memory holds this many (and their candidates), whatever the shard's
size. Randomness is keyed by global index, so blocks do not change which pixels are found."""


def search_blocks(model: torch.nn.Module, images: Any, labels: np.ndarray, indices: np.ndarray, *,
                  meta: dict[str, Any], params: Any, device: str, progress: bool) -> dict[str, np.ndarray]:
    """search_points over ``images`` (in memory or H5Rows) SEARCH_BLOCK images at a time; the
    per-image results concatenated."""
    from pasm.search import search_points

    parts = []
    for s in range(0, max(len(labels), 1), SEARCH_BLOCK):  # an empty shard still gets its (empty) arrays
        block = slice(s, s + SEARCH_BLOCK)
        parts.append(search_points(model, np.asarray(images[block]), labels[block], mean=meta["mean"],
                                   std=meta["std"], params=params, device=device, progress=progress,
                                   indices=indices[block]))
        if progress and len(labels) > SEARCH_BLOCK:
            log.info("searched %d of %d images", min(s + SEARCH_BLOCK, len(labels)), len(labels))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def search_shard(
    *, faces_path: str | Path, model_path: str | Path, out_path: str | Path, scatteritem: str, rnd: int,
    search: dict[str, Any], train_split: str, train_subset: int | None, seed: int, device: str = "cpu",
    gpus: int = 0, gpu_lock_dir: str | None = None, progress: bool = True,
) -> None:
    """Find the most sensitive pixel of each training image in one shard (Sec. 3.2) with the
    ``search`` block's strategy and budget."""
    import os

    from pasm.search import SearchParams
    from pasm.workflow.gpu_slots import visible_devices_env

    shard, n_shards = parse_scatteritem(scatteritem)
    faces = read_faces(faces_path)
    rows = train_rows(faces, train_split, train_subset, seed)
    start, stop = shard_rows(len(rows), shard, n_shards)
    sel = rows[start:stop]
    with _gpu_slot(device, gpus, gpu_lock_dir) as gpu:
        if gpu is not None:
            os.environ.update(visible_devices_env(gpu))  # before CUDA initialises (resolve_device does)
            log.info("shard %d/%d: claimed GPU %d", shard, n_shards, gpu)
        torch_device = resolve_device(device)
        model, meta = load_model(model_path, torch_device)
        params = SearchParams(
            population=search["population"], generations=search["generations"], scale_f=search["scale_f"],
            batch_size=search["batch_size"], seed=round_seed(seed, "search", rnd),
            strategy=search["strategy"], top_k=search["top_k"], refine_generations=search["refine_generations"],
            refine_population=search["refine_population"], precision=search["precision"],
        )
        t0 = time.perf_counter()
        found = search_blocks(model, faces.images.subset(sel), faces.labels[sel], np.arange(start, stop),
                              meta=meta, params=params, device=torch_device, progress=progress)
        seconds = time.perf_counter() - t0
    table = {"index": sel.astype(np.int64), **{k: found[k] for k in POINT_FIELDS if k != "index"}}
    log.info(
        "shard %d/%d: %d images in %.1fs, %.0f queries/img, flipped %.1f%%, true-class prob %.3f -> %.3f",
        shard, n_shards, len(sel), seconds, table["queries"].mean() if len(sel) else 0,
        100 * table["flipped"].mean() if len(sel) else 0,
        table["prob_before"].mean() if len(sel) else 0, table["prob_after"].mean() if len(sel) else 0,
    )
    write_table(out_path, table, {"shard": shard, "n_shards": n_shards, "start": start, "stop": stop,
                                  "model_sha256": file_sha256(model_path), "round": rnd, "seconds": seconds,
                                  "search": search, "gpu": -1 if gpu is None else gpu})


def gather_points(*, shard_paths: Sequence[str | Path], faces_path: str | Path, out_path: str | Path,
                  train_split: str, train_subset: int | None, seed: int) -> None:
    """Concatenate shard tables and verify every training image appears exactly once."""
    parts, attrs = [], []
    for p in shard_paths:
        table, a = read_table(p)
        parts.append(table)
        attrs.append(a)
    table = {k: np.concatenate([t[k] for t in parts]) for k in POINT_FIELDS}
    expected = train_rows(read_faces(faces_path, with_images=False), train_split, train_subset, seed)
    order = np.argsort(table["index"], kind="stable")
    table = {k: v[order] for k, v in table.items()}
    idx = table["index"]
    dup = np.unique(idx[1:][idx[1:] == idx[:-1]])
    missing = np.setdiff1d(expected, idx)
    extra = np.setdiff1d(idx, expected)
    if dup.size or missing.size or extra.size:
        raise ValueError(
            f"points shards {list(map(str, shard_paths))} do not cover the training set exactly once: "
            f"{dup.size} duplicated (e.g. {dup[:5].tolist()}), {missing.size} missing "
            f"(e.g. {missing[:5].tolist()}), {extra.size} not training rows (e.g. {extra[:5].tolist()})"
        )
    shas = {a["model_sha256"] for a in attrs}
    if len(shas) != 1:
        raise ValueError(f"points shards were searched against different models: {sorted(shas)}")
    write_table(out_path, table, {"model_sha256": shas.pop(), "n_shards": len(shard_paths),
                                  "search_seconds": sum(a["seconds"] for a in attrs)})


MASK_BLOCK = 512
"""Faces masked per read and write: memory holds this many, whatever the training set's size."""


def make_masked(*, faces_path: str | Path, points_path: str | Path, out_h5: str | Path, out_png: str | Path,
                mask_size: int, dataset: str, rnd: int) -> None:
    """Build the augmented training set: each image with its S x S patch (S = ``mask_size``) filled
    with its point's RGB (Sec. 3.3, Alg. 1 l.6-7), read and written MASK_BLOCK faces at a time."""
    faces = read_faces(faces_path)
    points, _ = read_table(points_path)
    idx = points["index"]
    blocks = (apply_masks(faces.images[idx[b]], points["x"][b], points["y"][b], points["rgb"][b], mask_size)
              for b in (slice(s, s + MASK_BLOCK) for s in range(0, len(idx), MASK_BLOCK)))
    write_table(out_h5, {"labels": faces.labels[idx], "index": idx, "x": points["x"], "y": points["y"],
                         "rgb": points["rgb"]}, {"mask_size": mask_size, "round": rnd},
                images=((len(idx), *faces.images.shape[1:]), blocks))
    masked_grid(faces.images.subset(idx), read_masked(out_h5)["images"], faces.labels[idx], points["x"], points["y"],
                CLASSES, out_png, title=f"{dataset} round {rnd}: masked training samples (S={mask_size})")


def read_masked(path: str | Path) -> dict[str, Any]:
    """masked.h5's columns, its images read on demand."""
    return read_table(path, lazy=("images",))[0]


def finetune(
    *, faces_path: str | Path, masked_path: str | Path, teacher_path: str | Path, out_model: str | Path,
    out_log: str | Path, dataset: str, rnd: int, schedule: dict[str, Any], alpha: float, beta: float,
    val_split: str | None, seed: int, device: str = "cpu", progress: bool = True,
) -> None:
    """Round r: student (initialised from the teacher) trained on masked images with Eq. 4."""
    faces = read_faces(faces_path)
    masked = read_masked(masked_path)
    fit_student(faces=faces, images=masked["images"], labels=masked["labels"], rows=masked["index"],
                init_path=teacher_path, out_model=out_model, out_log=out_log, dataset=dataset, rnd=rnd,
                schedule=schedule, alpha=alpha, beta=beta, val_split=val_split, seed=seed, device=device,
                inputs=[faces_path, masked_path, teacher_path], stage="finetune", progress=progress)


def fit_student(
    *, faces: Faces, images: np.ndarray, labels: np.ndarray, rows: np.ndarray, init_path: str | Path,
    out_model: str | Path, out_log: str | Path, dataset: str, rnd: int, schedule: dict[str, Any], alpha: float,
    beta: float, val_split: str | None, seed: int, device: str, inputs: Sequence[str | Path], stage: str,
    student_transform: Any = None, progress: bool = True, extra_meta: dict[str, Any] | None = None,
) -> None:
    """Train a student that starts from the model at ``init_path`` on ``images`` (rows ``rows`` of
    faces.h5) with ``schedule``: Eq. 4 with that model as frozen teacher on the clean rows when
    beta > 0, cross-entropy alone when beta == 0 (Table 6's "w/o teacher" setting)."""
    params = dict(schedule=schedule, alpha=alpha, beta=beta, val_split=val_split, seed=seed, device=device)
    torch_device = resolve_device(device)
    init, imeta = load_model(init_path, torch_device)
    teacher = copy.deepcopy(init) if beta > 0 else None  # the student starts from the teacher's weights
    train_params = TrainParams.from_config(schedule, round_seed(seed, "finetune", rnd))
    meta = _meta(faces, imeta, dataset, rnd, params)
    meta.update(**(extra_meta or {}))
    resume = resume_state(out_model, stage, inputs, {**params, "extra": extra_meta})
    history = train(
        init, images, labels, train_params, mean=imeta["mean"], std=imeta["std"], device=torch_device,
        teacher=teacher, clean_images=faces.images.subset(rows) if teacher is not None else None, alpha=alpha, beta=beta,
        val=_val(faces, val_split), log_csv=out_log, progress=progress, resume=resume,
        student_transform=student_transform,
    )
    meta.update(history=history, teacher_sha256=file_sha256(init_path), teacher_path=str(init_path),
                alpha=alpha, beta=beta)
    _finish(out_model, init, meta, resume)


def evaluation_subsets(faces: Faces, eval_splits: Sequence[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Rows of every named subset restricted to the evaluation splits, and why any subset was left out.

    RAF-DB's occlusion/pose subsets lie inside its test split; CK+'s folds span every split, so only
    the part in an evaluation split is scored (a fold outside them is left out, with the reason).
    A subset named in eval_splits itself is scored whole, as a split, and is not repeated here.
    """
    split_names = [s for s in eval_splits if s not in faces.subsets]
    in_eval = np.isin(faces.splits, split_names)
    rows, skipped = {}, {}
    for name, mask in faces.subsets.items():
        if name in eval_splits:
            continue
        sel = np.flatnonzero(np.asarray(mask, dtype=bool) & in_eval)
        if sel.size:
            rows[name] = sel
        else:
            skipped[name] = f"none of its {int(np.sum(mask))} rows is in the evaluation splits {split_names}"
    return rows, skipped


def evaluate(*, faces_path: str | Path, model_path: str | Path, out_json: str | Path, out_png: str | Path,
             dataset: str, rnd: int, val_split: str | None, eval_splits: Sequence[str], device: str = "cpu",
             cross_paths: Sequence[str | Path] = (), out_predictions: str | Path | None = None,
             out_rounds_png: str | Path | None = None, out_rounds_html: str | Path | None = None,
             out_round_html: str | Path | None = None) -> dict[str, Any]:
    """Metrics of one round's model on the validation split, every evaluation split and every named subset.

    ``out_predictions`` (predictions.h5) gets every evaluated face's logits, label and faces.h5 row,
    one group per split and subset ("splits/test", "subsets/occlusion"), so that methods can be
    compared face by face. With the optional outputs it also draws accuracy per round over rounds 0..rnd (earlier rounds'
    metrics.json are read from the sibling round directories) and writes the HTML tables.
    """
    device = resolve_device(device)
    faces = read_faces(faces_path)
    model, meta = load_model(model_path, device)
    splits = list(dict.fromkeys(([val_split] if val_split else []) + list(eval_splits)))
    subsets, skipped = evaluation_subsets(faces, eval_splits)
    result: dict[str, Any] = {"dataset": dataset, "round": rnd, "model": str(model_path),
                              "model_sha256": file_sha256(model_path), "classes": list(CLASSES), "splits": {},
                              "subsets": {}, "subsets_not_evaluated": skipped}
    sets = [("splits", s, faces.rows(s)) for s in splits] + [("subsets", s, r) for s, r in subsets.items()]
    predictions = {}
    for kind, set_name, rows in sets:
        logits = predict_logits(model, faces.images.subset(rows), meta["mean"], meta["std"], device=device)
        predictions[f"{kind}/{set_name}"] = {"rows": rows.astype(np.int64), "labels": faces.labels[rows],
                                             "logits": logits.astype(np.float32)}
        m = classification_metrics(faces.labels[rows], logits.argmax(1), CLASSES)
        if kind == "subsets":
            m["within_splits"] = sorted(set(faces.splits[rows].tolist()))
        result[kind][set_name] = m
        log.info("round %d %s: accuracy %.4f, macro F1 %.4f (n=%d)", rnd, set_name, m["accuracy"], m["macro_f1"],
                 len(rows))
    for set_name, why in skipped.items():
        log.info("round %d: subset %s not evaluated: %s", rnd, set_name, why)
    main_split = eval_splits[0]
    confusion_plot(np.array(result["splits"][main_split]["confusion_matrix"]), CLASSES, out_png,
                   title=f"{dataset} round {rnd}, {main_split}: accuracy {result['splits'][main_split]['accuracy']:.3f}")
    if out_rounds_png is not None:
        cross = {Path(p).parent.name: json.loads(Path(p).read_text()) for p in cross_paths}
        earlier = [Path(out_json).parent.with_name(f"round{k}") for k in range(rnd)]
        write_round_report(rnd, result, cross, earlier, dataset, out_rounds_png, out_rounds_html, out_round_html)
    if out_predictions is not None:
        write_groups(out_predictions, predictions, {"dataset": dataset, "round": rnd, "classes": list(CLASSES),
                                                    "model_sha256": result["model_sha256"], "sets": list(predictions)})
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return result


EVAL_BLOCK = 1000
"""Faces resized per block in cross-evaluation (a multiple of predict_logits' batch of 50)."""


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of uint8 (N, H, W, 3) images to size x size (no-op when already that size)."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([pixels_rgb(im, size) for im in images])


def cross_evaluate(*, target_faces: str | Path, model_path: str | Path, out_json: str | Path, source: str,
                   target: str, rnd: int, device: str = "cpu",
                   out_predictions: str | Path | None = None) -> dict[str, Any]:
    """Test one round's model on every image of another data set, over the classes both share.

    Labels are already canonical in both data sets; predictions are restricted to the classes
    present in the target (e.g. CK+48 has no neutral), and the label set used is recorded.
    """
    device = resolve_device(device)
    faces = read_faces(target_faces)
    model, meta = load_model(model_path, device)
    present = sorted(set(faces.labels.tolist()) & set(range(len(meta["classes"]))))
    rows = np.flatnonzero(np.isin(faces.labels, present))
    logits = np.concatenate([  # resized block by block: memory holds one block of either size
        predict_logits(model, resize_images(block, meta["image_size"]), meta["mean"], meta["std"], device=device)
        for _, block in faces.images.subset(rows).blocks(EVAL_BLOCK)] or [np.zeros((0, len(meta["classes"])))])
    pred = np.array(present)[logits[:, present].argmax(1)]
    result = {
        "source": source, "target": target, "round": rnd, "model": str(model_path),
        "model_sha256": file_sha256(model_path), "classes": list(CLASSES),
        "label_mapping": {
            "shared_classes": [CLASSES[c] for c in present],
            "class_map": {CLASSES[c]: meta["classes"][c] for c in present},  # target label -> model output
            "source_classes": list(meta["classes"]),
            "source_only": [c for i, c in enumerate(meta["classes"]) if i not in present],
            "target_images_without_shared_label": int(len(faces.labels) - len(rows)),
            "prediction": "argmax over the shared classes",
            "target_label_map": faces.attrs.get("label_map", {}),
        },
        "all": classification_metrics(faces.labels[rows], pred, CLASSES),
    }
    if out_predictions is not None:
        write_groups(out_predictions, {"all": {"rows": rows.astype(np.int64), "labels": faces.labels[rows],
                                               "logits": logits.astype(np.float32), "predicted": pred.astype(np.int64)}},
                     {"source": source, "target": target, "round": rnd, "classes": list(CLASSES),
                      "shared_classes": present, "prediction": "argmax over the shared classes"})
    log.info("round %d on %s: accuracy %.4f over %d images, classes %s", rnd, target,
             result["all"]["accuracy"], len(rows), result["label_mapping"]["shared_classes"])
    with atomic_path(out_json) as tmp:
        tmp.write_text(json.dumps(result, indent=2))
    return result
