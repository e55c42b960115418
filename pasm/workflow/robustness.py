"""Stages of workflow/rules/robustness.smk: a model on corrupted copies of the evaluation splits, a
one-pixel attack on a fixed sample of the main test split (in blocks, resumable like a search shard),
and the robustness table of every compared method over seeds."""

from __future__ import annotations

import logging
import time
import zlib
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from pasm.data.align import AlignSettings, template_points
from pasm.data.h5store import Faces, read_faces, read_groups, read_table, write_groups, write_table
from pasm.evaluate.corruptions import Corruption, corrupt, corruption_list
from pasm.evaluate.plots import corruption_examples
from pasm.evaluate.robustness import attack_rates, training_seconds, write_robustness
from pasm.nn.inference import inference_model, predict_logits, resolve_device
from pasm.nn.models import file_sha256, load_model
from pasm.search import SearchParams, default_batch_size
from pasm.workflow.placement import where_made
from pasm.workflow.search import SEARCH_BLOCK, search_resumably
from pasm.workflow.shard_state import shard_state

log = logging.getLogger(__name__)

EVAL_BLOCK = 1000
"""Faces read and corrupted at a time: memory holds this many (and one corrupted copy), whatever
the split's size."""

EXAMPLE_FACES = 4
"""Faces shown in the example grid of the corruptions."""


def face_landmarks(faces: Faces) -> np.ndarray:
    """The template landmarks (5, 2) in pixels that the data set's faces are aligned (or framed) to."""
    prep = faces.attrs.get("preparation", {})
    settings = {k: v for k, v in prep.get("settings", {}).items() if k in ("template", "scale")}
    return template_points(AlignSettings(size=int(faces.images.shape[1]), **settings))


def settings_corruptions(robustness: dict[str, Any]) -> list[Corruption]:
    """The corruptions of a validated ``robustness`` config block."""
    return corruption_list(
        robustness["occlusions"],
        robustness["fills"],
        robustness["patches"],
        robustness["corruptions"],
        robustness["severities"],
    )


