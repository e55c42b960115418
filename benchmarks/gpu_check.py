"""Is pasm healthy on this GPU machine? Runs the CUDA tests, one Snakemake run with profiles/gpu and
benchmarks against their floors, each step even if an earlier one failed, and writes one JSON summary.

Without CUDA it runs end to end in a CPU mode: the CUDA tests skip, the Snakemake run uses a fake GPU
slot (PASM_FAKE_GPUS=1, the network on the CPU) and the benchmarks run on the CPU at small sizes.
Exits non-zero when a step failed or a "good" threshold was missed, and says which.

Usage (from the repository root; docs/operations.md, "Checking a GPU machine"):
  make gpu-check
  python benchmarks/gpu_check.py [--out results/gpu_check.json] [--quick] [--cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
BUDGET_S = 480
"""The whole check's wall-clock budget: a step's timeout never runs past it."""

SIZES: dict[str, dict[str, Any]] = {
    # ResNet-34 at 224 px, the paper's setting; the search at CUDA's default forward batch
    "cuda": {
        "arch": "resnet34",
        "width": 32,
        "size": 224,
        "train_images": 4096,
        "batches": (64, 256),
        "search_batch": 1024,
        "search_images": 128,
        "search_population": 64,
        "search_generations": 3,
        "agree_train_images": 2048,
        "agree_epochs": 5,
        "agree_images": 256,
        "agree_population": 32,
        "agree_generations": 4,
        "strength_images": 64,
        "strength_paper_images": 16,
    },
    # the compact CNN at 48 px (FER2013's setting); the search at the CPU's default forward batch
    "cpu": {
        "arch": "compact",
        "width": 32,
        "size": 48,
        "train_images": 512,
        "batches": (64, 256),
        "search_batch": 50,
        "search_images": 20,
        "search_population": 20,
        "search_generations": 3,
        "agree_train_images": 512,
        "agree_epochs": 2,
        "agree_images": 20,
        "agree_population": 8,
        "agree_generations": 3,
        "strength_images": 20,
        "strength_paper_images": 2,
    },
}
QUICK = {
    "cuda": {
        "train_images": 2048,
        "search_images": 64,
        "agree_train_images": 1024,
        "agree_images": 128,
        "strength_paper_images": 8,
    },
    "cpu": {
        "train_images": 256,
        "search_images": 10,
        "agree_train_images": 256,
        "agree_images": 10,
        "strength_images": 10,
        "strength_paper_images": 1,
    },
}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

GOOD_LOOP = 0.85  # pasm's training loop against the training floor
GOOD_READER = 1.5  # the HDF5 reader (with the teacher copy) against the GPU's training rate
GOOD_SEARCH = 0.9  # the point search's forwards/s against plain forwards
GOOD_AGREE = 0.9  # bfloat16 and float32 pick the same pixel
GOOD_STRENGTH_TIME = 100.0  # the paper-budget DE's wall time over the ranked search's


def sizes(device: str, quick: bool) -> dict[str, Any]:
    """The benchmark sizes for a device type (cuda or cpu), shrunk by --quick."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return {**SIZES[kind], **(QUICK[kind] if quick else {})}


# --------------------------------------------------------------------------- measurements (children)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _reset_peak(device: str) -> None:
    """Start a new peak-memory window: the GPU allocator's, or the process's VmHWM on the CPU."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current resident size
    except OSError:
        pass


def _peak_mib(device: str) -> float:
    """Peak GPU memory allocated by torch, or the process's peak resident memory (VmHWM), in MiB."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _prepare_device(device: str) -> dict[str, Any]:
    """IEEE float32 on CUDA as the workflow's jobs run it (TF32 off); what the device is."""
    import torch

    if device.startswith("cuda"):
        from pasm.nn.numerics import set_cuda_numerics

        set_cuda_numerics(False)
        return {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda}
    return {
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }


def floor_rate(arch: str, width: int, size: int, batch: int, steps: int, device: str) -> float:
    """Images/s of the model's own forward+backward+SGD step on pre-made device tensors, channels_last,
    at the training loop's precision (bfloat16 autocast on CUDA): no data handling at all."""
    import torch
    import torch.nn.functional as F

    from pasm.nn.inference import autocast
    from pasm.nn.models import build_model

    torch.manual_seed(0)
    model = build_model(arch, 7, width).to(device=device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 7, (batch,), device=device)

    def step() -> None:
        with autocast(device, "auto"):
            logits = model(x).float()
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def loop_rate(arch: str, width: int, images: Any, labels: Any, batch: int, device: str) -> float:
    """Images/s of pasm.train.training.train over the in-memory uint8 images: epochs 2 and 3 of three
    (the first warms the device up), augmentation and bookkeeping included."""
    import torch

    from pasm.nn.models import build_model
    from pasm.train.training import TrainParams, train

    torch.manual_seed(0)
    params = TrainParams(epochs=3, batch_size=batch, lr=0.01, lr_milestones=[], crop_pad=8, seed=0)
    hist = train(
        build_model(arch, 7, width), images, labels, params, mean=MEAN, std=STD, device=device, progress=False
    )
    timed = hist[1:]
    return sum(h["images_per_s"] * h["seconds"] for h in timed) / sum(h["seconds"] for h in timed)


