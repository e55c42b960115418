"""How strong each one-pixel search is for its time, side by side in one run on one model and the same
correctly classified training images: a random pixel (the floor), Su et al.'s DE at five budgets up
to the paper's 400 x 100, the seeded search and the ranked search at several budgets.

For each search: mean true-class probability after the attack with its 95% interval over images,
flip rate, queries and wall seconds per image, and how often its point lies inside the S x S mask
centred on the paper-budget DE's point (the mask is all PASM uses of a point). Writes the table
(markdown, also printed), a JSON file, the points per image (.npz) and a plot of strength against
log time (the frontier).

Usage (from the repository root; docs/method.md, "Point search", says how the models were made):
  .venv/bin/python benchmarks/search_strength.py --model results/fer2013/seed0/round0/model.pt \\
      --faces results/fer2013/faces.h5 --mask-size 7 --out results/benchmarks/strength_fer2013
  .venv/bin/python benchmarks/search_strength.py --model results/ck112/round0/model.pt \\
      --faces results/ck112/faces.h5 --mask-size 17 --paper-images 20 --out results/benchmarks/strength_r18
--paper-images runs the paper-budget DE on the first N images only (at 112 px on a CPU it takes
minutes per image); every search's agreement and paired comparison with it then use those N.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from pasm.data.h5store import read_faces
from pasm.nn.inference import inference_model
from pasm.nn.models import load_model
from pasm.search import SearchParams, find_points

PAPER = "de 400 x 100"
DEFAULT = "ranked 128 + 4 local"
"""The row whose settings config/config.yaml ships (method.search)."""


@dataclass(frozen=True)
class Search:
    """One row of the table: a name, its family (for the plot) and its settings (None: random pixel)."""

    name: str
    family: str
    params: dict | None


def searches(batch: int) -> list[Search]:
    """The searches compared, cheapest first within each family."""
    rows = [Search("random pixel", "random", None)]
    for pop, gens in ((8, 2), (20, 10), (50, 20), (100, 50), (400, 100)):
        rows.append(
            Search(f"de {pop} x {gens}", "de", {"strategy": "de", "population": pop, "generations": gens})
        )
    for k, pop, gens in ((8, 4, 1), (40, 20, 2), (100, 20, 5), (200, 40, 10)):
        rows.append(
            Search(
                f"seeded {k} + {pop} x {gens}",
                "seeded",
                {"strategy": "seeded", "top_k": k, "refine_population": pop, "refine_generations": gens},
            )
        )
    for k, rounds in ((16, 1), (64, 2), (128, 4), (256, 8)):
        rows.append(
            Search(
                f"ranked {k} + {rounds} local",
                "ranked",
                {"strategy": "ranked", "top_pixels": k, "local_rounds": rounds, "local_radius": 1},
            )
        )
    for s in rows:
        if s.params is not None:
            s.params.setdefault("batch_size", batch)
    return rows


def true_prob(
    model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, mean, std, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """True-class probability and prediction of uint8 (N, H, W, 3) images under the prepared model."""
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    sd = torch.tensor(std, device=device).view(1, 3, 1, 1)
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), 50):
            x = torch.from_numpy(images[s : s + 50]).to(device).permute(0, 3, 1, 2).float() / 255.0
            x = ((x - m) / sd).contiguous(memory_format=torch.channels_last)
            out.append(model(x).float().softmax(1).cpu())
    p = torch.cat(out).numpy()
    return p[np.arange(len(labels)), labels], p.argmax(1)


def pick_images(
    model, faces: Path, split: str, n: int, seed: int, mean, std, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """The first n correctly classified ``split`` images in a seeded random order."""
    data = read_faces(faces)
    rows = np.random.default_rng(seed).permutation(np.flatnonzero(data.splits == split))[: 10 * n]
    rows.sort()  # read in file order
    images, labels = data.images[rows], data.labels[rows].astype(np.int64)
    _, pred = true_prob(model, images, labels, mean, std, device)
    keep = np.flatnonzero(pred == labels)[:n]
    if len(keep) < n:
        raise SystemExit(f"only {len(keep)} of {len(rows)} sampled {split} images of {faces} are right")
    return images[keep], labels[keep]


def random_pixel(n: int, height: int, width: int, seed: int) -> np.ndarray:
    """(n, 5) one uniformly random pixel per image with a uniformly random colour."""
    rng = np.random.default_rng(seed)
    return np.stack(
        [rng.integers(0, width, n), rng.integers(0, height, n), *rng.integers(0, 256, (3, n))], axis=1
    )


def run_search(
    model,
    images,
    labels,
    search: Search,
    mean,
    std,
    seed: int,
    device: str = "cpu",
    precision: str = "float32",
) -> dict:
    """x, y, rgb, prob_after, flipped, queries and wall seconds of one search on every image; the
    reported probabilities are checked against a re-evaluation of the perturbed images."""
    start = time.perf_counter()
    if search.params is None:
        cand = random_pixel(len(images), *images.shape[1:3], seed)
        out = {"x": cand[:, 0], "y": cand[:, 1], "rgb": cand[:, 2:].astype(np.uint8)}
        out["queries"] = np.ones(len(images))
    else:
        params = SearchParams(**{"seed": seed, "precision": precision, **search.params})
        out = find_points(
            model,
            images,
            labels,
            mean=mean,
            std=std,
            params=params,
            device=device,
            progress=False,
            prepared=True,
        )
    searched = time.perf_counter() - start
    adv = images.copy()
    adv[np.arange(len(images)), out["y"], out["x"]] = out["rgb"]
    prob, pred = true_prob(model, adv, labels, mean, std, device)
    # a search's time is its own (it evaluated its points); the random pixel's includes evaluating it
    seconds = time.perf_counter() - start if search.params is None else searched
    # the table uses the re-evaluation; the search's own figure may differ by its batch's rounding
    # (bfloat16 forwards of other batch sizes), never by more than a rounding
    if search.params is not None and not np.allclose(prob, out["prob_after"], atol=2e-2):
        raise AssertionError(f"{search.name}: reported prob_after differs from its re-evaluation")
    return {
        "x": np.asarray(out["x"]),
        "y": np.asarray(out["y"]),
        "prob": prob,
        "flip": pred != labels,
        "queries": np.asarray(out["queries"], dtype=float),
        "seconds": seconds,
    }


def mean_interval(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and its 95% t-interval over images."""
    m = float(np.mean(values))
    if len(values) < 2:
        return m, m, m
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return m, m - half, m + half


