"""Peak resident memory of `pasm predict` and of a fresh `pasm serve` on an ordinary photo and on
images of extreme shape (1 x 20,000 and 20,000 x 1 PNGs), each in its own process, side by side.

A bounded detector costs such an image no more than a photo; without the bounds one 1 x 20,000 PNG
took tens of GB. Peak memory is VmHWM from /proc (fresh at exec), after the model and MTCNN load.

    .venv/bin/python benchmarks/odd_images.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # load.py beside this file
from load import HOST, PHOTOS, memory_mb, multipart, post, running_server, small_model  # noqa: E402

PREDICT = (
    "import json, sys; from pasm.app.cli import main; rc = main(sys.argv[1:]); "
    "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]; "
    "print('PEAK', int(hwm) / 1024, file=sys.stderr); sys.exit(rc)"
)


def predict_peak(path: Path, model: Path) -> tuple[float, float, str]:
    """Peak MiB, seconds and first output line of `pasm predict path` in a fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", PREDICT, "predict", str(path), "--model", str(model), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=600,
        env={"OMP_NUM_THREADS": "1", **_env()},
    )
    seconds = time.perf_counter() - t0
    peak = float([ln for ln in proc.stderr.splitlines() if ln.startswith("PEAK")][-1].split()[1])
    first = (proc.stdout.splitlines() or [""])[0]
    return (
        peak,
        seconds,
        json.loads(first).get("status", "?") if first.startswith("{") else proc.stderr[-300:],
    )


def serve_peak(path: Path, model: Path, log: Path) -> tuple[float, float, float, int]:
    """Peak MiB at start and after one upload of `path` to a fresh `pasm serve`, seconds, status."""
    with running_server(model, log, max_mb=10.0) as server:
        start = memory_mb(server.proc.pid)["VmHWM"]
        head, tail, content_type = multipart(path.name, path.read_bytes())
        reply = post(server.port, head + path.read_bytes() + tail, content_type)
        return start, memory_mb(server.proc.pid)["VmHWM"], reply.seconds, reply.status


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="pasm-odd-images-"))
    model = small_model(work / "model.pt")
    images = {"angry.jpg (425 x 521)": PHOTOS / "faces" / "angry.jpg"}
    for h, w in ((1, 20_000), (20_000, 1)):
        path = work / f"strip_{h}x{w}.png"
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
        images[f"{w} x {h} PNG ({path.stat().st_size} bytes)"] = path
    rows = []
    print(
        f"{'image':<32} {'predict peak MiB':>17} {'s':>6} {'answer':>8} "
        f"{'serve start':>12} {'serve peak':>11} {'HTTP':>5}"
    )
    for name, path in images.items():
        peak, seconds, answer = predict_peak(path, model)
        start, served, _, status = serve_peak(path, model, work / "serve.log")
        rows.append(
            {
                "image": name,
                "predict_peak_mb": round(peak, 1),
                "predict_s": round(seconds, 2),
                "predict": answer,
                "serve_start_mb": round(start, 1),
                "serve_peak_mb": round(served, 1),
                "http": status,
            }
        )
        print(
            f"{name:<32} {peak:>17.0f} {seconds:>6.1f} {answer:>8} {start:>12.0f} {served:>11.0f} {status:>5}"
        )
    photo = rows[0]
    for row in rows[1:]:
        print(
            f"{row['image']}: predict {row['predict_peak_mb'] - photo['predict_peak_mb']:+.0f} MiB, "
            f"serve {row['serve_peak_mb'] - photo['serve_peak_mb']:+.0f} MiB against the photo"
        )
    print(json.dumps(rows))
    assert HOST == "127.0.0.1"
    return 0


if __name__ == "__main__":
    sys.exit(main())
