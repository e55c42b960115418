"""Tests of the demo faces (pasm.data.demo_render) and the demo data set writer (pasm.data.demo_dataset)."""

from __future__ import annotations

import csv
import itertools
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pasm.data.demo_dataset import MANIFEST_COLUMNS, write_demo_dataset
from pasm.data.demo_render import CLASS_CODES, REGIONS, render_faces
from pasm.data.labels import CLASSES

SMALL = {"train": 3, "val": 3, "test": 3, "occlusion": 3}


def _render(expr: int, occ: int, seed: int, size: int = 64) -> np.ndarray:
    """One face for a class index and occluded region (-1: none) from a fresh rng."""
    return render_faces(np.array([expr]), np.random.default_rng(seed), size, np.array([occ]))[0].astype(
        np.int16
    )


def _read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames or ()) == MANIFEST_COLUMNS
        return list(reader)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    write_demo_dataset(root, seed=7, per_class=SMALL, label_noise=0.1)
    return root


def test_class_codes_cover_every_class_and_region() -> None:
    assert set(CLASS_CODES) == set(CLASSES)
    for name, code in CLASS_CODES.items():
        assert tuple(code) == REGIONS, name


def test_classes_stay_distinct_with_any_single_region_hidden() -> None:
    for c1, c2 in itertools.combinations(CLASSES, 2):
        distance = sum(CLASS_CODES[c1][r] != CLASS_CODES[c2][r] for r in REGIONS)
        assert distance >= 2, (c1, c2, distance)


def test_every_region_carries_evidence() -> None:
    for region in REGIONS:
        assert len({code[region] for code in CLASS_CODES.values()}) >= 2, region


def test_render_shape_dtype_and_content() -> None:
    rng = np.random.default_rng(0)
    imgs = render_faces(np.arange(7), rng)
    assert imgs.shape == (7, 64, 64, 3) and imgs.dtype == np.uint8
    assert render_faces(np.array([0, 3]), rng, size=40).shape == (2, 40, 40, 3)
    assert render_faces(np.zeros(0, dtype=int), rng).shape == (0, 64, 64, 3)
    assert imgs.std() > 20  # real pictures, not blank canvases
    assert not np.array_equal(imgs[0], imgs[1])


def test_render_is_deterministic_per_seed() -> None:
    expr = np.array([0, 1, 2, 3, 4, 5, 6, 6])
    occ = np.array([-1, 0, 1, 2, 3, -1, 2, -1])
    a = render_faces(expr, np.random.default_rng(123), occlude_region=occ)
    b = render_faces(expr, np.random.default_rng(123), occlude_region=occ)
    c = render_faces(expr, np.random.default_rng(124), occlude_region=occ)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_expression_change_is_local() -> None:
    # Same seed, same identity/pose/lighting/noise: only the facial features may change.
    for seed in range(5):
        neutral = _render(CLASSES.index("neutral"), -1, seed)
        for c in range(len(CLASSES) - 1):
            changed = np.abs(_render(c, -1, seed) - neutral).max(axis=2) > 8
            assert 0.003 < changed.mean() < 0.12, (seed, CLASSES[c], changed.mean())


def test_occluders_sit_on_their_region_top_to_bottom() -> None:
    for seed in range(6):
        expr = seed % len(CLASSES)
        plain = _render(expr, -1, seed)
        centres = []
        for r in range(len(REGIONS)):
            changed = np.abs(_render(expr, r, seed) - plain).max(axis=2) > 30
            assert changed.sum() >= 15, (seed, REGIONS[r])
            centres.append(np.nonzero(changed)[0].mean())
        assert centres == sorted(centres), (seed, centres)


@pytest.mark.parametrize(
    ("region", "c1", "c2"),
    [
        ("brows", "neutral", "surprise"),
        ("eyes", "neutral", "happy"),
        ("nose", "neutral", "disgust"),
        ("mouth", "neutral", "surprise"),
    ],
)
def test_occluder_hides_the_region_evidence(region: str, c1: str, c2: str) -> None:
    r = REGIONS.index(region)
    for seed in range(4):
        a, b = _render(CLASSES.index(c1), -1, seed), _render(CLASSES.index(c2), -1, seed)
        a_occ, b_occ = _render(CLASSES.index(c1), r, seed), _render(CLASSES.index(c2), r, seed)
        footprint = np.abs(a_occ - a).max(axis=2) > 30
        before = np.abs(a - b).sum(axis=2)[footprint].sum()
        after = np.abs(a_occ - b_occ).sum(axis=2)[footprint].sum()
        assert before > 300, (seed, before)  # the two classes differ under the occluder ...
        assert after < 0.1 * before, (seed, before, after)  # ... and the occluder hides it


def test_render_rejects_bad_arguments() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="size"):
        render_faces(np.array([0]), rng, size=31)
    with pytest.raises(ValueError):
        render_faces(np.array([7]), rng)
    with pytest.raises(ValueError):
        render_faces(np.array([0]), rng, occlude_region=np.array([4]))
    with pytest.raises(ValueError):
        render_faces(np.array([0, 1]), rng, occlude_region=np.array([0]))


def test_dataset_layout_matches_manifest(small_set: Path) -> None:
    rows = _read_manifest(small_set / "manifest.csv")
    assert len(rows) == sum(SMALL.values()) * len(CLASSES)
    on_disk = {p.relative_to(small_set).as_posix() for p in small_set.rglob("*.png")}
    assert on_disk == {row["path"] for row in rows}
    assert not list(small_set.glob(".*tmp"))  # the temporary manifest was renamed away
    for row in rows:
        split, label, name = row["path"].split("/")
        assert split == row["split"] and label == row["label"]
        assert name.startswith(f"{split}_") and len(name) == len(split) + len("_00000.png")
        assert row["label"] in CLASSES and row["true_label"] in CLASSES
        with Image.open(small_set / row["path"]) as im:
            assert im.mode == "RGB" and im.size == (64, 64)
    for split, n in SMALL.items():
        truth = Counter(row["true_label"] for row in rows if row["split"] == split)
        assert truth == {c: n for c in CLASSES}, split