def summarise(name: str, family: str, r: dict, ref: dict | None, sub: np.ndarray, mask: int) -> dict:
    """One table row; ``ref`` is the paper-budget DE's result on the images ``sub``."""
    m, lo, hi = mean_interval(r["prob"])
    row = {
        "search": name,
        "family": family,
        "images": len(r["prob"]),
        "mean_prob_after": m,
        "ci95": [lo, hi],
        "flip_rate": float(r["flip"].mean()),
        "queries_per_image": float(r["queries"].mean()),
        "seconds_per_image": r["seconds"] / len(r["prob"]),
    }
    if ref is not None:
        half = mask // 2
        inside = (np.abs(r["x"][sub] - ref["x"]) <= half) & (np.abs(r["y"][sub] - ref["y"]) <= half)
        diff = r["prob"][sub] - ref["prob"]
        d, dlo, dhi = mean_interval(diff)
        row.update(
            in_paper_mask=float(inside.mean()),
            on_paper_images={
                "mean_prob_after": float(r["prob"][sub].mean()),
                "flip_rate": float(r["flip"][sub].mean()),
                "paired_diff_vs_paper": [d, dlo, dhi],
            },
        )
    return row


def plot(rows: list[dict], title: str, path: Path) -> None:
    """Mean true-class probability after the attack (with 95% intervals) against seconds per image
    (log scale), one colour per family, with the frontier of searches no other beats on both."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"random": "grey", "de": "tab:blue", "seeded": "tab:orange", "ranked": "tab:green"}
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for fam, colour in colours.items():
        pts = [r for r in rows if r["family"] == fam]
        if not pts:
            continue
        t = [r["seconds_per_image"] for r in pts]
        m = [r["mean_prob_after"] for r in pts]
        err = [
            [r["mean_prob_after"] - r["ci95"][0] for r in pts],
            [r["ci95"][1] - r["mean_prob_after"] for r in pts],
        ]
        ax.errorbar(t, m, yerr=err, fmt="o-" if fam != "random" else "o", color=colour, label=fam, capsize=3)
        for r in pts:
            ax.annotate(
                r["search"],
                (r["seconds_per_image"], r["mean_prob_after"]),
                fontsize=7,
                xytext=(4, 4),
                textcoords="offset points",
            )
    ordered = sorted(rows, key=lambda r: r["seconds_per_image"])
    frontier, lowest = [], np.inf
    for r in ordered:
        if r["mean_prob_after"] < lowest:
            frontier.append(r)
            lowest = r["mean_prob_after"]
    ax.step(
        [r["seconds_per_image"] for r in frontier],
        [r["mean_prob_after"] for r in frontier],
        where="post",
        color="black",
        alpha=0.3,
        lw=4,
        label="frontier",
    )
    paper = next((r for r in rows if r["search"] == PAPER), None)
    if paper:
        ax.axhspan(*paper["ci95"], color="tab:blue", alpha=0.1, label=f"{PAPER}: 95% interval")
        ax.axvline(
            paper["seconds_per_image"] / 100, color="tab:red", ls="--", lw=1, label="1/100 of its time"
        )
    ax.set_xscale("log")
    ax.set_xlabel("wall seconds per image (log)")
    ax.set_ylabel("mean true-class probability after the attack (lower: stronger)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    """The rows as a markdown table; when the paper DE ran on fewer faces than the others, a column
    gives each search's flip rate on those faces too."""
    paper = next((r for r in rows if r["search"] == PAPER), None)
    subset = paper is not None and any(r["images"] != paper["images"] for r in rows)
    head = (
        "| search | images | mean p(true) after [95% CI] | flip rate "
        + ("| flip rate on the paper DE's faces " if subset else "")
        + "| queries/img | s/img | time / paper DE | in paper DE's mask | minus paper DE, paired [95% CI] |\n"
        + "| --- " * (9 + subset)
        + "|"
    )
    lines = [head]
    for r in rows:
        ratio = f"{r['seconds_per_image'] / paper['seconds_per_image']:.4f}" if paper else "-"
        inside = f"{r['in_paper_mask']:.2f}" if "in_paper_mask" in r else "-"
        on = r.get("on_paper_images", {})
        d = on.get("paired_diff_vs_paper")
        paired = f"{d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]" if d and r["search"] != PAPER else "-"
        flips = f"| {on['flip_rate']:.2f} " if subset and on else ("| - " if subset else "")
        lines.append(
            f"| {r['search']} | {r['images']} "
            f"| {r['mean_prob_after']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] "
            f"| {r['flip_rate']:.2f} {flips}| {r['queries_per_image']:.0f} | {r['seconds_per_image']:.4f} "
            f"| {ratio} | {inside} | {paired} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--faces", required=True)
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--paper-images", type=int, default=0, help="the paper-budget DE on the first N (0: all)")
    ap.add_argument(
        "--on-paper-images",
        default="",
        help="comma-separated further searches (e.g. 'de 100 x 50') to run on the paper DE's images only",
    )
    ap.add_argument("--mask-size", type=int, required=True, help="S of the data set's config (mask_size)")
    ap.add_argument("--only", default="", help="comma-separated search names to run (default: all)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=0, help="forward batch (0: the device's default)")
    ap.add_argument("--precision", default="float32", choices=["float32", "bfloat16"], help="every search's")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/benchmarks/search_strength", help="path stem of .json/.md/.png")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    for path in (args.model, args.faces):
        if not Path(path).exists():
            raise SystemExit(f"{path} is missing (see this script's docstring)")
    net, meta = load_model(args.model)
    device = torch.device(args.device)
    model = inference_model(net, device, args.precision)
    mean, std = list(meta["mean"]), list(meta["std"])
    images, labels = pick_images(
        model, Path(args.faces), args.split, args.images, args.seed, mean, std, args.device
    )
    n_paper = args.paper_images or len(images)
    sub = np.arange(min(n_paper, len(images)))
    wanted = {s.strip() for s in args.only.split(",") if s.strip()}
    plan = [s for s in searches(args.batch) if not wanted or s.name in wanted or s.name == PAPER]
    load = os.getloadavg()
    title = (
        f"{meta['arch']} at {meta['image_size']} px, {len(images)} correctly classified {args.split} faces, "
        f"{args.device}, {args.threads} threads, {args.precision}"
    )
    print(title, f"; load average before: {load[0]:.2f}", flush=True)

    results: dict[str, dict] = {}
    paper = next(s for s in plan if s.name == PAPER)
    t0 = time.perf_counter()
    ref = run_search(
        model, images[sub], labels[sub], paper, mean, std, args.seed, args.device, args.precision
    )
    results[PAPER] = ref
    print(f"{PAPER} on {len(sub)} images: {ref['seconds']:.1f} s", flush=True)
    on_sub = {PAPER} | {s.strip() for s in args.on_paper_images.split(",") if s.strip()}
    for s in plan:
        if s.name == PAPER:
            continue
        rows_of = sub if s.name in on_sub else np.arange(len(images))
        results[s.name] = run_search(
            model, images[rows_of], labels[rows_of], s, mean, std, args.seed, args.device, args.precision
        )
        print(f"{s.name} on {len(rows_of)} images: {results[s.name]['seconds']:.1f} s", flush=True)
    rows = []
    for s in plan:
        r = results[s.name]
        # positions of the paper DE's images among those this search ran on
        rows.append(
            summarise(
                s.name, s.family, r, ref, sub if s.name not in on_sub else np.arange(len(sub)), args.mask_size
            )
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = table(rows)
    print(text)
    out.with_suffix(".md").write_text(f"{title}\n\n{text}\n")
    info = {
        "title": title,
        "model": args.model,
        "faces": args.faces,
        "images": len(images),
        "paper_images": len(sub),
        "mask_size": args.mask_size,
        "machine": platform.processor() or platform.machine(),
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "wall_seconds": time.perf_counter() - t0,
        "rows": rows,
    }
    out.with_suffix(".json").write_text(json.dumps(info, indent=2))
    per_image = {f"{name}:{k}": v for name, r in results.items() for k, v in r.items() if k != "seconds"}
    np.savez_compressed(out.with_suffix(".npz"), **per_image)  # each search's points, per image
    plot(rows, title, out.with_suffix(".png"))
    print(f"wrote {out.with_suffix('.md')}, .json, .npz and .png", flush=True)


if __name__ == "__main__":
    main()
