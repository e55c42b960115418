"""Training input and training loop rates, each measured side by side in one run:

- the HDF5 reader at 224 px (pasm.train.batches.BatchReader over H5Rows files written as pasm writes
  faces.h5 and masked.h5): images only, with the teacher's copy, and the former per-row H5Rows read
  with its NHWC concatenation (kept here as the reference);
- pasm's training loop against the floor: the model's own forward+backward+step on random tensors of
  the same shape;
- on CUDA, the training floor of a ResNet-34 at the reader's size, which the reader must outpace.

Usage (from the repository root):
  .venv/bin/python benchmarks/training.py [--device cpu] [--read-n 2048] [--json out.json] ...
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from pasm.data.h5store import FacesWriter, read_faces, read_masked, write_table
from pasm.data.rows import H5Rows, runs
from pasm.nn.inference import autocast
from pasm.nn.models import IMAGENET_MEAN, IMAGENET_STD, build_model
from pasm.train.batches import BatchReader
from pasm.train.training import TrainParams, train


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


# --------------------------------------------------------------------------- the reader


def old_read(dset: h5py.Dataset, rows: np.ndarray) -> np.ndarray:
    """The former H5Rows.read: sorted unique rows, one h5py read per run of consecutive rows."""
    uniq, inverse = np.unique(rows, return_inverse=True)
    out = np.empty((len(uniq), *dset.shape[1:]), dtype=dset.dtype)
    for pos, row, n in runs(uniq):
        dset.read_direct(out, np.s_[row : row + n], np.s_[pos : pos + n])
    return out if np.array_equal(uniq, rows) else out[inverse.reshape(-1)]


def old_read_batch(images: h5py.Dataset, clean: h5py.Dataset | None, idx: np.ndarray) -> torch.Tensor:
    """The former read_batch: uint8 (B, C, H, W), the clean copy concatenated along channels."""
    x = torch.from_numpy(np.ascontiguousarray(old_read(images, idx))).permute(0, 3, 1, 2)
    if clean is None:
        return x
    return torch.cat([x, torch.from_numpy(np.ascontiguousarray(old_read(clean, idx))).permute(0, 3, 1, 2)], 1)


def write_files(tmp: Path, n: int, size: int) -> tuple[Path, Path]:
    """faces.h5 (FacesWriter) and masked.h5 (write_table) of n random size x size images, written
    block by block as the pipeline writes them."""
    rng = np.random.default_rng(0)
    faces, masked = tmp / "faces.h5", tmp / "masked.h5"
    with FacesWriter(faces, size) as out:
        for i in range(n):
            out.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), i % 7, "train", f"f{i}", "ok")
        out.finish()

    def blocks() -> Any:
        for start in range(0, n, 256):
            block = rng.integers(0, 256, (min(256, n - start), size, size, 3), dtype=np.uint8)
            block[:, size // 4 : size // 2, size // 4 : size // 2] = 0
            yield block

    write_table(masked, {"row": np.arange(n)}, images=((n, size, size, 3), blocks()))
    return faces, masked


def reader_rates(faces: Path, masked: Path, batch: int, device: str, repeats: int = 2) -> dict[str, Any]:
    """Images/s of the new reader (images only, and with the teacher copy) and of the old per-row
    path, over batches of one shuffled epoch; each the best of ``repeats`` interleaved passes."""
    images = read_masked(masked)["images"]
    clean = read_faces(faces).images.subset(np.arange(len(images)))
    start = time.perf_counter()
    H5Rows(masked).direct()  # a fresh view: its rows' chunk offsets looked up and checked
    lookup_ms = (time.perf_counter() - start) * 1000
    n = len(images)
    labels = torch.zeros(n, dtype=torch.int64)
    order = np.random.default_rng(1).permutation(n)
    batches = [order[s : s + batch] for s in range(0, n, batch)]
    pin = torch.device(device).type == "cuda"
    f_img, f_clean = h5py.File(masked, "r"), h5py.File(faces, "r")

    def timed(fn: Any) -> float:
        start = time.perf_counter()
        for b in batches:
            fn(b)
        return n / (time.perf_counter() - start)

    best: dict[str, float] = {}
    with (
        BatchReader(images, None, labels, pin=pin) as alone,
        BatchReader(images, clean, labels, pin=pin) as pair,
    ):
        alone(batches[0]), pair(batches[0])  # offsets looked up, buffers made
        for _ in range(repeats):
            for name, fn in (
                ("new", alone),
                ("new_teacher", pair),
                ("old", lambda b: old_read_batch(f_img["images"], None, b)),
                ("old_teacher", lambda b: old_read_batch(f_img["images"], f_clean["images"], b)),
            ):
                best[name] = max(best.get(name, 0.0), timed(fn))
        same = all(
            np.array_equal(pair(b).images.numpy(), old_read(f_img["images"], b))
            and np.array_equal(pair(b).clean.numpy(), old_read(f_clean["images"], b))
            for b in batches[:2]
        )
    f_img.close(), f_clean.close()
    to_device = None
    if pin:  # the reader followed by the copy to the GPU, as the training loop does
        with BatchReader(images, clean, labels, pin=True) as pair:
            start = time.perf_counter()
            for b in batches:
                got = pair(b)
                got.images.to(device, non_blocking=True), got.clean.to(device, non_blocking=True)
            _sync(device)
            to_device = n / (time.perf_counter() - start)
    return {
        "reader": {
            "images_per_s": best["new"],
            "with_teacher_images_per_s": best["new_teacher"],
            "direct": images.direct() and clean.direct(),
            "offsets_lookup_ms": lookup_ms,
            "same_as_old": same,
        },
        "old_per_row_reader": {
            "images_per_s": best["old"],
            "with_teacher_images_per_s": best["old_teacher"],
        },
        "ratios": {
            "reader_teacher_copy_over_alone": best["new_teacher"] / best["new"],
            "reader_over_old": best["new"] / best["old"],
            "reader_teacher_copy_over_old": best["new_teacher"] / best["old_teacher"],
        },
        **({"reader_to_device": {"with_teacher_images_per_s": to_device}} if to_device else {}),
    }


# --------------------------------------------------------------------------- the training loop


def floor_rate(
    arch: str, width: int, size: int, n: int, batch: int, device: str, channels_last: bool = True
) -> float:
    """Images/s of plain SGD steps on pre-made float tensors (no data handling at all), in the
    memory format pasm's loop uses (channels_last) unless told otherwise, at its precision."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(arch, 7, width).to(device=device, memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 7, (batch,), device=device)

    def step() -> None:
        with autocast(device, "auto"):
            logits = model(x).float()
        loss = torch.nn.functional.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(max(n // batch, 1)):
        step()
    _sync(device)
    return max(n // batch, 1) * batch / (time.perf_counter() - start)


def loop_rate(width: int, size: int, n: int, batch: int, device: str, from_file: str | None = None) -> float:
    """Images/s of pasm.train.training.train for one epoch over n uint8 images (augmentation
    included), held in memory or (``from_file``) read batch by batch from an HDF5 file as the stages do."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 7, n)
    if from_file:
        with h5py.File(from_file, "w") as f:
            f.create_dataset("images", data=images, chunks=(1, size, size, 3))
        images = H5Rows(from_file)
    params = TrainParams(epochs=1, batch_size=batch, lr=0.01, lr_milestones=[1], crop_pad=4)
    hist = train(
        build_model("compact", 7, width),
        images,
        labels,
        params,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        device=device,
        progress=False,
    )
    return hist[0]["images_per_s"]


def loop_rates(width: int, size: int, n: int, batch: int, device: str) -> dict[str, float]:
    floor_rate("compact", width, size, 256, batch, device)  # warm-up
    plain = floor_rate("compact", width, size, n, batch, device, channels_last=False)
    floor = floor_rate("compact", width, size, n, batch, device)
    ours = loop_rate(width, size, n, batch, device)
    with tempfile.TemporaryDirectory() as tmp:
        streamed = loop_rate(width, size, n, batch, device, from_file=f"{tmp}/faces.h5")
    return {"floor_nchw": plain, "floor": floor, "loop": ours, "loop_from_hdf5": streamed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:i] (default cpu)")
    ap.add_argument("--read-size", type=int, default=224, help="image size of the reader's files (224)")
    ap.add_argument("--read-n", type=int, default=2048, help="rows of the reader's files (2048)")
    ap.add_argument("--read-batch", type=int, default=256, help="reader batch size (256)")
    ap.add_argument("--width", type=int, default=32, help="compact model width of the loop comparison (32)")
    ap.add_argument("--size", type=int, default=48, help="image size of the loop comparison (48)")
    ap.add_argument("--n", type=int, default=4096, help="images of the loop comparison (4096)")
    ap.add_argument("--batch", type=int, default=128, help="batch size of the loop comparison (128)")
    ap.add_argument("--no-loop", action="store_true", help="measure the reader only")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (2)")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = args.device
    doc: dict[str, Any] = {"device": device, "read_size": args.read_size, "read_batch": args.read_batch}

    with tempfile.TemporaryDirectory() as tmp:
        faces, masked = write_files(Path(tmp), args.read_n, args.read_size)
        doc.update(reader_rates(faces, masked, args.read_batch, device))
    r, old, ratio = doc["reader"], doc["old_per_row_reader"], doc["ratios"]
    size = f"{args.read_size}x{args.read_size}"
    print(f"HDF5 reader, {size}, batch {args.read_batch}, {args.read_n} rows, {device}")
    print(f"  reader, images only:                 {r['images_per_s']:9.1f} img/s")
    print(f"  reader, with the teacher copy:       {r['with_teacher_images_per_s']:9.1f} img/s")
    print(f"  old per-row H5Rows, images only:     {old['images_per_s']:9.1f} img/s")
    print(f"  old per-row H5Rows, teacher copy:    {old['with_teacher_images_per_s']:9.1f} img/s")
    if "reader_to_device" in doc:
        to_device = doc["reader_to_device"]["with_teacher_images_per_s"]
        print(f"  reader + copy to {device}, teacher copy: {to_device:9.1f} img/s")
    print(f"  teacher copy / images only: {ratio['reader_teacher_copy_over_alone']:.2f}x   (target >= 0.8)")
    print(f"  images only / old:          {ratio['reader_over_old']:.2f}x   (target >= 3)")
    print(f"  teacher copy / old:         {ratio['reader_teacher_copy_over_old']:.2f}x")
    print(f"  direct chunk reads: {r['direct']}; same bytes as the old read: {r['same_as_old']}")
    print(f"  chunk offsets of {args.read_n} rows looked up in {r['offsets_lookup_ms']:.1f} ms")

    if torch.device(device).type == "cuda":
        rate = floor_rate("resnet34", 32, args.read_size, 20 * args.read_batch, args.read_batch, device)
        doc["gpu_training"] = {"arch": "resnet34", "floor_per_s": rate}
        print(f"ResNet-34 training floor at {args.read_size} px, batch {args.read_batch}: {rate:9.1f} img/s")
        print(
            f"  reader with the teacher copy / ResNet-34 floor: {r['with_teacher_images_per_s'] / rate:.2f}x"
        )

    if not args.no_loop:
        loop = loop_rates(args.width, args.size, args.n, args.batch, device)
        doc["loop"] = loop
        print(f"compact width {args.width}, {args.size}x{args.size}, batch {args.batch}, {args.n} images")
        print(f"  floor, NCHW (forward+backward+step on random tensors):     {loop['floor_nchw']:8.1f} img/s")
        print(f"  floor, channels_last (the memory format pasm's loop uses): {loop['floor']:8.1f} img/s")
        print(f"  pasm training loop:                                        {loop['loop']:8.1f} img/s")
        streamed = loop["loop_from_hdf5"]
        print(f"  pasm training loop, batches read from HDF5 (the stages):   {streamed:8.1f} img/s")
        nchw = loop["loop"] / loop["floor_nchw"]
        print(f"  floor / loop: {loop['floor'] / loop['loop']:.2f}x   (loop / NCHW floor: {nchw:.2f}x)")
        print(f"  in memory / from HDF5: {loop['loop'] / loop['loop_from_hdf5']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
