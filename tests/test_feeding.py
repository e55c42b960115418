"""The training input path: rows read at their chunks' offsets equal h5py's reads (and any other layout
is read through h5py), teacher and student see the same crop and flip, the loop trains on the CPU
exactly as the plain reference loop (the former implementation) does, and training states resume
across devices. The CUDA tests run only where torch sees a GPU."""

from __future__ import annotations

import math
import pickle

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pasm.data.h5store import Faces, read_faces, read_masked, write_faces, write_table
from pasm.data.rows import H5Rows, chunk_offsets
from pasm.nn.inputs import to_input
from pasm.nn.models import build_model
from pasm.train.augment import CropFlip, random_crop_flip
from pasm.train.batches import BatchReader, read_rows
from pasm.train.erasing import RandomErasing, random_erasing
from pasm.train.losses import pasm_loss
from pasm.train.training import Resume, TrainParams, freeze, train, train_one_epoch

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
ERASING = (0.5, (0.02, 0.4), (0.3, 3.3))
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _images(n: int, size: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def _faces_file(tmp_path, images: np.ndarray, name: str = "faces.h5"):
    """images written as pasm writes faces.h5 (FacesWriter: one image per chunk, grown 256 rows at a time)."""
    n = len(images)
    labels = np.arange(n) % 7
    faces = Faces(
        images=images,
        labels=labels,
        splits=np.full(n, "train"),
        sources=np.array([f"s{i}" for i in range(n)]),
        status=np.full(n, "ok"),
    )
    write_faces(tmp_path / name, faces)
    return tmp_path / name


def _per_row(path, key: str, rows: np.ndarray) -> np.ndarray:
    """The reference: one h5py read per requested row, in the requested order."""
    with h5py.File(path, "r") as f:
        return np.stack([f[key][int(r)] for r in rows]) if len(rows) else np.empty((0, *f[key].shape[1:]))


# --------------------------------------------------------------------------- reads


@pytest.fixture(scope="module")
def faces_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("feeding")
    images = _images(600)  # more than one 256-row block: the chunks are not all adjacent in the file
    return _faces_file(tmp, images), images


def _row_sets(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    return [
        rng.permutation(n)[:64],  # scattered, unsorted
        np.sort(rng.permutation(n)[:64]),  # scattered, sorted
        np.arange(100, 164),  # one run
        np.concatenate([np.arange(250, 262), np.arange(3, 9), np.arange(500, 520)]),  # runs, out of order
        np.array([7, 7, 3, 7, 3, 599, 0, 0]),  # repeats
        np.arange(n)[::-1],  # all, reversed
        np.array([-1, -n, 5]),  # negative positions, as numpy indexes
        np.array([], dtype=np.int64),
    ]


def test_direct_reads_equal_per_row_reads(faces_file):
    path, images = faces_file
    rows = H5Rows(path)
    assert rows.direct()
    for positions in _row_sets(len(images)):
        got = rows.read(positions)
        expected = _per_row(path, "images", np.arange(len(images))[positions])
        assert got.dtype == np.uint8 and got.shape == (len(positions), 12, 12, 3)
        assert np.array_equal(got, expected) and np.array_equal(got, images[positions])
        out = np.full_like(got, 7)
        assert rows.read(positions, out=out) is out and np.array_equal(out, expected)
    assert np.array_equal(rows[10:20], images[10:20]) and np.array_equal(rows[5], images[5])
    assert np.array_equal(np.asarray(rows), images)


def test_views_pickles_and_few_row_lookups_read_the_same(faces_file):
    path, images = faces_file
    parent = H5Rows(path)
    sel = np.random.default_rng(1).permutation(len(images))[:200]
    before = parent.subset(sel)  # looks its offsets up itself (one pass over all chunks)
    parent.read(np.arange(3))
    after = parent.subset(sel)  # takes its rows' offsets from the parent
    few = H5Rows(path, rows=sel[:10])  # 10 of 600 rows: one lookup per row
    for view in (before, after, pickle.loads(pickle.dumps(after)), few):
        positions = np.random.default_rng(2).integers(0, len(view), 50)
        assert np.array_equal(view.read(positions), images[view.rows[positions]])
        assert view.direct()
    with h5py.File(path, "r") as f:
        by_coord = chunk_offsets(f["images"], sel[:10])
        by_pass = chunk_offsets(f["images"], np.arange(len(images)))[sel[:10]]
    assert np.array_equal(by_coord, by_pass)


def test_masked_h5_is_read_directly_too(tmp_path):
    images = _images(600, seed=3)
    blocks = [images[:100], images[100:]]
    write_table(tmp_path / "masked.h5", {"row": np.arange(600)}, images=(images.shape, blocks))
    rows = read_masked(tmp_path / "masked.h5")["images"]
    assert rows.direct()
    for positions in _row_sets(600):
        assert np.array_equal(rows.read(positions), images[positions])


@pytest.mark.parametrize(
    "layout",
    [
        dict(chunks=(1, 12, 12, 3), compression="gzip"),
        dict(chunks=(1, 12, 12, 3), shuffle=True),
        dict(chunks=(4, 12, 12, 3)),
        dict(chunks=(1, 6, 12, 3)),
        dict(),  # contiguous
    ],
    ids=["gzip", "shuffle", "4-row chunks", "half-row chunks", "contiguous"],
)
def test_other_layouts_are_read_through_h5py(tmp_path, layout):
    images = _images(600, seed=4)
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("images", data=images, **layout)
    rows = H5Rows(tmp_path / "x.h5")
    assert not rows.direct()
    for positions in _row_sets(600):
        assert np.array_equal(rows.read(positions), images[positions])


def test_unwritten_rows_fall_back_to_h5py_and_its_fill_value(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        d = f.create_dataset("images", shape=(20, 4, 4, 3), dtype=np.uint8, chunks=(1, 4, 4, 3))
        d[:10] = 9  # rows 10.. have no chunk in the file
    rows = H5Rows(tmp_path / "x.h5")
    assert not rows.direct()
    assert np.array_equal(
        rows.read(np.array([3, 15, 0])), np.stack([np.full((4, 4, 3), v, np.uint8) for v in (9, 0, 9)])
    )
    assert H5Rows(tmp_path / "x.h5", rows=np.arange(10)).direct()  # the written rows alone can be


def test_offsets_are_not_reused_for_another_file_under_the_name(tmp_path):
    first = _images(300, seed=6)
    path = _faces_file(tmp_path, first)
    rows = H5Rows(path)
    assert np.array_equal(rows[np.arange(5)], first[:5])
    kept = pickle.dumps(rows)  # carries the offsets of the first file
    rows.close()
    second = _images(300, seed=7)
    with h5py.File(tmp_path / "other.h5", "w") as f:  # other offsets: other data first, then the chunks
        f.create_dataset("pad", data=np.zeros(5000, np.uint8))
        f.create_dataset("images", data=second, chunks=(1, 12, 12, 3))
    (tmp_path / "other.h5").replace(path)
    again = pickle.loads(kept)
    positions = np.array([0, 4, 250, 17])
    assert np.array_equal(again.read(positions), second[positions])


def test_read_rows_of_arrays_and_the_readers_buffers():
    images = _images(40)
    idx = np.array([5, 1, 39, 1, -2])
    assert np.array_equal(read_rows(images, idx), images[idx])
    out = np.empty((5, 12, 12, 3), np.uint8)
    assert read_rows(images, idx, out) is out and np.array_equal(out, images[idx])
    with pytest.raises(IndexError):
        read_rows(images, np.array([40]), np.empty((1, 12, 12, 3), np.uint8))
    labels = torch.arange(40)
    with BatchReader(images, images[:, ::-1].copy(), labels, ring=2) as reader:
        first, second, third = reader(idx), reader(idx[:3]), reader(np.array([0, 2]))
        assert third.images.data_ptr() == first.images.data_ptr()  # reused `ring` batches later
        assert second.images.data_ptr() != first.images.data_ptr()
        assert np.array_equal(third.images.numpy(), images[[0, 2]])
        assert np.array_equal(third.clean.numpy(), images[[0, 2], ::-1])
        assert torch.equal(third.labels, torch.tensor([0, 2]))


# --------------------------------------------------------------------------- augmentation


def _former_crop_flip(x: torch.Tensor, pad: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """The former random_crop_flip (float batches, padding by F.pad): the reference."""
    b, c, h, w = x.shape
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
        rows = (oy[:, None] + torch.arange(h)[None, :])[:, None, :, None]
        cols = (ox[:, None] + torch.arange(w)[None, :])[:, None, None, :]
        x = padded[torch.arange(b)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]
    if flip:
        mirror = torch.rand(b, generator=generator) < 0.5
        x = torch.where(mirror[:, None, None, None], x.flip(3), x)
    return x


def _former_erasing(x, generator, probability, area, aspect):
    """The former random_erasing (drawn on the host): the reference."""
    b, _, h, w = x.shape
    u = torch.rand(b, 5, generator=generator)
    frac = area[0] + (area[1] - area[0]) * u[:, 0]
    ratio = torch.exp(math.log(aspect[0]) + (math.log(aspect[1]) - math.log(aspect[0])) * u[:, 1])
    eh = torch.sqrt(frac * h * w * ratio).round().clamp(1, h).long()
    ew = torch.sqrt(frac * h * w / ratio).round().clamp(1, w).long()
    top = (u[:, 2] * (h - eh + 1)).long()
    left = (u[:, 3] * (w - ew + 1)).long()
    erase = u[:, 4] < probability
    rows, cols = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside = (
        ((rows >= top[:, None]) & (rows < (top + eh)[:, None]))[:, :, None]
        & ((cols >= left[:, None]) & (cols < (left + ew)[:, None]))[:, None, :]
        & erase[:, None, None]
    )
    noise = torch.rand(x.shape, generator=generator) * 255.0
    return torch.where(inside[:, None], noise, x)


@pytest.mark.parametrize(
    "shape, pad, flip",
    [((16, 3, 10, 12), 3, True), ((7, 6, 5, 5), 4, True), ((9, 3, 8, 8), 0, True), ((9, 3, 8, 8), 2, False)],
)
def test_crop_flip_draws_and_moves_pixels_as_the_former_one(shape, pad, flip):
    b, c, h, w = shape
    x = torch.randint(0, 256, (b, h, w, c), dtype=torch.uint8).permute(0, 3, 1, 2)  # as batches arrive
    for seed in range(4):
        ours, former = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        assert torch.equal(
            random_crop_flip(x, pad, flip, ours).float(), _former_crop_flip(x.float(), pad, flip, former)
        )
        assert torch.equal(ours.get_state(), former.get_state())  # the same numbers drawn, in the same order


def test_random_erasing_is_the_former_one_on_the_cpu():
    x = torch.rand(6, 3, 9, 11) * 255
    ours, former = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(random_erasing(x, ours, *ERASING), _former_erasing(x, former, *ERASING))
    assert torch.equal(ours.get_state(), former.get_state())


def test_one_view_applied_to_two_batches_moves_both_alike():
    clean = torch.randint(0, 256, (32, 3, 10, 10), dtype=torch.uint8)
    masked = 255 - clean
    view = CropFlip.draw(32, 3, True, torch.Generator().manual_seed(0))
    assert torch.equal(view.apply(masked), 255 - view.apply(clean))
    assert not torch.equal(view.apply(clean), clean)  # something did move
    with pytest.raises(ValueError, match="smaller than"):
        CropFlip.draw(2, 10, False, torch.Generator()).apply(clean[:2])


# --------------------------------------------------------------------------- the training loop


class Recorder(nn.Module):
    """A network that keeps a copy of every input it is given."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.inputs = net, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.detach().float().cpu().clone())
        return self.net(x)


def _params(**kw):
    base = dict(epochs=2, batch_size=16, lr=0.05, lr_milestones=[2], crop_pad=3, flip=True, seed=4)
    return TrainParams(**{**base, **kw})


def _teacher_sees_the_students_view(tmp_path, device):
    images = _images(40, size=16, seed=8)
    path = _faces_file(tmp_path, images)
    torch.manual_seed(0)
    student, teacher = Recorder(build_model("compact", 7, 4)), Recorder(build_model("compact", 7, 4))
    faces = read_faces(path)
    train(
        student,
        faces.images,  # the same rows as the teacher's, read from another H5Rows
        faces.labels,
        _params(),
        mean=MEAN,
        std=STD,
        device=device,
        teacher=teacher,
        clean_images=H5Rows(path),
        beta=0.5,
        progress=False,
    )
    assert len(student.inputs) == len(teacher.inputs) == 6  # 2 epochs of 16 + 16 + 8
    for s, t in zip(student.inputs, teacher.inputs):
        assert torch.equal(s, t)


def test_teacher_and_student_get_the_same_crop_and_flip(tmp_path):
    _teacher_sees_the_students_view(tmp_path, "cpu")


def _reference_train(
    model, images, labels, params, *, teacher=None, clean=None, alpha=1.0, beta=0.0, erasing=None
):
    """The former loop, step for step: batches concatenated along channels, augmentation on floats
    with the host's generator, the loss summed in Python; returns the per-epoch mean losses."""
    torch.manual_seed(params.seed)
    gen = torch.Generator().manual_seed(params.seed)
    model.to(memory_format=torch.channels_last).train()
    if teacher is not None:
        freeze(teacher).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(
        model.parameters(), lr=params.lr, momentum=params.momentum, weight_decay=params.weight_decay
    )
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=params.lr_milestones, gamma=params.lr_gamma)
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    losses = []
    for _ in range(params.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=gen)
        total, seen = 0.0, 0
        for s in range(0, len(labels), params.batch_size):
            idx = order[s : s + params.batch_size].numpy()
            if len(idx) < 2:
                continue
            x = torch.from_numpy(np.ascontiguousarray(images[idx])).permute(0, 3, 1, 2)
            if teacher is not None:
                x = torch.cat([x, torch.from_numpy(np.ascontiguousarray(clean[idx])).permute(0, 3, 1, 2)], 1)
            xb = _former_crop_flip(x.float(), params.crop_pad, params.flip, gen)
            yb = y_all[torch.from_numpy(idx)]
            student_u8 = xb[:, :3] if erasing is None else _former_erasing(xb[:, :3], gen, *erasing)
            teacher_logits = None
            if teacher is not None:
                with torch.no_grad():
                    teacher_logits = teacher(
                        to_input(xb[:, 3:], MEAN, STD).contiguous(memory_format=torch.channels_last)
                    ).float()
            logits = model(
                to_input(student_u8, MEAN, STD).contiguous(memory_format=torch.channels_last)
            ).float()
            loss = pasm_loss(logits, yb, teacher_logits, alpha, beta)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        sched.step()
        losses.append(total / seen)
    model.eval().to(memory_format=torch.contiguous_format)
    return losses


@pytest.mark.parametrize("variant", ["plain", "teacher", "erasing", "teacher+erasing"])
def test_cpu_training_equals_the_former_loop_bit_for_bit(tmp_path, variant):
    images = _images(70, size=16, seed=9)
    masked = images.copy()
    masked[:, 4:9, 3:10] = 0
    labels = np.random.default_rng(9).integers(0, 7, 70)
    faces = H5Rows(_faces_file(tmp_path, images))
    write_table(tmp_path / "masked.h5", {"row": np.arange(70)}, images=(masked.shape, [masked]))
    student_rows = read_masked(tmp_path / "masked.h5")["images"]
    with_teacher = "teacher" in variant
    erasing = ERASING if "erasing" in variant else None
    torch.manual_seed(1)
    init = build_model("compact", 7, 4)
    teacher = build_model("compact", 7, 4) if with_teacher else None
    ours, former = build_model("compact", 7, 4), build_model("compact", 7, 4)
    ours.load_state_dict(init.state_dict())
    former.load_state_dict(init.state_dict())
    kw = dict(alpha=0.7, beta=0.5) if with_teacher else {}
    hist = train(
        ours,
        student_rows if with_teacher else faces,
        labels,
        _params(),
        mean=MEAN,
        std=STD,
        teacher=teacher,
        clean_images=faces if with_teacher else None,
        student_transform=RandomErasing(*erasing) if erasing else None,
        progress=False,
        **kw,
    )
    losses = _reference_train(
        former,
        masked if with_teacher else images,
        labels,
        _params(),
        teacher=teacher,
        clean=images,
        erasing=erasing,
        **kw,
    )
    assert [h["loss"] for h in hist] == losses  # the float64 sum on the device is Python's sum
    for (k, a), b in zip(ours.state_dict().items(), former.state_dict().values()):
        assert torch.equal(a, b), k


def test_loss_and_accuracy_are_read_once_per_epoch(monkeypatch):
    images, labels = _images(64, size=16), np.arange(64) % 7
    reads = []
    item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, "item", lambda self: reads.append(1) or item(self))
    stats = train_one_epoch(
        build_model("compact", 7, 4),
        torch.optim.SGD(build_model("compact", 7, 4).parameters(), lr=0.01),
        images,
        torch.from_numpy(labels),
        _params(),
        torch.Generator().manual_seed(0),
        1,
        mean=MEAN,
        std=STD,
        device=torch.device("cpu"),
        progress=False,
    )
    assert len(reads) == 2 and stats["images"] == 64


# --------------------------------------------------------------------------- training states


class Stop(Exception):
    """Stands for the job being killed right after an epoch's state was saved."""


def _resume_run(tmp_path, device, state, epochs, stop=None):
    images = _images(48, size=16, seed=2)
    labels = np.arange(48) % 7
    torch.manual_seed(0)
    model = build_model("compact", 7, 4)

    def hook(epoch):
        if epoch == stop:
            raise Stop

    try:
        train(
            model,
            images,
            labels,
            _params(epochs=epochs, batch_size=12),
            mean=MEAN,
            std=STD,
            device=device,
            progress=False,
            resume=Resume(state, "k"),
            student_transform=RandomErasing(*ERASING),
            on_epoch_end=hook,
        )
    except Stop:
        pass
    return model


def test_state_keeps_no_gpu_list_and_old_states_still_resume(tmp_path, caplog):
    full = _resume_run(tmp_path, "cpu", tmp_path / "full.pt", 3)
    _resume_run(tmp_path, "cpu", tmp_path / "part.pt", 3, stop=1)
    state = torch.load(tmp_path / "part.pt", map_location="cpu", weights_only=True)
    assert state["cuda_rng"] is None and state["aug_generator"] is None  # written on the CPU
    state["cuda_rng"] = []  # as states used to be written on a machine without GPUs
    del state["aug_generator"]
    torch.save(state, tmp_path / "part.pt")
    with caplog.at_level("INFO", logger="pasm.train.training"):
        resumed = _resume_run(tmp_path, "cpu", tmp_path / "part.pt", 3)
    assert "continuing at epoch 2" in caplog.text
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


def test_a_state_written_on_a_gpu_resumes_on_the_cpu(tmp_path, caplog):
    full = _resume_run(tmp_path, "cpu", tmp_path / "full.pt", 2)
    _resume_run(tmp_path, "cpu", tmp_path / "part.pt", 2, stop=1)
    state = torch.load(tmp_path / "part.pt", map_location="cpu", weights_only=True)
    state["cuda_rng"] = torch.zeros(16, dtype=torch.uint8)  # the forms a CUDA device's states take
    state["aug_generator"] = torch.zeros(16, dtype=torch.uint8)
    torch.save(state, tmp_path / "part.pt")
    with caplog.at_level("INFO", logger="pasm.train.training"):
        resumed = _resume_run(tmp_path, "cpu", tmp_path / "part.pt", 2)
    assert "continuing at epoch 2" in caplog.text
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k


# --------------------------------------------------------------------------- CUDA


@cuda
def test_cuda_teacher_and_student_get_the_same_crop_and_flip(tmp_path):
    _teacher_sees_the_students_view(tmp_path, "cuda")


@cuda
def test_cuda_draws_on_the_device_and_batches_are_pinned():
    gen = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 10, 10), dtype=torch.uint8, device="cuda")
    view = CropFlip.draw(8, 2, True, gen)
    assert view.oy.is_cuda and view.ox.is_cuda and view.mirror.is_cuda
    assert view.apply(x).is_cuda
    erased = random_erasing(x.float(), gen, 1.0, (0.1, 0.2), (0.5, 2.0))
    assert erased.is_cuda and bool(((erased >= 0) & (erased <= 255)).all())
    images = _images(20)
    with BatchReader(images, images, torch.arange(20), pin=True) as reader:
        batch = reader(np.array([3, 1, 4]))
    assert batch.images.is_pinned() and batch.clean.is_pinned() and batch.labels.is_pinned()
    assert np.array_equal(batch.images.numpy(), images[[3, 1, 4]])


