"""pasm on CUDA: training (also distillation from a teacher whose images are read from HDF5), both
point-search strategies, Grad-CAM, MTCNN, and logits equal to the CPU's. Skipped without CUDA;
`make gpu-check` (benchmarks/gpu_check.py) runs them on a GPU machine."""

from __future__ import annotations

import copy
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import search_cases
import test_point_search as de_case
import test_search_strategies as seeded_case
import torch

from pasm.data.h5store import Faces, write_faces
from pasm.data.rows import H5Rows
from pasm.nn.inference import inference_model, predict_logits
from pasm.nn.inputs import to_input
from pasm.nn.models import build_model
from pasm.nn.numerics import set_cuda_numerics
from pasm.search import SearchParams, find_points
from pasm.train.erasing import class_activation_maps
from pasm.train.training import TrainParams, train

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")]

CUDA = "cuda"
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
REPO = Path(__file__).resolve().parents[1]
PHOTO_DIRS = [
    *([Path(os.environ["PASM_FACE_PHOTOS"])] if os.environ.get("PASM_FACE_PHOTOS") else []),
    REPO.parent / "shared" / "images" / "faces",
    REPO / "shared" / "images" / "faces",
]
"""Where a real face photograph (angry.jpg) is looked for; without one, a demo face stands in."""


@pytest.fixture(autouse=True)
def ieee_float32():
    """TF32 off, as the workflow's jobs run on CUDA (pasm.nn.numerics); the flags are restored after."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    set_cuda_numerics(False)
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def separable(n: int = 96, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes told apart by the brightness of the images' left half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.integers(60, 120, (n, size, size, 3)).astype(np.uint8)
    images[labels == 1, :, : size // 2] += 100
    return images, labels


def params(**kw) -> TrainParams:
    base = {"epochs": 4, "batch_size": 16, "lr": 0.05, "lr_milestones": [], "crop_pad": 2, "flip": False}
    return TrainParams(**{**base, **kw})


def on_cuda(model: torch.nn.Module) -> bool:
    return all(p.device.type == "cuda" for p in model.parameters())


@pytest.mark.parametrize("arch", ["compact", "resnet18"])
def test_training_on_cuda_learns(arch):
    images, labels = separable()
    torch.manual_seed(0)
    model = build_model(arch, 7, width=8, pretrained="none")
    hist = train(model, images, labels, params(), mean=MEAN, std=STD, device=CUDA, progress=False)
    losses = [row["loss"] for row in hist]
    assert np.isfinite(losses).all(), losses
    assert losses[-1] < losses[0], losses
    assert on_cuda(model)
    logits = predict_logits(model, images, MEAN, STD, device=CUDA)
    assert logits.shape == (len(images), 7) and np.isfinite(logits).all()


def test_distillation_with_a_teacher_reading_hdf5(tmp_path):
    images, labels = separable(n=64)
    n = len(labels)
    faces = Faces(
        images=images,
        labels=labels,
        splits=np.full(n, "train"),
        sources=np.array([f"{i}.png" for i in range(n)]),
        status=np.full(n, "pre-aligned"),
    )
    masked = images.copy()
    masked[:, 12:20, 12:20] = (124, 116, 104)  # a patch, as the masked samples carry
    write_faces(tmp_path / "faces.h5", faces)
    write_faces(tmp_path / "masked.h5", replace(faces, images=masked))
    clean, student_images = H5Rows(tmp_path / "faces.h5"), H5Rows(tmp_path / "masked.h5")

    torch.manual_seed(0)
    teacher = build_model("compact", 7, width=8)
    train(teacher, images, labels, params(epochs=2), mean=MEAN, std=STD, device=CUDA, progress=False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = build_model("compact", 7, width=8)
    student.load_state_dict(teacher.state_dict())
    hist = train(
        student,
        student_images,
        labels,
        params(epochs=2),
        mean=MEAN,
        std=STD,
        device=CUDA,
        teacher=teacher,
        clean_images=clean,
        alpha=1.0,
        beta=0.5,
        progress=False,
    )
    assert np.isfinite([row["loss"] for row in hist]).all()
    assert on_cuda(student) and on_cuda(teacher)
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())


def _search_on_cuda(model, images, **settings):
    """find_points on CUDA at CUDA's default forward batch (0: 1024) for images whose label is 0."""
    labels = np.zeros(len(images), dtype=np.int64)
    out = find_points(
        model,
        images,
        labels,
        mean=search_cases.MEAN,
        std=search_cases.STD,
        params=SearchParams(batch_size=0, **settings),
        device=CUDA,
        progress=False,
    )
    assert out["clean_correct"].all() and out["flipped"].all()
    return out


@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_de_finds_the_planted_pixel_on_cuda(precision):
    out = _search_on_cuda(
        de_case.PlantedModel(), de_case.planted_images(12), population=30, generations=40, precision=precision
    )
    np.testing.assert_array_equal(out["x"], de_case.PX)
    np.testing.assert_array_equal(out["y"], de_case.PY)
    assert (out["rgb"][:, 0] > 153).all()