def bench_training(device: str, quick: bool) -> dict[str, Any]:
    """pasm's training loop against the floor at each batch size, and the peak memory of the loop."""
    import numpy as np

    s = sizes(device, quick)
    info = _prepare_device(device)
    rng = np.random.default_rng(0)
    n = s["train_images"]
    images = rng.integers(0, 256, (n, s["size"], s["size"], 3), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    rows = []
    for batch in s["batches"]:
        steps = max(5, n // batch)
        floor = floor_rate(s["arch"], s["width"], s["size"], batch, steps, device)
        _reset_peak(device)
        loop = loop_rate(s["arch"], s["width"], images, labels, batch, device)
        rows.append(
            {
                "batch": batch,
                "loop": loop,
                "floor": floor,
                "ratio": loop / floor,
                "peak_mib": _peak_mib(device),
            }
        )
        print(f"batch {batch}: loop {loop:.1f} img/s, floor {floor:.1f} img/s", file=sys.stderr, flush=True)
    return {**info, "arch": s["arch"], "width": s["width"], "size": s["size"], "images": n, "batches": rows}


def bench_search(device: str, quick: bool) -> dict[str, Any]:
    """The DE point search's forwards/s against plain forwards of the prepared model at the search's
    batch; every image misclassified, so each runs the whole budget (full batches, no early stop)."""
    import numpy as np
    import torch

    from pasm.nn.inference import inference_model, predict_logits
    from pasm.nn.models import build_model
    from pasm.search import SearchParams, find_points

    s = sizes(device, quick)
    info = _prepare_device(device)
    torch.manual_seed(0)
    model = build_model(s["arch"], 7, s["width"]).eval()
    n, size, batch = s["search_images"], s["size"], s["search_batch"]
    images = np.random.default_rng(1).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    prepared = inference_model(model, device, "auto")
    labels = (predict_logits(prepared, images, MEAN, STD, device=device).argmax(1) + 1) % 7
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        prepared(x)  # warm-up at the search's batch
    params = SearchParams(
        population=s["search_population"],
        generations=s["search_generations"],
        batch_size=batch,
        seed=0,
    )

    def search_rate() -> tuple[float, int]:
        """Forwards/s of one whole search, and its forwards (every query counted)."""
        _sync(device)
        start = time.perf_counter()
        out = find_points(
            prepared,
            images,
            labels,
            mean=MEAN,
            std=STD,
            params=params,
            device=device,
            progress=False,
            prepared=True,
        )
        _sync(device)
        queries = int(out["queries"].sum())
        return queries / (time.perf_counter() - start), queries

    def floor_rate(queries: int) -> float:
        """Forwards/s of plain batches of pre-made inputs, as many forwards as the search made."""
        passes = math.ceil(queries / batch)
        with torch.inference_mode():
            _sync(device)
            start = time.perf_counter()
            for _ in range(passes):
                prepared(x)
            _sync(device)
        return passes * batch / (time.perf_counter() - start)

    _reset_peak(device)
    rates, floors = [], []
    for _ in range(2):  # alternated, best of two: a busy moment of the machine hits either side
        rate, queries = search_rate()
        rates.append(rate)
        floors.append(floor_rate(queries))
    peak = _peak_mib(device)
    search, floor = max(rates), max(floors)
    return {
        **info,
        "arch": s["arch"],
        "width": s["width"],
        "size": size,
        "batch": batch,
        "images": n,
        "population": params.population,
        "generations": params.generations,
        "queries": queries,
        "search_forwards_per_s": search,
        "floor_forwards_per_s": floor,
        "ratio": search / floor,
        "peak_mib": peak,
    }


def quadrant_task(n: int, size: int, seed: int = 0) -> tuple[Any, Any]:
    """Images whose class is their pattern of bright quadrants: learnable in a few epochs, so the
    searched network has confident, mostly correct predictions (as benchmarks/precision.py)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, n)
    images = rng.integers(0, 60, (n, size, size, 3), dtype=np.uint8)
    h = size // 2
    images[labels & 1 == 1, :h, :h] += 120
    images[labels & 2 == 2, h:, :h] += 120
    images[labels & 4 == 4, :h, h:] += 120
    images[labels == 0, h:, h:] += 120
    return images, labels


def bench_agreement(device: str, quick: bool) -> dict[str, Any]:
    """How often the DE search picks the same pixel at float32 and at bfloat16 on a briefly trained
    network (same images, same seed)."""
    import torch

    from pasm.nn.models import build_model
    from pasm.search import SearchParams, find_points
    from pasm.train.training import TrainParams, train

    s = sizes(device, quick)
    info = _prepare_device(device)
    images, labels = quadrant_task(s["agree_train_images"], s["size"])
    torch.manual_seed(0)
    model = build_model(s["arch"], 7, s["width"])
    params = TrainParams(
        epochs=s["agree_epochs"], batch_size=64, lr=0.05, lr_milestones=[], crop_pad=4, seed=0
    )
    hist = train(model, images, labels, params, mean=MEAN, std=STD, device=device, progress=False)
    n = s["agree_images"]
    found, seconds = {}, {}
    for precision in ("float32", "bfloat16"):
        search = SearchParams(
            population=s["agree_population"],
            generations=s["agree_generations"],
            batch_size=s["search_batch"],
            seed=0,
            precision=precision,
        )
        start = time.perf_counter()
        found[precision] = find_points(
            model, images[:n], labels[:n], mean=MEAN, std=STD, params=search, device=device, progress=False
        )
        seconds[precision] = time.perf_counter() - start
    a, b = found["float32"], found["bfloat16"]
    same = (a["x"] == b["x"]) & (a["y"] == b["y"])
    return {
        **info,
        "arch": s["arch"],
        "width": s["width"],
        "size": s["size"],
        "images": n,
        "train_acc": hist[-1]["train_acc"],
        "clean_correct": float(a["clean_correct"].mean()),
        "flip_rate": {"float32": float(a["flipped"].mean()), "bfloat16": float(b["flipped"].mean())},
        "seconds": seconds,
        "same_pixel": float(same.mean()),
    }


def bench_strength(device: str, quick: bool) -> dict[str, Any]:
    """benchmarks/search_strength.py's comparison on a briefly trained network: the paper-budget DE
    (400 x 100) on a few images, the ranked search (the shipped default) and a random pixel on more;
    strength and wall time per image of each."""
    import numpy as np
    import search_strength as bench
    import torch

    from pasm.nn.inference import inference_model
    from pasm.nn.models import build_model
    from pasm.train.training import TrainParams, train

    s = sizes(device, quick)
    info = _prepare_device(device)
    images, labels = quadrant_task(s["agree_train_images"], s["size"])
    torch.manual_seed(0)
    model = build_model(s["arch"], 7, s["width"])
    params = TrainParams(
        epochs=s["agree_epochs"], batch_size=64, lr=0.05, lr_milestones=[], crop_pad=4, seed=0
    )
    train(model, images, labels, params, mean=MEAN, std=STD, device=device, progress=False)
    net = inference_model(model, torch.device(device), "auto")  # bfloat16 on CUDA, as the search runs
    _, pred = bench.true_prob(net, images, labels, MEAN, STD, device)
    right = np.flatnonzero(pred == labels)[: s["strength_images"]]
    x, y = images[right], labels[right]
    sub = np.arange(min(s["strength_paper_images"], len(right)))
    plan = {r.name: r for r in bench.searches(s["search_batch"])}
    ref = bench.run_search(net, x[sub], y[sub], plan[bench.PAPER], MEAN, STD, 0, device, "auto")
    mask = 31 * s["size"] // 224 | 1  # the paper's S = 31 at 224 px, scaled (odd)
    rows = [bench.summarise(bench.PAPER, "de", ref, ref, np.arange(len(sub)), mask)]
    for name in ("random pixel", bench.DEFAULT):
        r = bench.run_search(net, x, y, plan[name], MEAN, STD, 0, device, "auto")
        rows.append(bench.summarise(name, plan[name].family, r, ref, sub, mask))
    paper, ranked = rows[0], rows[2]
    return {
        **info,
        "arch": s["arch"],
        "size": s["size"],
        "images": len(right),
        "paper_images": len(sub),
        "rows": rows,
        "time_ratio": paper["seconds_per_image"] / ranked["seconds_per_image"],
        "ranked_minus_paper": ranked["on_paper_images"]["paired_diff_vs_paper"],
    }


CHILDREN: dict[str, Callable[[str, bool], dict[str, Any]]] = {
    "training": bench_training,
    "search": bench_search,
    "agreement": bench_agreement,
    "strength": bench_strength,
}


def child_main(name: str, device: str, quick: bool, result: str) -> None:
    """Run one measurement in this (fresh) process and write its figures as JSON."""
    Path(result).write_text(json.dumps(CHILDREN[name](device, quick), indent=2))


# --------------------------------------------------------------------------- steps (parent)


@dataclass
class Figure:
    """One measured figure of a step, with its "good" threshold (a minimum) when it has one."""

    name: str
    value: float | None
    unit: str = ""
    minimum: float | None = None
    good: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.minimum is not None and self.value is not None and self.good is None:
            self.good = self.value >= self.minimum


@dataclass
class Step:
    """One step's outcome: ok, failed or skipped (with the reason), its seconds, figures and details."""

    name: str
    result: str = "ok"
    reason: str = ""
    seconds: float = 0.0
    figures: list[Figure] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    log: str = ""


class Check:
    """Runs the steps in order under one wall-clock budget and collects their outcomes."""

    def __init__(self, device: str, quick: bool, logs: Path, budget: float) -> None:
        self.device, self.quick, self.logs, self.budget = device, quick, logs, budget
        self.deadline = time.monotonic() + budget
        self.steps: list[Step] = []
        logs.mkdir(parents=True, exist_ok=True)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def timeout(self, wanted: float) -> float:
        """A step's timeout: what it wants, but never past the budget."""
        return max(0.0, min(wanted, self.deadline - time.monotonic()))

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child: this interpreter's bin first on PATH, the repository importable."""
        path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
        bin_dir = str(Path(sys.executable).parent)
        return {
            **os.environ,
            "PYTHONPATH": path,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            **extra,
        }

    def command(
        self, step: Step, cmd: list[str], timeout: float, env: dict[str, str] | None = None, cwd: Path = REPO
    ) -> subprocess.CompletedProcess | None:
        """Run a command with its output in the step's log; None (the step failed) on a timeout."""
        log = self.logs / f"{step.name}.log"
        step.log = str(log)
        with open(log, "w") as fh:
            fh.write("$ " + " ".join(cmd) + "\n")
            fh.flush()
            # its own process group: a timeout ends the command and every job it started (Snakemake's)
            proc = subprocess.Popen(
                cmd,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=env or self.env(),
                cwd=cwd,
                start_new_session=True,
            )
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                step.result, step.reason = "failed", f"timed out after {timeout:.0f} s"
                return None
            return subprocess.CompletedProcess(cmd, proc.returncode)

    def child(self, step: Step, name: str, timeout: float) -> dict[str, Any] | None:
        """Run a measurement in a fresh process (a crash or a stuck GPU stays there); its figures or None."""
        with tempfile.TemporaryDirectory() as tmp:
            result = Path(tmp) / "result.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--device", self.device]
            cmd += ["--result", str(result)] + (["--quick"] if self.quick else [])
            proc = self.command(step, cmd, timeout)
            if proc is None:
                return None
            if proc.returncode != 0 or not result.exists():
                step.result, step.reason = "failed", f"exit status {proc.returncode}: {last_line(step.log)}"
                return None
            return json.loads(result.read_text())

    def run(self, name: str, fn: Callable[[Step], None], wanted: float) -> Step:
        """Run one step; an exception fails that step only."""
        step = Step(name)
        self.steps.append(step)
        print(f"[{len(self.steps)}] {name} ...", flush=True)
        start = time.monotonic()
        if self.timeout(wanted) < 10:
            step.result, step.reason = "failed", f"not run: the check's {self.budget:.0f} s budget is spent"
        else:
            try:
                fn(step)
            except Exception as exc:  # a broken step must not stop the others
                step.result, step.reason = "failed", f"{type(exc).__name__}: {exc}"
        step.seconds = round(time.monotonic() - start, 1)
        reason = f" ({step.reason})" if step.reason else ""
        print(f"[{len(self.steps)}] {name}: {step.result}{reason}, {step.seconds:.1f} s", flush=True)
        return step

    def find(self, name: str) -> Step | None:
        return next((s for s in self.steps if s.name == name), None)


def last_line(log: str, lines: int = 1) -> str:
    """The last non-empty line(s) of a log file, for a one-line reason."""
    try:
        text = [line.strip() for line in Path(log).read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    return " | ".join(text[-lines:])[-300:]


def cuda_test_files() -> list[str]:
    """The test files that hold CUDA tests (marker cuda): passed by name, so a test file whose optional
    packages (selenium, onnx, fastapi) this machine lacks cannot break the collection."""
    return sorted(
        str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text()
    )


def step_cuda_tests(check: Check, step: Step) -> None:
    """pytest -m cuda: ok when they pass, skipped when every one skipped (no CUDA), else failed."""
    files = cuda_test_files()
    if not files:
        step.result, step.reason = "failed", "no test file under tests/ has a cuda marker"
        return
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *files]
    proc = check.command(step, cmd, check.timeout(240 if check.cuda else 120))
    if proc is None:
        return
    summary = last_line(step.log)
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|failed|skipped|error|errors)", summary)}
    step.details = {"files": files, "summary": summary, **counts}
    step.figures.append(Figure("tests passed", counts.get("passed", 0)))
    if proc.returncode != 0:
        step.result, step.reason = "failed", summary
    elif counts.get("skipped") and not counts.get("passed") and check.cuda:
        step.result, step.reason = "failed", f"{summary}, although this process sees CUDA"
    elif counts.get("skipped") and not counts.get("passed"):
        step.result, step.reason = "skipped", f"{summary} (no CUDA)"


