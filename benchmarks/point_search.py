"""One-pixel point search, side by side in one run: (a) torchattacks' OnePixel on the model as
loaded, (a2) the same on pasm's prepared copy of the model (folded batch norms, channels_last),
(b) pasm's `de` at the same budget, (c) pasm's `seeded` strategy, (d) the floor: plain forward
passes of the prepared model over (b)'s number of queries at (b)'s batch size.

All use one trained model file and the same correctly classified training images; (a) vs (a2)
separates what model preparation buys from what the batched engine buys. Prints the table
last and writes the same numbers to a JSON file. torchattacks is a benchmark-only dependency
(``pip install -e '.[bench]'``, torchattacks 3.5.1).

Usage (from the repository root, after the FER2013 CPU round 0 exists):
  snakemake --cores 2 results/fer2013/round0/model.pt --configfile config/fer2013_cpu.yaml
  .venv/bin/python benchmarks/point_search.py [--images 200] [--out results/benchmarks/point_search.json]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from pasm.data.h5store import read_faces
from pasm.nn.inference import inference_model
from pasm.nn.models import load_model
from pasm.search import SearchParams, find_points


class CountingModel(torch.nn.Module):
    """The model behind a [0, 1] input with its own normalisation; counts the images it is shown.
    Either the model as loaded (what a torchattacks user runs) or pasm's inference copy (folded
    batch norms, channels_last: what pasm's search runs)."""

    def __init__(
        self, model: torch.nn.Module, mean: list[float], std: list[float], channels_last: bool = True
    ) -> None:
        super().__init__()
        self.model = model
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += len(x)
        return self.model(((x - self.mean) / self.std).contiguous(memory_format=self.memory_format))


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def true_probs(net: CountingModel, x: torch.Tensor, labels: np.ndarray, batch: int = 50) -> np.ndarray:
    """Softmax probability of the true class for [0, 1] images, in batches."""
    out = []
    with torch.inference_mode():
        for s in range(0, len(x), batch):
            out.append(torch.softmax(net(x[s : s + batch]), 1).numpy())
    probs = np.concatenate(out)
    return probs[np.arange(len(labels)), labels], probs.argmax(1)