def test_label_noise_only_in_train(small_set: Path) -> None:
    rows = _read_manifest(small_set / "manifest.csv")
    for row in rows:
        assert row["noisy"] in ("True", "False")
        noisy = row["noisy"] == "True"
        assert noisy == (row["label"] != row["true_label"]), row
        if row["split"] != "train":
            assert not noisy, row
    n_train = SMALL["train"] * len(CLASSES)
    assert sum(r["noisy"] == "True" for r in rows) == round(0.1 * n_train)


def test_occluded_region_only_and_always_in_occlusion_split(small_set: Path) -> None:
    rows = _read_manifest(small_set / "manifest.csv")
    occ = [r["occluded_region"] for r in rows if r["split"] == "occlusion"]
    assert occ and all(region in REGIONS for region in occ)
    counts = Counter(occ)
    assert set(counts) == set(REGIONS) and max(counts.values()) - min(counts.values()) <= 1
    assert all(r["occluded_region"] == "" for r in rows if r["split"] != "occlusion")


def test_dataset_is_deterministic(small_set: Path, tmp_path: Path) -> None:
    small = {"train": 2, "val": 1, "test": 1, "occlusion": 1}
    a = write_demo_dataset(tmp_path / "a", seed=7, per_class=small)
    b = write_demo_dataset(tmp_path / "b", seed=7, per_class=small)
    c = write_demo_dataset(tmp_path / "c", seed=8, per_class=small)
    assert a.read_bytes() == b.read_bytes()
    rows = _read_manifest(a)
    for row in rows:
        assert (a.parent / row["path"]).read_bytes() == (b.parent / row["path"]).read_bytes()
    pngs_a = [(a.parent / r["path"]).read_bytes() for r in rows]
    pngs_c = [(c.parent / r["path"]).read_bytes() for r in _read_manifest(c)]
    assert pngs_a != pngs_c


def test_rewrite_replaces_previous_images(tmp_path: Path) -> None:
    write_demo_dataset(tmp_path, seed=1, per_class={"train": 2, "val": 1, "test": 1, "occlusion": 1})
    manifest = write_demo_dataset(
        tmp_path, seed=2, label_noise=0.0, per_class={"train": 1, "val": 0, "test": 1, "occlusion": 0}
    )
    rows = _read_manifest(manifest)
    assert {r["split"] for r in rows} == {"train", "test"}
    on_disk = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")}
    assert on_disk == {r["path"] for r in rows}


@pytest.mark.parametrize("bad_key", ["training", "happy"])
def test_unknown_per_class_key_is_named(tmp_path: Path, bad_key: str) -> None:
    with pytest.raises(ValueError, match=bad_key):
        write_demo_dataset(tmp_path, per_class={"train": 1, bad_key: 1})
    assert not (tmp_path / "manifest.csv").exists()


def test_dataset_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="size"):
        write_demo_dataset(tmp_path, size=16, per_class=SMALL)
    with pytest.raises(ValueError, match="label_noise"):
        write_demo_dataset(tmp_path, per_class=SMALL, label_noise=1.5)
    with pytest.raises(ValueError, match="train"):
        write_demo_dataset(tmp_path, per_class={"train": -1})


def test_expressions_are_learnable_from_pixels() -> None:
    # A ridge classifier on raw grey pixels is a weak learner under the pose, identity and
    # lighting nuisance, but must still beat chance (1/7) by a wide margin.
    def data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(len(CLASSES)), n)
        x = render_faces(y, np.random.default_rng(seed)).astype(np.float64).mean(axis=3)
        return x[:, ::2, ::2].reshape(len(y), -1), y

    x_train, y_train = data(100, 1)
    x_test, y_test = data(40, 2)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-3
    a, b = (x_train - mean) / std, (x_test - mean) / std
    targets = np.eye(len(CLASSES))[y_train] * 2 - 1
    dual = np.linalg.solve(a @ a.T + 100.0 * np.eye(len(a)), targets)  # kernel ridge, linear kernel
    accuracy = (np.argmax(b @ (a.T @ dual), axis=1) == y_test).mean()
    assert accuracy > 0.25, accuracy


def test_parallel_writer_matches_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pasm.data.demo_dataset as demo_dataset

    monkeypatch.setattr(demo_dataset, "_MIN_JOBS_PER_WORKER", 1)  # use helpers even for tiny sets
    calls: list[int] = []
    real = demo_dataset._write_images_parallel

    def spy(jobs: list, size: int, workers: int) -> None:
        calls.append(workers)
        real(jobs, size, workers)

    monkeypatch.setattr(demo_dataset, "_write_images_parallel", spy)
    small = {"train": 2, "val": 1, "test": 1, "occlusion": 2}
    serial = write_demo_dataset(tmp_path / "serial", seed=3, per_class=small, workers=1)
    parallel = write_demo_dataset(tmp_path / "parallel", seed=3, per_class=small, workers=2)
    assert calls == [2]
    assert serial.read_bytes() == parallel.read_bytes()
    for row in _read_manifest(serial):
        path = row["path"]
        assert (serial.parent / path).read_bytes() == (parallel.parent / path).read_bytes()