def robustness_corruptions(
    *,
    faces: str,
    model: str,
    corruptions: str,
    eval_splits: Sequence[str],
    robustness: dict[str, Any],
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """The model's predicted class for every corrupted copy of every evaluation split's faces, read
    and corrupted EVAL_BLOCK faces at a time; one table per (split, corruption)."""
    t0 = time.perf_counter()
    data = read_faces(faces)
    landmarks = face_landmarks(data)
    todo = settings_corruptions(robustness)
    torch_device = resolve_device(device)
    net, meta = load_model(model, torch_device)
    prepared = inference_model(net, torch_device, robustness["precision"])
    batch = default_batch_size(torch_device)
    groups = {}
    for split in eval_splits:
        rows = data.rows(split)
        predicted = {c.key: np.empty(len(rows), np.int64) for c in todo}
        bar = tqdm(
            total=len(rows) * len(todo), desc=f"{split}: corrupted copies", unit="face", disable=not progress
        )
        for start in range(0, len(rows), EVAL_BLOCK):
            part = rows[start : start + EVAL_BLOCK]
            images = np.asarray(data.images.subset(part)[:])
            for c in todo:
                copy = corrupt(images, part, c, seed=robustness["seed"], landmarks=landmarks)
                logits = predict_logits(
                    prepared, copy, meta["mean"], meta["std"], batch_size=batch, device=torch_device
                )
                predicted[c.key][start : start + len(part)] = logits.argmax(1)
                bar.update(len(part))
        bar.close()
        for c in todo:
            acc = float(np.mean(predicted[c.key] == data.labels[rows])) if len(rows) else float("nan")
            log.info("%s %s: accuracy %.4f (n=%d)", split, c.key, acc, len(rows))
            groups[f"{split}/{c.key}"] = {
                "rows": rows.astype(np.int64),
                "labels": data.labels[rows],
                "predicted": predicted[c.key],
            }
    seconds = time.perf_counter() - t0
    log.info("%d corrupted copies of %s in %.1f s", len(todo), list(eval_splits), seconds)
    write_groups(
        corruptions,
        groups,
        {
            "sets": list(groups),
            "model_sha256": file_sha256(model),
            "robustness": robustness,
            "landmarks": landmarks.tolist(),
            "seconds": seconds,
            **where_made(device),
        },
    )


def attack_rows(faces: Faces, split: str, n_faces: int, seed: int) -> np.ndarray:
    """The faces of ``split`` the attack runs on: all, or a seeded sample of ``n_faces`` of them (in
    row order), the same for every model and seed of a run."""
    rows = faces.rows(split)
    if n_faces >= len(rows):
        return rows.astype(np.int64)
    rng = np.random.default_rng([int(seed), zlib.crc32(b"attack faces")])
    return np.sort(rng.choice(rows, size=n_faces, replace=False)).astype(np.int64)


def robustness_attack(
    *,
    faces: str,
    model: str,
    attack: str,
    attack_name: str,
    split: str,
    n_faces: int,
    search: dict[str, Any],
    seed: int,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """The one-pixel search ``search`` (a method.search block) against the model on a fixed sample of
    the main test split: per face its best pixel, probabilities before and after, and whether it
    flipped. Runs ``block`` faces at a time and continues a killed job at its first unfinished block."""
    data = read_faces(faces)
    rows = attack_rows(data, split, n_faces, seed)
    torch_device = resolve_device(device)
    net, meta = load_model(model, torch_device)
    params = SearchParams.from_config(search, seed)
    block = int(search.get("block") or SEARCH_BLOCK)
    settings = dict(
        search=search,
        block=block,
        split=split,
        n_faces=n_faces,
        seed=seed,
        device_type=torch.device(torch_device).type,
    )
    state = shard_state(attack, [faces, model], settings, stage="robustness_attack")
    found, seconds = search_resumably(
        net,
        data.images.subset(rows),
        data.labels[rows],
        rows,
        rows,
        state=state,
        label=f"attack {attack_name}",
        unit="faces",
        meta=meta,
        params=params,
        device=torch_device,
        progress=progress,
        block=block,
    )
    rates = attack_rates(found)
    log.info(
        "attack %s on %d faces in %.1f s: %d right before, %.1f%% of them flipped, mean prob. drop %.3f",
        attack_name,
        len(rows),
        seconds,
        rates["right_before"],
        100 * rates["success"],
        rates["prob_drop"],
    )
    table = {"index": rows, "labels": data.labels[rows], **{k: v for k, v in found.items() if k != "index"}}
    attrs = {
        "attack": attack_name,
        "split": split,
        "search": search,
        "model_sha256": file_sha256(model),
        "seconds": seconds,
        **where_made(device),
    }
    write_table(attack, table, attrs)
    state.remove()


def robustness(
    *,
    predictions: Sequence[str],
    corruptions: Sequence[str],
    attacks: Sequence[str],
    train_logs: Sequence[str],
    points: Sequence[str],
    faces: str,
    md: str,
    csv: str,
    png: str,
    examples: str,
    ds: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    references: Sequence[str],
    attack_names: Sequence[str],
    main_split: str,
    robustness: dict[str, Any],
    n_boot: int,
) -> None:
    """The robustness table of ``methods`` over ``seeds`` (every input method-major, seed-minor; the
    attacks attack-major), its plot, and a grid of example faces of each corruption."""
    per_attack = len(methods) * len(seeds)
    attack_paths = {
        name: attacks[i * per_attack : (i + 1) * per_attack] for i, name in enumerate(attack_names)
    }
    eval_seconds = sum(float(read_groups(p)[1]["seconds"]) for p in corruptions)
    eval_seconds += sum(float(read_table(p)[1]["seconds"]) for p in attacks)
    write_robustness(
        prediction_paths=predictions,
        corruption_paths=corruptions,
        attack_paths=attack_paths,
        methods=methods,
        seeds=seeds,
        references=references,
        main_split=main_split,
        dataset=ds,
        out_md=md,
        out_csv=csv,
        out_png=png,
        eval_seconds=eval_seconds,
        train_seconds=training_seconds(train_logs, points),
        n_boot=n_boot,
    )
    data = read_faces(faces)
    rows = data.rows(main_split)[:EXAMPLE_FACES]
    images = np.asarray(data.images.subset(rows)[:])
    landmarks = face_landmarks(data)
    shown: dict[str, Corruption] = {}
    for c in settings_corruptions(robustness):  # each family once: its middle severity, its first fill
        name = c.key.rsplit("/", 1)[0] if c.kind != "patch" else c.key
        if c.kind == "pixel":
            levels = robustness["severities"]
            if c.level != levels[len(levels) // 2]:
                continue
            name = c.key
        shown.setdefault(name, c)
    copies = [
        (c.key, corrupt(images, rows, c, seed=robustness["seed"], landmarks=landmarks))
        for c in shown.values()
    ]
    corruption_examples(images, copies, examples, title=f"{ds}: corrupted copies of {main_split} faces")
