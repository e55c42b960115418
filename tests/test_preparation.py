"""The preparation record faces.h5 carries, built from each reader's records: exact for every reader."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from PIL import Image
from test_affectnet import _affectnet
from test_readers import _ck_original, _fer_rows, _raf, _write_csv

from pasm.data.faces import build_faces
from pasm.data.readers import read_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CK48 = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "ck48" / "CK+48"
DETECTOR = {"upsample_below": 160, "detect_max_side": 640}
"""AlignSettings defaults every expected record below holds."""
RAF_ALIGN = {"scale": 1.2, "min_face": 30, "batch_size": 4}


def _folder(root: Path) -> Path:
    """root/<split>/<class>/<image> with two small colour images."""
    for rel in ("train/happy/a.png", "test/sad/b.png"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (90, 60, 30)).save(root / rel)
    return root


def _fer_csv(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return _write_csv(root / "fer2013.csv", _fer_rows())


def _ck48(root: Path) -> Path:
    if not CK48.is_dir():
        pytest.skip(f"{CK48} not present")
    return CK48


Builder = Callable[[Path], Path]

# name -> (format, data set builder, reader options, image size, align block, expected record)
CASES: dict[str, tuple[str, Builder, dict[str, Any], int, dict[str, Any], dict[str, Any]]] = {
    "demo": (
        "demo",
        _folder,
        {},
        32,
        {},
        {
            "version": 1,
            "format": "demo",
            "image_size": 32,
            "source": "pre-aligned",
            "settings": {
                "size": 32,
                "template": "fer-v1",
                "scale": 1.0,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": False,
        },
    ),
    "folder": (
        "folder",
        _folder,
        {},
        32,
        {"scale": 1.1, "batch_size": 8},
        {
            "version": 1,
            "format": "folder",
            "image_size": 32,
            "source": "pre-aligned",
            "settings": {
                "size": 32,
                "template": "fer-v1",
                "scale": 1.1,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": False,
        },
    ),
    "fer2013": (
        "fer2013",
        _fer_csv,
        {},
        48,
        {},
        {
            "version": 1,
            "format": "fer2013",
            "image_size": 48,
            "source": "pre-aligned",
            "settings": {
                "size": 48,
                "template": "fer2013",
                "scale": 1.0,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": True,
        },
    ),
    "fer2013 folder copy, own template": (
        "fer2013",
        _folder,
        {},
        48,
        {"template": "fer-v1", "scale": 1.2},
        {
            "version": 1,
            "format": "fer2013",
            "image_size": 48,
            "source": "pre-aligned",
            "settings": {
                "size": 48,
                "template": "fer2013",
                "scale": 1.2,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": True,
        },
    ),
    "CK+48": (
        "ckplus",
        _ck48,
        {},
        48,
        {},
        {
            "version": 1,
            "format": "ckplus",
            "image_size": 48,
            "source": "pre-aligned",
            "settings": {
                "size": 48,
                "template": "fer2013",
                "scale": 1.0,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": True,
        },
    ),
    "CK+ original": (
        "ckplus",
        _ck_original,
        {"folds": 2},
        64,
        {"on_no_face": "center_crop"},
        {
            "version": 1,
            "format": "ckplus",
            "image_size": 64,
            "source": "aligned",
            "settings": {
                "size": 64,
                "template": "fer-v1",
                "scale": 1.0,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": True,
        },
    ),
    "RAF-DB aligned": (
        "rafdb",
        _raf,
        {"images": "aligned"},
        32,
        RAF_ALIGN,
        {
            "version": 1,
            "format": "rafdb",
            "image_size": 32,
            "source": "pre-aligned",
            "settings": {
                "size": 32,
                "template": "fer-v1",
                "scale": 1.2,
                "on_no_face": "center_crop",
                "min_face": 30,
                **DETECTOR,
            },
            "grey": False,
        },
    ),
    "RAF-DB default images": (
        "rafdb",
        _raf,
        {},
        32,
        {},
        {
            "version": 1,
            "format": "rafdb",
            "image_size": 32,
            "source": "pre-aligned",
            "settings": {
                "size": 32,
                "template": "fer-v1",
                "scale": 1.0,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": False,
        },
    ),
    "RAF-DB original": (
        "rafdb",
        _raf,
        {"images": "original"},
        32,
        RAF_ALIGN,
        {
            "version": 1,
            "format": "rafdb",
            "image_size": 32,
            "source": "aligned",
            "settings": {
                "size": 32,
                "template": "fer-v1",
                "scale": 1.2,
                "on_no_face": "center_crop",
                "min_face": 30,
                **DETECTOR,
            },
            "grey": False,
        },
    ),
    "AffectNet": (
        "affectnet",
        _affectnet,
        {},
        64,
        {"template": "fer2013"},
        {
            "version": 1,
            "format": "affectnet",
            "image_size": 64,
            "source": "aligned",
            "settings": {
                "size": 64,
                "template": "fer2013",
                "scale": 1.0,
                "on_no_face": "center_crop",
                "min_face": 20,
                **DETECTOR,
            },
            "grey": False,
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_faces_record_how_they_were_made_from_the_records(tmp_path, case):
    fmt, build, options, size, align, expected = CASES[case]
    root = build(tmp_path / "data")
    output = read_dataset(fmt, root, options)
    out = tmp_path / "faces.h5"
    faces = build_faces(
        output, size, attrs={"dataset": "d", "format": fmt, "root": str(root)}, align=align, out_path=out
    )
    assert faces.attrs["preparation"] == expected
    assert faces.attrs["format"] == fmt and faces.attrs["dataset"] == "d"


def test_without_a_format_no_record_is_written(tmp_path):
    faces = build_faces(read_dataset("folder", _folder(tmp_path)), 16, {})
    assert "preparation" not in faces.attrs