@cuda
def test_cuda_distillation_from_hdf5(tmp_path):
    images = _images(96, size=16, seed=11)
    labels = np.random.default_rng(11).integers(0, 7, 96)
    masked = images.copy()
    masked[:, 4:8, 4:8] = 0
    faces = H5Rows(_faces_file(tmp_path, images))
    write_table(tmp_path / "masked.h5", {"row": np.arange(96)}, images=(masked.shape, [masked]))
    student_rows = read_masked(tmp_path / "masked.h5")["images"]
    torch.manual_seed(0)
    teacher = build_model("compact", 7, 4)
    student = build_model("compact", 7, 4)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    start = {k: v.clone() for k, v in student.state_dict().items()}
    hist = train(
        student,
        student_rows,
        labels,
        _params(epochs=2),
        mean=MEAN,
        std=STD,
        device="cuda",
        teacher=teacher,
        clean_images=faces,
        alpha=0.7,
        beta=0.5,
        student_transform=RandomErasing(*ERASING),
        val=(images, labels),
        progress=False,
        resume=Resume(tmp_path / "state.pt", "k"),
    )
    assert [h["epoch"] for h in hist] == [1, 2]
    assert all(math.isfinite(h["loss"]) and 0 <= h["train_acc"] <= 1 for h in hist)
    assert next(student.parameters()).is_cuda
    for k, v in teacher.state_dict().items():
        assert torch.equal(v.cpu(), before[k]), k
    assert any(not torch.equal(v.cpu(), start[k]) for k, v in student.state_dict().items())
    state = torch.load(tmp_path / "state.pt", map_location="cpu", weights_only=True)
    assert isinstance(state["cuda_rng"], torch.Tensor) and isinstance(state["aug_generator"], torch.Tensor)