def pick_images(
    net: CountingModel, faces_path: Path, split: str, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first n correctly classified training images in a seeded random order."""
    faces = read_faces(faces_path)
    rows = np.flatnonzero(faces.splits == split)
    rows = np.random.default_rng(seed).permutation(rows)[: 4 * n]
    images, labels = faces.images[rows], faces.labels[rows].astype(np.int64)
    _, pred = true_probs(net, to_unit(images), labels)
    keep = np.flatnonzero(pred == labels)[:n]
    if len(keep) < n:
        raise SystemExit(f"only {len(keep)} of {len(rows)} sampled {split} images are classified correctly")
    return images[keep], labels[keep]


def row(
    name: str, seconds: float, n: int, queries: float, prob: np.ndarray | None, flipped: np.ndarray | None
) -> dict:
    """One table row: wall time per image, queries per image, mean true-class prob after, flip rate."""
    return {
        "method": name,
        "s_per_image": seconds / n,
        "queries_per_image": queries,
        "mean_prob_after": None if prob is None else float(prob.mean()),
        "flip_rate": None if flipped is None else float(flipped.mean()),
    }


def run_torchattacks(
    net: CountingModel, images: np.ndarray, labels: np.ndarray, steps: int, pop: int, name: str
) -> dict:
    """(a) torchattacks OnePixel, one image at a time as the library does; queries counted by the wrapper."""
    import torchattacks

    attack = torchattacks.OnePixel(net, pixels=1, steps=steps, popsize=pop, inf_batch=pop)
    x, y = to_unit(images), torch.from_numpy(labels)
    net.images = 0
    start = time.perf_counter()
    adv = attack(x, y)
    seconds = time.perf_counter() - start
    queries = net.images / len(images)
    prob, pred = true_probs(net, adv, labels)
    return row(f"{name} {steps} x {pop}", seconds, len(images), queries, prob, pred != labels)


def run_pasm(
    net: CountingModel, images: np.ndarray, labels: np.ndarray, params: SearchParams, name: str
) -> dict:
    """(b)/(c) pasm's search; the result is checked by re-evaluating the perturbed images it reports."""
    start = time.perf_counter()
    out = find_points(
        net.model,
        images,
        labels,
        mean=net.mean.flatten().tolist(),
        std=net.std.flatten().tolist(),
        params=params,
        progress=False,
    )
    seconds = time.perf_counter() - start
    adv = images.copy()
    adv[np.arange(len(images)), out["y"], out["x"]] = out["rgb"]
    prob, pred = true_probs(net, to_unit(adv), labels)
    if not np.allclose(prob, out["prob_after"], atol=1e-4):
        raise AssertionError(f"{name}: reported prob_after differs from re-evaluation")
    result = row(name, seconds, len(images), float(out["queries"].mean()), prob, pred != labels)
    result["total_queries"] = int(out["queries"].sum())
    return result


def run_floor(net: CountingModel, shape: tuple[int, ...], total_queries: int, batch: int, n: int) -> dict:
    """(d) plain forward passes of the model over total_queries images at the given batch size."""
    x = torch.randn(batch, *shape).contiguous(memory_format=torch.channels_last)
    passes = math.ceil(total_queries / batch)
    with torch.inference_mode():
        net.model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(passes):
            net.model(x)
        seconds = time.perf_counter() - start
    return row(
        f"(d) floor: forwards of the prepared model, batch {batch}",
        seconds,
        n,
        passes * batch / n,
        None,
        None,
    )


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="results/fer2013/round0/model.pt")
    ap.add_argument("--faces", default="results/fer2013/faces.h5")
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--steps", type=int, default=20, help="generations of (a) and (b)")
    ap.add_argument("--population", type=int, default=50, help="population of (a) and (b)")
    ap.add_argument("--batch", type=int, default=50, help="pasm forward batch size")
    ap.add_argument("--top-k", type=int, default=40)
    ap.add_argument("--refine-generations", type=int, default=2)
    ap.add_argument("--refine-population", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="results/benchmarks/point_search.json")
    ap.add_argument(
        "--methods", default="a,a2,b,c,d", help="comma-separated subset of a,a2,b,c,d (d after b)"
    )
    args = ap.parse_args()

    for path in (args.model, args.faces):
        if not Path(path).exists():
            raise SystemExit(
                f"{path} is missing; build it with: snakemake --cores 2 results/fer2013/round0/model.pt "
                "--configfile config/fer2013_cpu.yaml"
            )
    model, meta = load_model(args.model)
    net = CountingModel(inference_model(model), meta["mean"], meta["std"]).eval()
    images, labels = pick_images(net, Path(args.faces), args.split, args.images, args.seed)
    clean, _ = true_probs(net, to_unit(images), labels)
    n = len(images)
    print(
        f"model {args.model} ({meta['arch']}, {meta['image_size']} px, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters), torch threads "
        f"{torch.get_num_threads()}, {n} correctly classified {args.split} images, "
        f"mean clean true-class prob {clean.mean():.3f}",
        flush=True,
    )

    de = SearchParams(
        strategy="de",
        population=args.population,
        generations=args.steps,
        batch_size=args.batch,
        seed=args.seed,
    )
    seeded = SearchParams(
        strategy="seeded",
        top_k=args.top_k,
        refine_generations=args.refine_generations,
        refine_population=args.refine_population,
        batch_size=args.batch,
        seed=args.seed,
    )
    plain = CountingModel(model, meta["mean"], meta["std"], channels_last=False).eval()
    runs = {
        "a": lambda: run_torchattacks(
            plain, images, labels, args.steps, args.population, "(a) torchattacks OnePixel"
        ),
        "a2": lambda: run_torchattacks(
            net,
            images,
            labels,
            args.steps,
            args.population,
            "(a2) torchattacks OnePixel on pasm's prepared model",
        ),
        "b": lambda: run_pasm(net, images, labels, de, f"(b) pasm de {args.steps} x {args.population}"),
        "c": lambda: run_pasm(
            net,
            images,
            labels,
            seeded,
            f"(c) pasm seeded: {args.top_k} gradient seeds + "
            f"{args.refine_generations} x {args.refine_population} DE",
        ),
    }
    results = {}
    for key in args.methods.split(","):
        if key == "d":
            queries = (
                results["b"]["total_queries"] if "b" in results else n * args.population * (args.steps + 1)
            )
            results["d"] = run_floor(net, (3, *images.shape[1:3]), queries, args.batch, n)
        else:
            results[key] = runs[key]()
        print(results[key], flush=True)

    ratio_of = {
        "time_a_over_b": ("a", "b"),
        "time_a_over_c": ("a", "c"),
        "time_b_over_d": ("b", "d"),
        "time_a2_over_b": ("a2", "b"),
    }
    ratios = {
        name: results[p]["s_per_image"] / results[q]["s_per_image"]
        for name, (p, q) in ratio_of.items()
        if p in results and q in results
    }
    report = {
        "model": args.model,
        "images": n,
        "mean_prob_before": float(clean.mean()),
        "torch_threads": torch.get_num_threads(),
        "methods": list(results.values()),
        "ratios": ratios,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    print(f"\nwrote {args.out}\n")
    print(f"mean clean true-class prob {clean.mean():.3f} over {n} images")
    print("| method | queries/img | s/img | mean true-class prob after | flipped |")
    print("| --- | --- | --- | --- | --- |")
    for r in results.values():
        print(
            f"| {r['method']} | {r['queries_per_image']:.0f} | {r['s_per_image']:.3f} | "
            f"{fmt(r['mean_prob_after'], '.3f')} | "
            f"{fmt(None if r['flip_rate'] is None else 100 * r['flip_rate'], '.0f')}"
            f"{'' if r['flip_rate'] is None else '%'} |"
        )
    print(
        "   ".join(
            f"{name.replace('time_', 'time(').replace('_over_', ')/time(')}) = {v:.2f}x"
            for name, v in ratios.items()
        )
    )


if __name__ == "__main__":
    main()
