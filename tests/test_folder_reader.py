"""The generic folder layout: labels, splits, aliases, bad input named; decoding and resizing in faces.h5."""

import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from png16 import as_16bit, source_8bit, write_png16

from pasm.data.faces import build_faces
from pasm.data.labels import CLASSES
from pasm.data.readers.folder import read_folder, read_folder_dataset


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


def test_16_bit_pngs_are_scaled_to_8_bits_in_the_faces_stage(tmp_path):
    grey, rgb = source_8bit((16, 16), seed=1), source_8bit((16, 16, 3), seed=2)
    (tmp_path / "train" / "sad").mkdir(parents=True)
    write_png16(tmp_path / "train" / "sad" / "grey.png", as_16bit(grey))
    write_png16(tmp_path / "train" / "sad" / "rgb.png", as_16bit(rgb))
    faces = build_faces(read_folder_dataset(tmp_path), 16, {})
    assert faces.attrs["undecodable"] == []
    got = dict(zip((Path(s).name for s in faces.sources), faces.images))
    assert abs(got["grey.png"].mean() - grey.mean()) < 1 and abs(got["rgb.png"].mean() - rgb.mean()) < 1
    assert (got["grey.png"] == grey[..., None]).all() and (got["rgb.png"] == rgb).all()


def _framed(width, height, background=100):
    """A grey image with a white square of side height / 2 at its centre."""
    pixels = np.full((height, width, 3), background, dtype=np.uint8)
    side = height // 2
    top, left = (height - side) // 2, (width - side) // 2
    pixels[top : top + side, left : left + side] = 255
    return Image.fromarray(pixels)


def _white_box(image):
    rows, cols = np.nonzero((image > 180).all(axis=2))
    return rows.max() - rows.min() + 1, cols.max() - cols.min() + 1


@pytest.mark.parametrize("resize", ["crop", "pad"])
def test_non_square_images_keep_their_aspect_ratio(tmp_path, caplog, resize):
    (tmp_path / "train" / "happy").mkdir(parents=True)
    _framed(600, 400).save(tmp_path / "train" / "happy" / "wide.png")  # 3:2, as a 6000x4000 photo
    with caplog.at_level(logging.WARNING):
        faces = build_faces(read_folder_dataset(tmp_path), 40, {}, resize=resize)
    image = faces.images[0]
    height, width = _white_box(image)
    assert abs(height - width) <= 1  # the square stays square (stretching made it 13 x 20)
    if resize == "crop":
        assert height == width == 20 and (image[:, 0] == 100).all()  # the centred square fills the frame
    else:
        assert (
            (image[:6] == 0).all() and (image[-6:] == 0).all() and (image[20, 0] == 100).all()
        )  # black bars
    assert faces.attrs["resize"] == resize and faces.attrs["non_square"] == 1
    verb = "centre-cropped" if resize == "crop" else "padded"
    assert f"1 non-square image(s) {verb} to 40 x 40 (resize: {resize}; first: " in caplog.text
    assert "wide.png (600x400)" in caplog.text


def test_square_images_are_resized_as_before(tmp_path):
    (tmp_path / "train" / "happy").mkdir(parents=True)
    photo = _framed(30, 30)
    photo.save(tmp_path / "train" / "happy" / "square.png")
    for resize in ("crop", "pad"):
        faces = build_faces(read_folder_dataset(tmp_path), 16, {}, resize=resize)
        assert (faces.images[0] == np.asarray(photo.resize((16, 16), Image.Resampling.BICUBIC))).all()
        assert faces.attrs["non_square"] == 0 and faces.attrs["upscaled_over_limit"] == 0


def test_strong_enlargements_and_unread_files_are_counted(tmp_path, caplog):
    folder = tmp_path / "train" / "angry"
    _png(folder / "tiny.png", size=(5, 5))
    _png(folder / "fine.png", size=(16, 16))
    for name in ("notes.txt", "a.heic", "b.HEIC", "README"):
        (folder / name).write_bytes(b"x")
    (folder / "more").mkdir()
    (folder / ".DS_Store").write_bytes(b"hidden files are not counted")
    with caplog.at_level(logging.WARNING):
        faces = build_faces(read_folder_dataset(tmp_path), 32, {})
    assert len(faces.images) == 2
    assert faces.attrs["upscaled_over_limit"] == 1 and faces.attrs["upscale_limit"] == 4.0
    assert (
        "1 image(s) enlarged more than 4x to 32 px (most: 6.4x" in caplog.text
        and "tiny.png (5x5)" in caplog.text
    )
    assert faces.attrs["ignored_by_extension"] == {"(folder)": 1, "(none)": 1, ".heic": 2, ".txt": 1}
    assert "5 files or folders not read" in caplog.text


def test_broken_links_are_named_skips_not_files_of_another_extension(tmp_path, caplog):
    folder = tmp_path / "train" / "sad"
    _png(folder / "good.png")
    (folder / "notes.txt").write_text("not an image")
    os.symlink(tmp_path / "deleted.png", folder / "gone.png")
    os.symlink(folder / "loop-b.png", folder / "loop-a.png")
    os.symlink(folder / "loop-a.png", folder / "loop-b.png")
    os.symlink(tmp_path / "deleted", tmp_path / "train" / "happy")  # a class folder that is a broken link
    os.symlink("user@host.4242:1700000000", folder / ".#good.png")  # an editor's lock: hidden, not counted
    with caplog.at_level(logging.WARNING):
        output = read_folder_dataset(tmp_path)
        faces = build_faces(output, 16, {})
    assert [r.path.name for r in output.records] == ["good.png"]
    assert output.ignored == [str(folder / "notes.txt")]
    link = "broken symbolic link"
    broken = [
        f"{tmp_path / 'train' / 'happy'}: {link} (its target {tmp_path / 'deleted'} does not exist)",
        f"{folder / 'gone.png'}: {link} (its target {tmp_path / 'deleted.png'} does not exist)",
        f"{folder / 'loop-a.png'}: {link} (a loop of links)",
        f"{folder / 'loop-b.png'}: {link} (a loop of links)",
    ]
    assert output.skipped == broken
    assert faces.attrs["ignored_by_extension"] == {".txt": 1}  # the links were counted as .png files before
    assert list(faces.attrs["skipped_by_reader"]) == broken
    assert f"4 broken symbolic link(s) not read (first: {broken[0]})" in caplog.text