@cuda
def test_cuda_resume_restores_the_device_generators(tmp_path, caplog):
    _resume_run(tmp_path, "cuda", tmp_path / "full.pt", 3)
    _resume_run(tmp_path, "cuda", tmp_path / "part.pt", 3, stop=2)
    with caplog.at_level("INFO", logger="pasm.train.training"):
        _resume_run(tmp_path, "cuda", tmp_path / "part.pt", 3)
    assert "continuing at epoch 3" in caplog.text
    full = torch.load(tmp_path / "full.pt", map_location="cpu", weights_only=True)
    part = torch.load(tmp_path / "part.pt", map_location="cpu", weights_only=True)
    assert full["epoch"] == part["epoch"] == 3
    for key in ("generator", "aug_generator", "cuda_rng", "torch_rng"):
        assert torch.equal(full[key], part[key]), key  # the same numbers drawn as without the break


@cuda
def test_states_move_between_cpu_and_cuda(tmp_path, caplog):
    _resume_run(tmp_path, "cpu", tmp_path / "a.pt", 2, stop=1)
    with caplog.at_level("INFO", logger="pasm.train.training"):
        _resume_run(tmp_path, "cuda", tmp_path / "a.pt", 2)  # written on the CPU, continued on CUDA
    assert "continuing at epoch 2" in caplog.text
    caplog.clear()
    _resume_run(tmp_path, "cuda", tmp_path / "b.pt", 2, stop=1)
    with caplog.at_level("INFO", logger="pasm.train.training"):
        model = _resume_run(tmp_path, "cpu", tmp_path / "b.pt", 2)  # and back
    assert "continuing at epoch 2" in caplog.text
    assert not next(model.parameters()).is_cuda
