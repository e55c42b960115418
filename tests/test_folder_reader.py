"""The generic folder layout: labels, splits, aliases, and bad input named."""

import logging

import numpy as np
import pytest
from PIL import Image

from pasm.data.faces import build_faces
from pasm.data.labels import CLASSES
from pasm.data.readers.folder import read_folder


def _png(path, value=100, size=(10, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, value, value)).save(path)


def test_layout_labels_and_aliases(tmp_path):
    _png(tmp_path / "train" / "happiness" / "a.png")
    _png(tmp_path / "train" / "angry" / "b.png")
    _png(tmp_path / "test" / "Surprised" / "c.jpg")
    (tmp_path / "train" / "angry" / "notes.txt").write_text("not an image")
    recs = read_folder(tmp_path)
    got = sorted((r.split, CLASSES[r.label], r.path.name) for r in recs)
    assert got == [("test", "surprise", "c.jpg"), ("train", "angry", "b.png"), ("train", "happy", "a.png")]


def test_unknown_class_folder_is_an_error_naming_it(tmp_path):
    _png(tmp_path / "train" / "contempt" / "a.png")
    with pytest.raises(ValueError, match="contempt"):
        read_folder(tmp_path)
    recs = read_folder(tmp_path, {"contempt": "disgust"})
    assert CLASSES[recs[0].label] == "disgust"


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        read_folder(tmp_path / "nowhere")


def test_corrupt_image_is_skipped_counted_and_named(tmp_path, caplog):
    _png(tmp_path / "train" / "sad" / "good.png", mode="L")
    bad = tmp_path / "train" / "sad" / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with caplog.at_level(logging.WARNING):
        faces = build_faces(read_folder(tmp_path), 16, {})
    assert faces.images.shape == (1, 16, 16, 3)  # grey upsampled and converted to RGB
    assert faces.attrs["skipped"] == [str(bad)]
    assert str(bad) in caplog.text
    assert np.all(faces.images[0] == 100)
