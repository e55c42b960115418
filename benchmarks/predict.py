"""Speed of using a trained model on this CPU, side by side in one run: faces per second for
detection + alignment + classification one photo at a time and 16 photos per call, video frames
per second, and the classifier alone in PyTorch against ONNX Runtime; for the compact FER2013
network (48 px, grey) and ResNet-18 at 112 px. Weights are untrained (speed does not depend on them).

Usage (from the repository root): .venv/bin/python benchmarks/predict.py [--photos 32] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from pasm.app.predict import Predictor
from pasm.data.decode import load_image
from pasm.data.labels import CLASSES
from pasm.data.preparation import face_preparation
from pasm.nn.models import IMAGENET_MEAN, IMAGENET_STD, build_model, save_model

PHOTOS = Path(__file__).resolve().parents[1] / ".." / "shared" / "images" / "faces"
MODELS = {
    "compact w32, 48 px (FER2013)": ("compact", 32, 48, "fer2013"),
    "resnet18, 112 px": ("resnet18", 32, 112, "folder"),
}


def model_file(folder: Path, arch: str, width: int, size: int, fmt: str) -> Path:
    """An untrained model file with a complete card (format fer2013: grey faces, the fer2013 template)."""
    path = folder / f"{arch}_{size}.pt"
    meta = {
        "arch": arch,
        "width": width,
        "classes": list(CLASSES),
        "image_size": size,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "dataset": fmt,
        "round": 0,
        "params": {},
        "alignment": face_preparation(fmt, size, {}, pre_aligned=True),
    }
    save_model(path, build_model(arch, len(CLASSES), width).eval(), meta)
    return path


def clip(path: Path, photo: np.ndarray, frames: int = 40, side: int = 480) -> Path:
    """A short MPEG-4 clip: the photo shrunk onto a grey frame, moving 4 px per frame."""
    import av
    from PIL import Image

    face = Image.fromarray(photo)
    face = np.asarray(face.resize((side // 2, round(face.height * side / 2 / face.width))))[:side]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(25))
        stream.width, stream.height, stream.pix_fmt = side, side, "yuv420p"
        for k in range(frames):
            canvas = np.full((side, side, 3), 90, np.uint8)
            x = 10 + 4 * k
            canvas[: face.shape[0], x : x + face.shape[1]] = face[:, : side - x]
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def rate(fn, n: int) -> float:
    """n / seconds of one call of fn (after one warm-up call)."""
    fn()
    t0 = time.perf_counter()
    fn()
    return n / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    photos = [load_image(p) for p in sorted(PHOTOS.glob("*.jpg"))]
    images = [photos[i % len(photos)] for i in range(args.photos)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = clip(tmp / "clip.mp4", photos[0])
        for name, spec in MODELS.items():
            path = model_file(tmp, *spec)
            pred = Predictor(path, "cpu", min_face_prob=0.9)
            faces = sum(len(f) for f in pred.predict(images))
            one = rate(lambda: [pred.predict([im]) for im in images], faces)
            batched = rate(
                lambda: [pred.predict(images[s : s + 16]) for s in range(0, len(images), 16)], faces
            )

            from pasm.app.video import predict_video

            t0 = time.perf_counter()
            counts = predict_video(video, pred, tmp / "clip.csv", progress=False)
            fps = counts["frames"] / (time.perf_counter() - t0)

            crops = np.stack([f.crop for fs in pred.predict(images) for f in fs] * 4)
            torch_rate = rate(lambda: pred.classify(crops), len(crops))
            import onnxruntime as ort

            from pasm.app.export import export_onnx

            export_onnx(path, tmp / "model.onnx")
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = args.threads
            session = ort.InferenceSession(str(tmp / "model.onnx"), opts, providers=["CPUExecutionProvider"])
            onnx_rate = rate(
                lambda: [session.run(None, {"pixels": crops[s : s + 32]}) for s in range(0, len(crops), 32)],
                len(crops),
            )
            rows.append((name, one, batched, fps, torch_rate, onnx_rate))
    print(f"{args.photos} photos ({len(photos)} distinct, one face each), {args.threads} threads, CPU\n")
    print(
        "| model | faces/s, one photo per call | faces/s, 16 per call | batched / one "
        "| video frames/s (480 px) "
        "| classifier faces/s, PyTorch | ONNX Runtime | ONNX / PyTorch |"
    )
    print("|" + " --- |" * 8)
    for name, one, batched, fps, tr, orr in rows:
        print(
            f"| {name} | {one:.1f} | {batched:.1f} | {batched / one:.2f}x | {fps:.1f} | {tr:,.0f} "
            f"| {orr:,.0f} "
            f"| {orr / tr:.2f}x |"
        )


if __name__ == "__main__":
    main()
