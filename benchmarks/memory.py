"""Peak resident memory of every pipeline stage at N and factor x N synthetic faces of one size,
each stage run alone in a fresh process (benchmarks/peak_memory.py): a table of peak MiB per stage
and the ratio peak(factor N) / peak(N), plus the seeded search alone at its own size, and JSON.

Usage (from the repository root):
    .venv/bin/python benchmarks/memory.py [--n 2000] [--factor 4] [--size 96] [--json memory.json]
    .venv/bin/python benchmarks/memory.py --n 20000 --factor 1 --size 224 --width 16   # one size only
    # tests/test_memory.py's configuration (without the seeded search):
    .venv/bin/python benchmarks/memory.py --n 224 --size 224 --width 4 --batch-size 16 --search-batch 16 \
        --block 16 --pin-malloc --splits 0.5,0.25,0.25 --pool 70 --seeded-n 0 \
        --stages faces pretrain search_de search_ranked masking finetune evaluate
A stage whose memory is bounded by its batch has a ratio near 1; one that loads its split, near factor.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # peak_memory.py beside this file
from peak_memory import measure  # noqa: E402

SPLITS = {"train": 0.8, "val": 0.1, "test": 0.1}

BLOCKS = (
    "pasm.workflow.search:SEARCH_BLOCK",
    "pasm.workflow.search:MASK_BLOCK",
    "pasm.data.h5store:IMAGE_BUFFER",
)
"""The row blocks that bound the stages' memory (``--block`` sets them all in the stage's process)."""


POOL = 350
"""Distinct demo faces drawn per set; larger sets repeat them with a shift, mirror and brightness
change each (the demo renderer takes about 0.1 s per 224 px face: 20,000 would take half an hour)."""


def synthetic_set(
    root: Path,
    n: int,
    size: int,
    seed: int = 0,
    *,
    pool: int = POOL,
    splits: dict[str, float] | None = None,
    pool_cache: Path | None = None,
) -> Path:
    """About n demo faces (7 classes; ``splits``' shares, default SPLITS: 80/10/10 % train/val/test)
    at size px, as PNG folders; up to ``pool`` distinct ones, the rest variations of them.

    The distinct faces depend on (size, seed, pool, splits) only once n >= pool; with ``pool_cache``
    they are rendered once into that folder and shared by every set made from the same ones."""
    from PIL import Image, ImageChops, ImageEnhance, ImageOps

    from pasm.data.demo_dataset import MANIFEST_NAME, write_demo_dataset

    splits = splits or SPLITS
    want = {split: max(1, round(n * share / 7)) for split, share in splits.items()}
    distinct = {split: min(want[split], max(1, round(pool * share / 7))) for split, share in splits.items()}
    if pool_cache is None:
        source = root.with_name(root.name + "-pool")
    else:
        counts = "-".join(f"{s}{c}" for s, c in distinct.items())
        source = Path(pool_cache) / f"pool-{size}px-seed{seed}-{counts}"
    if not (source / MANIFEST_NAME).exists():  # written last: the pool is complete
        write_demo_dataset(source, seed=seed, size=size, per_class=distinct, label_noise=0.0)
    rng = np.random.default_rng(seed)
    for split, count in want.items():
        for class_dir in sorted((source / split).iterdir()):
            sources = sorted(class_dir.glob("*.png"))
            out = root / split / class_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for j in range(count):
                im = Image.open(sources[j % len(sources)]).convert("RGB")
                if j >= len(sources):  # a variation: mirrored or not, shifted, brighter or darker
                    im = ImageOps.mirror(im) if rng.random() < 0.5 else im
                    im = ImageChops.offset(im, int(rng.integers(-size // 16, size // 16 + 1)), 0)
                    im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.8, 1.2)))
                im.save(out / f"{j:06d}.png")
    if pool_cache is None:
        shutil.rmtree(source)
    return root


def search_block(strategy: str, args: argparse.Namespace, fer_run: bool = False) -> dict[str, Any]:
    """The search settings of one strategy: a small budget (memory, not strength, is measured), or
    (``fer_run``) the seeded settings of the FER2013 run that peaked at 12.8 GB (top_k 40, 20 x 2)."""
    top_k, refine_population, refine_generations = (40, 20, 2) if fer_run else (args.top_k, 4, 1)
    return {
        "strategy": strategy,
        "population": args.population,
        "generations": args.generations,
        "scale_f": 0.5,
        "batch_size": getattr(args, "search_batch", 50),  # candidates per forward pass
        "top_k": top_k,
        "refine_generations": refine_generations,
        "refine_population": refine_population,
        "top_pixels": top_k,
        "local_rounds": 2,
        "local_radius": 1,
        "precision": args.precision,
    }


def run_stages(
    work: Path,
    n: int,
    size: int,
    args: argparse.Namespace,
    stages: list[str],
    fer_run: bool = False,
    *,
    malloc: bool = False,
    patch: dict[str, Any] | None = None,
    pool: int = POOL,
    splits: dict[str, float] | None = None,
    pool_cache: Path | None = None,
) -> dict[str, dict]:
    """Make the set, then run each stage once in its own process; {stage: {peak_mb, seconds,
    cpu_seconds}}. ``malloc`` and ``patch``: see peak_memory.measure; ``pool``, ``splits`` and
    ``pool_cache``: see synthetic_set."""
    data, out = work / "data", work / "out"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    synthetic_set(data, n, size, pool=pool, splits=splits, pool_cache=pool_cache)
    print(f"  {n} faces at {size} px written in {time.perf_counter() - t0:.0f} s", flush=True)
    faces = str(out / "faces.h5")
    model = {"arch": "compact", "width": args.width, "pretrained": "none", "weights_file": None}
    schedule = {
        "epochs": 1,
        "batch_size": args.batch_size,
        "lr": 0.05,
        "lr_milestones": [1],
        "crop_pad": 4,
        "precision": args.precision,
    }
    common = {"train_split": "train", "train_subset": None, "seed": 0}
    w = "pasm.workflow."
    round0, shard_de, points = str(out / "round0.pt"), str(out / "shard_de.h5"), str(out / "points.h5")

    def search(strategy: str) -> tuple[str, dict[str, Any]]:
        """One search shard over the whole training split, with `strategy`'s settings."""
        block = search_block(strategy, args, fer_run and strategy == "seeded")
        shard = shard_de if strategy == "de" else str(out / f"shard_{strategy}.h5")
        return (
            w + "search:search_points",
            dict(
                faces=faces,
                model=round0,
                points=shard,
                scatteritem="1-of-1",
                r=1,
                search=block,
                progress=False,
                **common,
            ),
        )

    jobs = {
        "faces": (
            w + "data:faces",
            dict(
                source=[str(data)],
                faces=faces,
                ds="bench",
                fmt="demo",
                root=str(data),
                options={"class_map": {}},
                image_size=size,
                align={},
            ),
        ),
        "pretrain": (
            w + "train:pretrain",
            dict(
                faces=faces,
                model=round0,
                train_log=str(out / "round0.csv"),
                ds="bench",
                network=model,
                schedule=schedule,
                val_split="val",
                progress=False,
                **common,
            ),
        ),
        **{f"search_{strategy}": search(strategy) for strategy in ("de", "seeded", "ranked")},
        "gather": (w + "search:gather_points", dict(shards=[shard_de], faces=faces, points=points, **common)),
        "masking": (
            w + "search:masked_samples",
            dict(
                faces=faces,
                points=points,
                masked=str(out / "masked.h5"),
                grid=str(out / "masked.png"),
                mask_size=max(3, size // 7),
                ds="bench",
                r=1,
            ),
        ),
        "finetune": (
            w + "train:finetune",
            dict(
                faces=faces,
                masked=str(out / "masked.h5"),
                teacher=round0,
                model=str(out / "round1.pt"),
                train_log=str(out / "round1.csv"),
                ds="bench",
                r=1,
                schedule=schedule,
                alpha=1.0,
                beta=0.1,
                val_split="val",
                seed=0,
                progress=False,
            ),
        ),
        "evaluate": (
            w + "evaluate:score_model",
            dict(
                faces=faces,
                model=str(out / "round1.pt"),
                metrics=str(out / "metrics.json"),
                predictions=str(out / "predictions.h5"),
                confusion=str(out / "confusion.png"),
                ds="bench",
                r=1,
                val_split="val",
                eval_splits=["test"],
            ),
        ),
    }
    before = {
        "pretrain": "faces",
        "search_de": "pretrain",
        "search_seeded": "pretrain",
        "search_ranked": "pretrain",
        "gather": "search_de",
        "masking": "gather",
        "finetune": "masking",
        "evaluate": "finetune",
    }
    todo = set()
    for stage in stages:  # a stage runs with everything it needs (those are measured too)
        while stage:
            todo.add(stage)
            stage = before.get(stage)
    results = {}
    for stage, (target, kwargs) in jobs.items():
        if stage not in todo:
            continue
        results[stage] = measure(
            target, kwargs, threads=args.threads, log_path=work / f"{stage}.log", malloc=malloc, patch=patch
        )
        print(
            f"  {stage:14s} peak {results[stage]['peak_mb']:8.0f} MiB  {results[stage]['seconds']:7.1f} s"
            f"  (CPU {results[stage]['cpu_seconds']:.1f} s)",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="faces in the smaller set")
    parser.add_argument(
        "--factor", type=int, default=4, help="the larger set has factor x n faces (1: one set)"
    )
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--width", type=int, default=32, help="compact network width")
    parser.add_argument("--batch-size", type=int, default=64, help="training batch")
    parser.add_argument(
        "--population", type=int, default=4, help="DE population (small: memory, not strength)"
    )
    parser.add_argument("--generations", type=int, default=1)
    parser.add_argument(
        "--top-k", type=int, default=8, help="seeded search's seeds in the N / factor N table"
    )
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--stages",
        nargs="*",
        default=[
            "faces",
            "pretrain",
            "search_de",
            "search_seeded",
            "search_ranked",
            "masking",
            "finetune",
            "evaluate",
        ],
    )
    parser.add_argument(
        "--seeded-n", type=int, default=8000, help="the seeded search alone at this many faces (0: skip)"
    )
    parser.add_argument("--seeded-size", type=int, default=48)
    parser.add_argument(
        "--search-batch", type=int, default=50, help="candidates per forward pass of the search"
    )
    parser.add_argument(
        "--block",
        type=int,
        default=0,
        help="patch SEARCH_BLOCK, MASK_BLOCK and IMAGE_BUFFER to this many rows in every stage (0: as is)",
    )
    parser.add_argument(
        "--pin-malloc", action="store_true", help="pin glibc's allocator (peak_memory.MALLOC_SETTINGS)"
    )
    parser.add_argument("--splits", default="0.8,0.1,0.1", help="train,val,test shares of the synthetic sets")
    parser.add_argument("--pool", type=int, default=POOL, help="distinct faces per set")
    parser.add_argument("--json", default="memory.json")
    parser.add_argument("--work", default=None, help="keep the data and artifacts here (default: a temp dir)")
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="pasm-memory-"))
    shares = [float(x) for x in args.splits.split(",")]
    options: dict[str, Any] = {
        "malloc": args.pin_malloc,
        "patch": {where: args.block for where in BLOCKS} if args.block else None,
        "pool": args.pool,
        "splits": dict(zip(SPLITS, shares, strict=True)),
        "pool_cache": work / "pool",
    }
    sizes = [args.n] if args.factor == 1 else [args.n, args.factor * args.n]
    report: dict[str, Any] = {"size_px": args.size, "width": args.width, "threads": args.threads, "runs": {}}
    try:
        for n in sizes:
            print(f"{n} faces at {args.size} px:", flush=True)
            report["runs"][str(n)] = run_stages(work / f"n{n}", n, args.size, args, args.stages, **options)
        if args.seeded_n:
            print(f"seeded search alone, {args.seeded_n} faces at {args.seeded_size} px:", flush=True)
            report["seeded_alone"] = {
                "n": args.seeded_n,
                "size_px": args.seeded_size,
                **run_stages(
                    work / "seeded", args.seeded_n, args.seeded_size, args, ["search_seeded"], fer_run=True
                )["search_seeded"],
            }
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    runs = report["runs"]
    header = (
        "| stage | "
        + " | ".join(f"peak MiB, N={n}" for n in sizes)
        + (" | ratio |" if len(sizes) > 1 else " |")
    )
    print("\n" + header + "\n|" + " --- |" * (len(sizes) + 1 + (len(sizes) > 1)))
    report["ratios"] = {}
    for stage in runs[str(sizes[0])]:
        peaks = [runs[str(n)][stage]["peak_mb"] for n in sizes]
        line = f"| {stage} | " + " | ".join(f"{p:,.0f}" for p in peaks)
        if len(sizes) > 1:
            report["ratios"][stage] = round(peaks[-1] / peaks[0], 3)
            line += f" | {report['ratios'][stage]:.2f}"
        print(line + " |")
    if "seeded_alone" in report:
        s = report["seeded_alone"]
        print(
            f"\nseeded search (top_k 40, refinement 20 x 2) on {s['n']} faces at {s['size_px']} px: "
            f"peak {s['peak_mb']:,.0f} MiB in {s['seconds']:.0f} s"
        )
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"\nwritten {args.json}")


if __name__ == "__main__":
    main()
