"""Bounded work per input (issue 21): the pixel cap on decoding and resizing, the capped detector
upsampling, and oversized files as counted skips of the faces stage."""

from __future__ import annotations

import json
import logging
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from predict_cases import tiny_model_file

import pasm.data.align as align
import pasm.data.decode as decode
from pasm.data.faces import build_faces
from pasm.data.readers.records import Record

REPO = Path(__file__).resolve().parents[1]
# Pillow warns (and decodes) from 89.5 MP; the test images above that are refused before decoding
pytestmark = pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")


def bilevel_png(path: Path, width: int, height: int) -> Path:
    """A valid all-black 1-bit grey PNG of any size, written without holding its pixels (a few KB
    for hundreds of megapixels: the shape of a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer = zlib.compressobj(9)
    row = bytes(1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def strip_png(path: Path, height: int, width: int) -> Path:
    Image.fromarray(np.full((height, width, 3), 128, np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A 169 MP image (above MAX_PIXELS, below Pillow's own bomb limit), a 200 MP one (above both),
    and 1 x 20,000 / 20,000 x 1 strips (the issue's 162-byte PNG)."""
    folder = tmp_path_factory.mktemp("bounded")
    return {
        "huge": bilevel_png(folder / "huge.png", 13_000, 13_000),
        "bomb": bilevel_png(folder / "bomb.png", 20_000, 10_000),
        "wide": strip_png(folder / "wide.png", 1, 20_000),
        "tall": strip_png(folder / "tall.png", 20_000, 1),
    }


# --- the pixel cap on decoding ---------------------------------------------------------------


def test_max_pixels_admits_every_camera_photo_that_pillow_opens():
    assert 151_300_000 < decode.MAX_PIXELS  # 14204 x 10652, the largest medium-format back
    assert decode.MAX_PIXELS < 2 * Image.MAX_IMAGE_PIXELS  # Pillow refuses above that anyway


def test_oversized_images_are_refused_from_the_header_naming_file_and_size(files):
    for load in (decode.load_image, decode.decode_rgb):
        with pytest.raises(decode.ImageTooLarge, match=r"huge\.png: 13000 x 13000 = 169,000,000 pixels"):
            load(files["huge"])
        with pytest.raises(decode.ImageTooLarge, match=r"bomb\.png: .*200000000 pixels"):
            load(files["bomb"])
    assert issubclass(decode.ImageTooLarge, ValueError)  # callers treating ValueError per file keep working


def test_the_cap_is_inclusive_and_read_when_called(tmp_path, monkeypatch):
    monkeypatch.setattr(decode, "MAX_PIXELS", 40 * 20)
    at_limit = strip_png(tmp_path / "at.png", 20, 40)
    over = strip_png(tmp_path / "over.png", 20, 41)
    assert decode.load_image(at_limit).shape == (20, 40, 3)
    with pytest.raises(decode.ImageTooLarge, match=r"over\.png: 41 x 20 = 820 pixels"):
        decode.load_image(over)


# --- bounded detector upsampling -------------------------------------------------------------


@pytest.mark.parametrize("upsample_below, detect_max_side", [(160, 640), (160, 0), (1000, 640)])
def test_upsample_factor_is_capped(upsample_below, detect_max_side):
    for height, width in [(1, 1), (1, 4_000), (1, 20_000), (20_000, 1), (2, 20_000), (30, 100_000)]:
        factor = align.upsample_factor(height, width, upsample_below, detect_max_side)
        assert factor <= align.MAX_UPSAMPLE
        assert height * width * factor**2 <= align.UPSAMPLE_MAX_PIXELS * (1 + 1e-9)
    assert align.upsample_factor(1, 1, upsample_below, detect_max_side) == align.MAX_UPSAMPLE  # was 160


def test_ordinary_images_keep_their_factor():
    for height, width, factor in [
        (48, 48, 160 / 48),
        (20, 16, 10.0),  # a 16 px wide photo: its face is still found (test_align)
        (100, 500, 1.6),  # thin but ordinary: still 160 x 800, detect_max_side does not apply
        (150, 2_000, 160 / 150),
        (521, 425, 1.0),
        (1_563, 1_275, 640 / 1_563),
    ]:
        assert align.upsample_factor(height, width, 160, 640) == factor
    assert align.upsample_factor(9_000, 12_000, 160, 0) == 1.0  # 108 MP, detected at full size as asked


