"""Stages of workflow/rules/search.smk: one shard of the point search, the gathered points, the masked
images."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch

from pasm.data.h5store import POINT_FIELDS, read_faces, read_masked, read_table, write_table
from pasm.data.labels import CLASSES
from pasm.evaluate.plots import masked_grid
from pasm.nn.inference import inference_model, resolve_device
from pasm.nn.models import file_sha256, load_model
from pasm.search import SearchParams, find_points
from pasm.train.masking import apply_masks
from pasm.workflow.common import round_seed, train_rows
from pasm.workflow.placement import where_made
from pasm.workflow.shard_state import ShardState, shard_state

log = logging.getLogger(__name__)

SEARCH_BLOCK = 500
"""Images searched together when the ``search`` block sets no ``block``: memory holds this many (and
their candidates), whatever the shard's size; a killed shard resumes after its last finished block.
Randomness is keyed by global index, so another block size finds the same pixels up to rounding (a
row's forward can differ in the last bit with the batch it is in); the same block size, the same bits."""

MASK_BLOCK = 512
"""Faces masked per read and write: memory holds this many, whatever the training set's size."""


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


def block_count(n: int, block: int) -> int:
    """Blocks of ``block`` images in a shard of n; an empty shard still has one (empty) block, so its
    output gets its (empty) arrays."""
    return max(-(-n // block), 1)


def find_points_in_blocks(
    model: torch.nn.Module,
    images: Any,
    labels: np.ndarray,
    indices: np.ndarray,
    *,
    meta: dict[str, Any],
    params: SearchParams,
    device: str,
    progress: bool,
    block: int | None = None,
    first_block: int = 0,
    done: dict[str, np.ndarray] | None = None,
    on_block: Callable[[dict[str, np.ndarray], int], None] | None = None,
) -> dict[str, np.ndarray]:
    """find_points over ``images`` (in memory or H5Rows) ``block`` images at a time (default
    SEARCH_BLOCK) with the network prepared once; the per-image results concatenated.

    ``done``: the results of blocks 0..first_block-1, found before (a resumed shard): those blocks
    are not searched again. ``on_block(results so far, blocks finished)`` runs after each block."""
    size = int(block or SEARCH_BLOCK)
    n = len(labels)
    n_blocks = block_count(n, size)
    found = done if first_block else None
    prepared = inference_model(model, device, params.precision)
    for b in range(first_block, n_blocks):
        rows = slice(b * size, (b + 1) * size)
        part = find_points(
            prepared,
            np.asarray(images[rows]),
            labels[rows],
            mean=meta["mean"],
            std=meta["std"],
            params=params,
            device=device,
            progress=progress,
            indices=indices[rows],
            prepared=True,
        )
        found = part if found is None else {k: np.concatenate([found[k], part[k]]) for k in part}
        if n_blocks > 1:
            log.info("searched block %d of %d (%d of %d images done)", b, n_blocks, min(rows.stop, n), n)
        if on_block is not None:
            on_block(found, b + 1)
    assert found is not None
    return found


def search_resumably(
    net: torch.nn.Module,
    images: Any,
    labels: np.ndarray,
    indices: np.ndarray,
    index: np.ndarray,
    *,
    state: ShardState,
    label: str,
    unit: str = "images",
    **search: Any,
) -> tuple[dict[str, np.ndarray], float]:
    """find_points_in_blocks continued from ``state`` (the finished blocks of an earlier, killed run
    of the job ``label``), recording each finished block there; the results and the search seconds
    of all runs. ``index``: the rows' keys kept in the state; ``search``: find_points_in_blocks'
    keywords (meta, params, device, progress, block)."""
    block = int(search.get("block") or SEARCH_BLOCK)
    finished = state.load(index, block)
    if finished.blocks:
        log.info(
            "resuming %s at block %d of %d (%d %s done) from %s",
            label,
            finished.blocks,
            block_count(len(index), block),
            finished.images,
            unit,
            state.path,
        )
    t0 = time.perf_counter()

    def keep(found: dict[str, np.ndarray], blocks: int) -> None:
        """Record the finished blocks, so that a killed job continues after them."""
        elapsed = finished.seconds + time.perf_counter() - t0
        state.save({"index": index[: len(found["x"])], **found}, blocks, block, elapsed)

    found = find_points_in_blocks(
        net,
        images,
        labels,
        indices,
        **{**search, "block": block},
        first_block=finished.blocks,
        done={k: v for k, v in finished.table.items() if k != "index"},
        on_block=keep,
    )
    return found, finished.seconds + time.perf_counter() - t0


def search_points(
    *,
    faces: str,
    model: str,
    points: str,
    scatteritem: str,
    r: int,
    search: dict[str, Any],
    train_split: str,
    train_subset: int | None,
    seed: int,
    device: str = "cpu",
    progress: bool = True,
) -> None:
    """Find the most sensitive pixel of each training image of one shard (Sec. 3.2) against round
    r-1's ``model``, with the ``search`` block's strategy and budget, ``block`` images at a time; a
    shard killed part-way continues at its first unfinished block (pasm.workflow.shard_state)."""
    shard, n_shards = parse_scatteritem(scatteritem)
    data = read_faces(faces)
    rows = train_rows(data, train_split, train_subset, seed)
    start, stop = shard_rows(len(rows), shard, n_shards)
    sel = rows[start:stop]
    torch_device = resolve_device(device)
    net, meta = load_model(model, torch_device)
    params = SearchParams.from_config(search, round_seed(seed, "search", r))
    block = int(search.get("block") or SEARCH_BLOCK)
    index = sel.astype(np.int64)
    settings = dict(
        search=search,
        block=block,
        train_split=train_split,
        train_subset=train_subset,
        seed=seed,
        round=r,
        shard=shard,
        n_shards=n_shards,
        device_type=torch.device(torch_device).type,
    )
    state = shard_state(points, [faces, model], settings)
    found, seconds = search_resumably(
        net,
        data.images.subset(sel),
        data.labels[sel],
        np.arange(start, stop),
        index,
        state=state,
        label=f"shard {shard}/{n_shards}",
        meta=meta,
        params=params,
        device=torch_device,
        progress=progress,
        block=block,
    )
    table = {"index": index, **{k: found[k] for k in POINT_FIELDS if k != "index"}}
    n = len(sel)
    log.info(
        "shard %d/%d: %d images in %.1fs, %.0f queries/img, flipped %.1f%%, true-class prob %.3f -> %.3f",
        shard,
        n_shards,
        n,
        seconds,
        table["queries"].mean() if n else 0,
        100 * table["flipped"].mean() if n else 0,
        table["prob_before"].mean() if n else 0,
        table["prob_after"].mean() if n else 0,
    )
    attrs = {
        "shard": shard,
        "n_shards": n_shards,
        "start": start,
        "stop": stop,
        "model_sha256": file_sha256(model),
        "round": r,
        "seconds": seconds,
        "search": search,
        **where_made(device),
    }
    write_table(points, table, attrs)
    state.remove()


def gather_points(
    *,
    shards: Sequence[str],
    faces: str,
    points: str,
    train_split: str,
    train_subset: int | None,
    seed: int,
) -> None:
    """Concatenate the shards' tables and verify that every training image appears exactly once."""
    parts, attrs = [], []
    for p in shards:
        table, a = read_table(p)
        parts.append(table)
        attrs.append(a)
    table = {k: np.concatenate([t[k] for t in parts]) for k in POINT_FIELDS}
    expected = train_rows(read_faces(faces, with_images=False), train_split, train_subset, seed)
    order = np.argsort(table["index"], kind="stable")
    table = {k: v[order] for k, v in table.items()}
    idx = table["index"]
    dup = np.unique(idx[1:][idx[1:] == idx[:-1]])
    missing = np.setdiff1d(expected, idx)
    extra = np.setdiff1d(idx, expected)
    if dup.size or missing.size or extra.size:
        raise ValueError(
            f"points shards {list(map(str, shards))} do not cover the training set exactly once: "
            f"{dup.size} duplicated (e.g. {dup[:5].tolist()}), {missing.size} missing "
            f"(e.g. {missing[:5].tolist()}), {extra.size} not training rows (e.g. {extra[:5].tolist()})"
        )
    shas = {a["model_sha256"] for a in attrs}
    if len(shas) != 1:
        raise ValueError(f"points shards were searched against different models: {sorted(shas)}")
    write_table(
        points,
        table,
        {
            "model_sha256": shas.pop(),
            "n_shards": len(shards),
            "search_seconds": sum(a["seconds"] for a in attrs),
        },
    )


def masked_samples(
    *, faces: str, points: str, masked: str, grid: str, ds: str, r: int, mask_size: int
) -> None:
    """Build the augmented training set: each image with its S x S patch (S = ``mask_size``) filled
    with its point's RGB (Sec. 3.3, Alg. 1 l.6-7), read and written MASK_BLOCK faces at a time."""
    data = read_faces(faces)
    table, _ = read_table(points)
    idx = table["index"]
    blocks = (
        apply_masks(data.images[idx[b]], table["x"][b], table["y"][b], table["rgb"][b], mask_size)
        for b in (slice(s, s + MASK_BLOCK) for s in range(0, len(idx), MASK_BLOCK))
    )
    write_table(
        masked,
        {"labels": data.labels[idx], "index": idx, "x": table["x"], "y": table["y"], "rgb": table["rgb"]},
        {"mask_size": mask_size, "round": r},
        images=((len(idx), *data.images.shape[1:]), blocks),
    )
    masked_grid(
        data.images.subset(idx),
        read_masked(masked)["images"],
        data.labels[idx],
        table["x"],
        table["y"],
        CLASSES,
        grid,
        title=f"{ds} round {r}: masked training samples (S={mask_size})",
    )