@pytest.mark.parametrize("strategy", ["seeded", "ranked"])
@pytest.mark.parametrize("precision", ["bfloat16", "float32"])
def test_gradient_strategies_find_the_planted_pixel_on_cuda(strategy, precision):
    out = _search_on_cuda(
        seeded_case.GreenOverRedModel(),
        seeded_case.planted_images(10),
        strategy=strategy,
        top_k=3,
        top_pixels=3,
        refine_population=20,
        refine_generations=3,
        precision=precision,
    )
    np.testing.assert_array_equal(out["x"], seeded_case.PX)
    np.testing.assert_array_equal(out["y"], seeded_case.PY)
    np.testing.assert_array_equal(out["rgb"][:, :2], [[0, 255]] * 10)  # red off, green on


@pytest.mark.parametrize("arch", ["compact", "resnet18"])
def test_grad_cam_on_cuda_matches_the_cpu(arch):
    torch.manual_seed(0)
    model = build_model(arch, 7, width=8).eval()
    images = np.random.default_rng(0).integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
    labels = np.arange(6) % 7
    on_cpu = class_activation_maps(model, arch, images, labels, MEAN, STD, batch_size=4)
    maps = class_activation_maps(
        copy.deepcopy(model).to(CUDA), arch, images, labels, MEAN, STD, batch_size=4, device=CUDA
    )
    assert maps.shape == (6, 64, 64) and maps.dtype == np.float32
    assert (maps >= 0).all() and (maps <= 1 + 1e-6).all()
    peaks, cpu_peaks = maps.reshape(6, -1).max(1), on_cpu.reshape(6, -1).max(1)
    assert np.all(np.isclose(peaks, 1.0) | (peaks == 0))
    both = np.isclose(peaks, 1.0) & np.isclose(cpu_peaks, 1.0)
    assert both.any()
    np.testing.assert_allclose(maps[both], on_cpu[both], atol=2e-3)


def face_photo() -> np.ndarray:
    """A real photograph with one face (shared/images/faces/angry.jpg), else a rendered demo face."""
    from pasm.data.decode import load_image

    for folder in PHOTO_DIRS:
        if (folder / "angry.jpg").is_file():
            return load_image(folder / "angry.jpg")
    from pasm.data.demo_render import render_faces

    return render_faces(np.array([3]), np.random.default_rng(0), 128)[0]  # MTCNN finds this one


def test_mtcnn_on_cuda_finds_the_face_the_cpu_finds():
    from pasm.data.align import AlignSettings, FaceAligner

    photo = face_photo()
    settings = AlignSettings(size=112)
    box_cpu, marks_cpu, prob_cpu = FaceAligner(settings, batch_size=4).detect([photo])[0]
    aligner = FaceAligner(settings, device=CUDA, batch_size=4)
    assert next(aligner.mtcnn.parameters()).device.type == "cuda"
    box, marks, prob = aligner.detect([photo])[0]
    assert prob_cpu is not None and prob is not None and prob > 0.9
    side = box_cpu[2] - box_cpu[0]
    np.testing.assert_allclose(box, box_cpu, atol=max(2.0, 0.03 * side))
    np.testing.assert_allclose(marks, marks_cpu, atol=max(2.0, 0.03 * side))
    aligned, status, _ = aligner.align([photo])
    assert status == ["detected"] and aligned.shape == (1, 112, 112, 3)


@pytest.mark.parametrize("arch", ["compact", "resnet18"])
def test_cuda_logits_match_the_cpu(arch):
    torch.manual_seed(0)
    model = build_model(arch, 7, width=8).eval()
    images = np.random.default_rng(0).integers(0, 256, (32, 64, 64, 3), dtype=np.uint8)
    on_cpu = predict_logits(model, images, MEAN, STD)
    logits = predict_logits(copy.deepcopy(model).to(CUDA), images, MEAN, STD, device=CUDA)
    scale = float(np.abs(on_cpu).max())
    np.testing.assert_allclose(logits, on_cpu, rtol=1e-4, atol=1e-4 * scale)
    top2 = np.sort(on_cpu, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 1e-3 * scale  # not a near tie that rounding may turn
    assert clear.any()
    np.testing.assert_array_equal(logits[clear].argmax(1), on_cpu[clear].argmax(1))

    # the prepared copy the search and prediction run (folded batch norms, channels_last), at float32
    x = to_input(torch.from_numpy(images), MEAN, STD)
    with torch.inference_mode():
        folded_cpu = inference_model(model, "cpu", "float32")(x).numpy()
        folded = inference_model(model, CUDA, "float32")(x.to(CUDA)).float().cpu().numpy()
    np.testing.assert_allclose(folded, folded_cpu, rtol=1e-4, atol=1e-4 * scale)
    np.testing.assert_array_equal(folded[clear].argmax(1), folded_cpu[clear].argmax(1))