SNAKEMAKE_DS = "check"


def snakemake_config(arch: str, lock_dir: Path) -> dict[str, Any]:
    """A tiny demo run (the tests' TINY): 64 px faces, one round, two search shards, one epoch each."""
    return {
        "seed": 3,
        "device": "auto",
        "threads": 2,
        "gpu_lock_dir": str(lock_dir),
        "datasets": {
            SNAKEMAKE_DS: {
                "format": "demo",
                "root": f"data/{SNAKEMAKE_DS}",
                "image_size": 64,
                "eval_splits": ["test", "occlusion"],
                "demo": {"per_class": {"train": 6, "val": 2, "test": 3, "occlusion": 3}},
                "model": {"arch": arch, "width": 8, "pretrained": "none"},
                "pretrain": {"epochs": 1, "batch_size": 16, "lr": 0.05, "lr_milestones": [1], "crop_pad": 2},
                "finetune": {"epochs": 1, "batch_size": 16, "lr": 0.01, "lr_milestones": [1], "crop_pad": 2},
            }
        },
        "method": {
            "rounds": 1,
            "mask_size": 5,
            "shards": 2,
            "search": {"population": 6, "generations": 2},
            "ablation": {"variants": [], "mask_sizes": [], "betas": []},
        },
    }


def step_snakemake(check: Check, step: Step) -> None:
    """One real Snakemake run of a tiny demo config with profiles/gpu: every network job must be placed
    on the GPU (on a CPU-only machine: on a fake GPU slot, PASM_FAKE_GPUS=1, the network on the CPU)."""
    import yaml

    work = Path(tempfile.mkdtemp(prefix="pasm-gpu-check-"))
    arch = "resnet18" if check.cuda else "compact"
    env = check.env()
    if check.cuda:
        mode, expected = "real GPU", re.compile(r"placed: device cuda:0, GPU (\S+)\s*$")
    else:
        env.pop("CUDA_VISIBLE_DEVICES", None)
        env["PASM_FAKE_GPUS"] = "1"
        mode, expected = (
            "fake GPU (PASM_FAKE_GPUS=1: slots claimed, network on the CPU)",
            re.compile(r"placed: device cpu, GPU (\S+) \(fake GPU"),
        )
    (work / "config").mkdir()
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(snakemake_config(arch, work / "locks")))
    target = f"results/{SNAKEMAKE_DS}/round1/metrics.json"
    cores = str(max(2, min(8, os.cpu_count() or 2)))
    # the target before the options: --resources takes every word after it
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        target,
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        "-d",
        str(work),
    ]
    cmd += [
        "--workflow-profile",
        str(REPO / "profiles" / "gpu"),
        "--cores",
        cores,
        "--resources",
        "gpu=1",
    ]
    step.details = {"mode": mode, "arch": arch, "workdir": str(work), "target": target}
    proc = check.command(step, cmd, check.timeout(300), env=env)
    placed, other = [], []
    for log in sorted((work / "results" / SNAKEMAKE_DS / "logs").rglob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if "placed: " in line:
                (placed if expected.search(line) else other).append(
                    f"{log.name}: {line.split('placed: ')[1]}"
                )
    step.details.update(jobs_on_gpu=len(placed), jobs_elsewhere=other)
    step.figures.append(Figure("network jobs on the GPU" + ("" if check.cuda else " (fake)"), len(placed)))
    if proc is None:
        return
    if proc.returncode != 0 or not (work / target).exists():
        step.result, step.reason = "failed", f"snakemake exit status {proc.returncode}; workdir {work}"
    elif other or not placed:
        step.result, step.reason = "failed", f"jobs not placed on the GPU: {other or 'none placed'}"
    else:
        shutil.rmtree(work, ignore_errors=True)
        step.details["workdir"] = "(removed)"


def step_training(check: Check, step: Step) -> None:
    """pasm's training loop against the floor, at batch 64 and 256."""
    out = check.child(step, "training", check.timeout(180 if check.cuda else 150))
    if out is None:
        return
    step.details = out
    for row in out["batches"]:
        b = row["batch"]
        step.figures.append(Figure(f"loop b{b}", row["loop"], "img/s"))
        step.figures.append(Figure(f"floor b{b}", row["floor"], "img/s"))
        step.figures.append(Figure(f"loop/floor b{b}", row["ratio"], "x", GOOD_LOOP))
    step.figures.append(
        Figure(
            "peak " + ("GPU memory" if check.cuda else "resident memory"),
            max(r["peak_mib"] for r in out["batches"]),
            "MiB",
        )
    )


def reader_rates(doc: dict[str, Any]) -> tuple[float | None, float | None]:
    """The reader's images/s with and without the teacher copy from benchmarks/training.py's JSON
    (``reader.with_teacher_images_per_s``, ``reader.images_per_s``); None where a key is missing."""
    reader = doc.get("reader") if isinstance(doc.get("reader"), dict) else {}
    return reader.get("with_teacher_images_per_s"), reader.get("images_per_s")


def step_reader(check: Check, step: Step) -> None:
    """benchmarks/training.py --json: the HDF5 reader's images/s at 224 px, with and without the teacher
    copy, against the GPU's training rate measured by the training step."""
    script = REPO / "benchmarks" / "training.py"
    helped = subprocess.run(
        [sys.executable, str(script), "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        env=check.env(),
        cwd=REPO,
    )
    if "--json" not in helped.stdout + helped.stderr:
        step.result, step.reason = "skipped", "benchmarks/training.py has no --json"
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "training.json"
        cmd = [sys.executable, str(script), "--json", str(out)]
        for flag, value in (("--device", check.device), ("--no-loop", None)):  # the loop is measured above
            if flag in helped.stdout:
                cmd += [flag] if value is None else [flag, value]
        proc = check.command(step, cmd, check.timeout(150))
        if proc is None:
            return
        if proc.returncode != 0 or not out.exists():
            step.result, step.reason = "failed", f"exit status {proc.returncode}: {last_line(step.log)}"
            return
        doc = json.loads(out.read_text())
    step.details = {"training.py": doc}
    teacher, plain = reader_rates(doc)
    if teacher is None:
        step.result, step.reason = "failed", "its JSON has no reader.with_teacher_images_per_s"
        return
    size = doc.get("read_size", 224)
    if plain is not None:
        step.figures.append(Figure(f"reader {size} px", plain, "img/s"))
    train = check.find("training")
    rate = max((r["loop"] for r in train.details.get("batches", [])), default=None) if train else None
    if not check.cuda or rate is None:
        why = "CPU mode: the loop trains at 48 px" if not check.cuda else "no training rate measured"
        step.figures.append(Figure(f"reader+teacher {size} px", teacher, "img/s", note=f"not judged: {why}"))
        return
    step.details["training_rate"] = rate
    step.figures.append(Figure(f"reader+teacher {size} px", teacher, "img/s"))
    step.figures.append(Figure("reader+teacher / GPU training", teacher / rate, "x", GOOD_READER))


def step_search(check: Check, step: Step) -> None:
    """The DE point search's forwards/s against plain forwards of the prepared model."""
    out = check.child(step, "search", check.timeout(150 if check.cuda else 120))
    if out is None:
        return
    step.details = out
    batch = out["batch"]
    step.figures.append(Figure(f"search b{batch}", out["search_forwards_per_s"], "fwd/s"))
    step.figures.append(Figure(f"floor b{batch}", out["floor_forwards_per_s"], "fwd/s"))
    step.figures.append(Figure("search/floor", out["ratio"], "x", GOOD_SEARCH))
    step.figures.append(
        Figure("peak " + ("GPU memory" if check.cuda else "resident memory"), out["peak_mib"], "MiB")
    )


def step_agreement(check: Check, step: Step) -> None:
    """Same best pixel at bfloat16 and float32; on CUDA a miss means float32 should be the search default."""
    out = check.child(step, "agreement", check.timeout(180 if check.cuda else 150))
    if out is None:
        return
    step.details = out
    name, same = f"same pixel, {out['size']} px", 100 * out["same_pixel"]
    if not check.cuda:  # bfloat16 is the default on CUDA only
        step.figures.append(
            Figure(name, same, "%", note="not judged in CPU mode: bfloat16 is a CUDA default")
        )
        return
    figure = Figure(name, same, "%", 100 * GOOD_AGREE)
    if figure.good is False:
        figure.note = "make float32 the CUDA search default (method.search.precision: float32)"
    step.figures.append(figure)


def step_strength(check: Check, step: Step) -> None:
    """The ranked search against the paper-budget DE: its time ratio (>= 100 x) and strength."""
    out = check.child(step, "strength", check.timeout(180 if check.cuda else 120))
    if out is None:
        return
    step.details = out
    paper, _, ranked = out["rows"]
    for r in (paper, ranked):
        step.figures.append(Figure(f"{r['search']}: p(true) after", r["mean_prob_after"], ""))
    d, lo, hi = out["ranked_minus_paper"]
    step.figures.append(
        Figure(
            f"ranked - paper DE on {out['paper_images']} images", d, "", note=f"95% CI [{lo:.3f}, {hi:.3f}]"
        )
    )
    note = "" if check.cuda else "not judged in CPU mode: too few images for the paper DE"
    step.figures.append(
        Figure(
            "paper DE time / ranked",
            out["time_ratio"],
            "x",
            GOOD_STRENGTH_TIME if check.cuda else None,
            note=note,
        )
    )


STEPS: list[tuple[str, Callable[[Check, Step], None], float]] = [
    ("cuda_tests", step_cuda_tests, 240),
    ("snakemake_gpu_profile", step_snakemake, 300),
    ("training", step_training, 180),
    ("reader", step_reader, 150),
    ("search", step_search, 150),
    ("precision_agreement", step_agreement, 180),
    ("search_strength", step_strength, 180),
]


# --------------------------------------------------------------------------- report


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or value == int(value):
        return f"{value:,.0f}"
    return f"{value:.3g}"


def table(steps: list[Step]) -> str:
    """The summary table: one row per figure (a step without figures: one row)."""
    rows = [("step", "result", "figure", "threshold", "good?")]
    for s in steps:
        result = s.result + (f" ({s.seconds:.0f} s)" if s.seconds else "")
        if not s.figures:
            rows.append((s.name, result, s.reason[:70] or "-", "-", "-"))
        for i, f in enumerate(s.figures):
            unit = f" {f.unit}" if f.unit and f.unit != "x" else f.unit
            threshold = f">= {fmt(f.minimum)}{unit}" if f.minimum is not None else "-"
            good = {True: "yes", False: "NO", None: "-"}[f.good]
            first = i == 0
            rows.append(
                (
                    s.name if first else "",
                    result if first else "",
                    f"{f.name}: {fmt(f.value)}{unit}",
                    threshold,
                    good,
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    """Host, Python, torch, and the GPUs nvidia-smi lists (CUDA is not started in this process)."""
    info: dict[str, Any] = {"host": platform.node(), "python": platform.python_version()}
    try:
        import torch

        info.update(torch=torch.__version__, torch_cuda=torch.version.cuda)
    except Exception as exc:  # torch itself broken: every step will say so too
        info["torch"] = f"not importable: {exc}"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        try:
            info["gpus"] = (
                subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip().splitlines()
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def cuda_usable() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=REPO / "results" / "gpu_check.json", help="the JSON summary")
    ap.add_argument("--quick", action="store_true", help="smaller benchmarks")
    ap.add_argument("--cpu", action="store_true", help="CPU mode even where CUDA is usable")
    ap.add_argument("--budget", type=float, default=BUDGET_S, help="wall-clock budget in seconds")
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child_main(args.child, args.device, args.quick, args.result)
        return

    started, start = datetime.now(timezone.utc), time.monotonic()
    device = "cuda" if cuda_usable() and not args.cpu else "cpu"
    mode = (
        "CUDA"
        if device == "cuda"
        else "CPU mode (no CUDA: CUDA tests skip, benchmarks on the CPU at small sizes)"
    )
    print(f"pasm gpu-check: {mode}{', quick' if args.quick else ''}; budget {args.budget:.0f} s", flush=True)
    out = args.out if args.out.is_absolute() else Path.cwd() / args.out
    check = Check(device, args.quick, out.parent / f"{out.stem}_logs", args.budget)
    for name, fn, wanted in STEPS:
        check.run(name, lambda step, fn=fn: fn(check, step), wanted)

    failed = [f"{s.name}: {s.reason}" for s in check.steps if s.result == "failed"]
    missed = [
        f"{s.name}: {f.name} {fmt(f.value)} < {fmt(f.minimum)}" + (f" ({f.note})" if f.note else "")
        for s in check.steps
        for f in s.figures
        if f.good is False
    ]
    status = 1 if failed or missed else 0
    summary = {
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round(time.monotonic() - start, 1),
        "mode": "cuda" if device == "cuda" else "cpu",
        "quick": args.quick,
        "machine": machine(),
        "steps": [
            {
                "name": s.name,
                "result": s.result,
                "reason": s.reason,
                "seconds": s.seconds,
                "figures": [f.__dict__ for f in s.figures],
                "details": s.details,
                "log": s.log,
            }
            for s in check.steps
        ],
        "failed": failed,
        "missed": missed,
        "exit_status": status,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print()
    print(table(check.steps))
    print()
    for s in check.steps:
        for f in s.figures:
            if f.note and f.good is not False:
                print(f"NOTE    {s.name}: {f.name}: {f.note}")
    for line in failed:
        print(f"FAILED  {line}")
    for line in missed:
        print(f"MISSED  {line}")
    print(f"{'healthy' if status == 0 else 'NOT healthy'}; {summary['wall_s']:.0f} s; wrote {out}")
    sys.exit(status)


if __name__ == "__main__":
    main()