def test_upsample_checks_its_output_against_the_cap(monkeypatch):
    monkeypatch.setattr(decode, "MAX_PIXELS", 10_000)
    image = np.zeros((10, 10, 3), np.uint8)
    assert align.upsample(image, 10.0).shape == (100, 100, 3)
    with pytest.raises(decode.ImageTooLarge, match=r"10 x 10 image resized by 11: 110 x 110"):
        align.upsample(image, 11.0)


CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, {tests!r})


    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1]) * 1024


    import torch

    torch.set_num_threads(1)
    from pasm.app.predict import Predictor
    from pasm.data.align import AlignSettings, FaceAligner
    from pasm.data.decode import load_image
    from pasm.data.faces import build_faces
    from pasm.data.readers.records import Record

    aligner, predictor = FaceAligner(AlignSettings()), Predictor({model!r}, "cpu")
    # guard: code that still enlarges without bound fails here fast instead of exhausting the machine
    limit = status("VmData") + 3 * 2**30
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    setup, out = status("VmHWM"), {{}}
    for path in {paths!r}:
        start = time.perf_counter()
        image = load_image(path)
        align_status = aligner.align([image])[1]
        faces = predictor.predict([image])[0]
        out[path] = [align_status, len(faces), time.perf_counter() - start]
    start = time.perf_counter()
    built = build_faces([Record(p, "train", 0, path=p, aligned=False) for p in {paths!r}], 48, {{}})
    out["faces stage"] = [built.status.tolist(), len(built.attrs["skipped"]), time.perf_counter() - start]
    print(json.dumps({{"growth": status("VmHWM") - setup, "cases": out}}))
    """
)


def test_a_1_x_20000_png_is_aligned_and_predicted_with_bounded_memory_and_time(files, tmp_path):
    """The issue's case, through alignment, prediction and the faces stage: before, the 1 px side was
    enlarged 160 times for MTCNN (22.5 GB; a 1 x 4,000 strip: 5.9 GB, 50 s). Now about 45 MB and
    well under a second each. Runs in a fresh process: its peak memory is this case's alone."""
    model = tiny_model_file(tmp_path / "model.pt")
    paths = [str(files["wide"]), str(files["tall"])]
    code = CHILD.format(tests=str(REPO / "tests"), model=str(model), paths=paths)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["growth"] < 2**30, result  # measured: ~40 MB
    stage = result["cases"].pop("faces stage")
    assert stage[:2] == [["center_crop", "center_crop"], 0] and stage[2] < 60, result
    for path, (align_status, faces, seconds) in result["cases"].items():
        assert align_status == ["center_crop"] and faces == 0, (path, result)
        assert seconds < 30, (path, result)  # measured: ~0.2 s


# --- the faces stage -------------------------------------------------------------------------


def test_faces_stage_skips_and_counts_oversized_images(files, tmp_path, caplog):
    """Files above the cap and a box whose crop would be are named, counted skips; the rest is built.
    (The thin strips go through the faces stage in the bounded-memory test above.)"""
    gradient = tmp_path / "gradient.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 200, dtype=np.uint8), (150, 1))).save(gradient)
    recs = [
        Record("gradient", "train", 1, path=gradient, aligned=False),
        Record("huge photo", "train", 2, path=files["huge"], aligned=False),
        Record("bomb face", "test", 4, path=files["bomb"], aligned=True),
        Record("absurd box", "test", 5, path=gradient, aligned=False, box=(0.0, 0.0, 14_000.0, 14_000.0)),
        Record("small face", "test", 6, path=gradient, aligned=True),
    ]
    with caplog.at_level(logging.WARNING, logger="pasm.data.faces"):
        faces = build_faces(recs, 32, {}, align={"on_no_face": "center_crop"})
    assert faces.sources.tolist() == ["gradient", "small face"]
    assert faces.status.tolist() == ["center_crop", "pre-aligned"]
    assert faces.attrs["too_large"] == ["huge photo", "bomb face", "absurd box"]
    assert faces.attrs["undecodable"] == []
    assert faces.attrs["skipped"] == ["huge photo", "bomb face", "absurd box"]
    skips = [r.getMessage() for r in caplog.records if "image too large" in r.getMessage()]
    assert len(skips) == 3
    assert "skipped huge photo: image too large" in skips[0] and "13000 x 13000" in skips[0]
    assert "bomb.png" in skips[1] and "face box" in skips[2]
