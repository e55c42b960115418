"""Training: it learns, the teacher stays frozen, the student starts from the teacher, logs are written."""

import csv

import numpy as np
import pytest
import torch

from pasm.nn.models import build_model, load_model, save_model
from pasm.train.training import TrainParams, train, train_one_epoch

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _data(n=96, size=16, seed=0):
    """Two classes separable by brightness of the left half."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    imgs = rng.integers(60, 120, (n, size, size, 3)).astype(np.uint8)
    imgs[labels == 1, :, : size // 2] += 100
    return imgs, labels


def _params(**kw):
    base = dict(epochs=4, batch_size=16, lr=0.05, lr_milestones=[3], crop_pad=1, flip=False, seed=0)
    return TrainParams(**{**base, **kw})


def test_pretraining_learns_and_logs(tmp_path):
    imgs, labels = _data()
    torch.manual_seed(0)  # the initialisation: 3 of 40 unseeded ones stay below 0.9 in 4 epochs
    model = build_model("compact", 7, width=4)
    hist = train(
        model,
        imgs,
        labels,
        _params(),
        mean=MEAN,
        std=STD,
        val=(imgs, labels),
        log_csv=tmp_path / "log.csv",
        progress=False,
    )
    assert hist[-1]["val_acc"] > 0.9
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["lr"]) == pytest.approx(0.005)  # decayed x0.1 at epoch 3


def test_same_seed_same_weights():
    imgs, labels = _data()
    a, b = build_model("compact", 7, width=4), build_model("compact", 7, width=4)
    b.load_state_dict(a.state_dict())
    train(a, imgs, labels, _params(epochs=2), mean=MEAN, std=STD, progress=False)
    train(b, imgs, labels, _params(epochs=2), mean=MEAN, std=STD, progress=False)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_train_one_epoch_returns_its_statistics():
    imgs, labels = _data(n=33)
    model = build_model("compact", 7, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    stats = train_one_epoch(
        model,
        opt,
        imgs,
        torch.as_tensor(labels, dtype=torch.int64),
        _params(),
        torch.Generator().manual_seed(0),
        1,
        mean=MEAN,
        std=STD,
        device=torch.device("cpu"),
        progress=False,
    )
    assert stats["images"] == 32  # two batches of 16; the last single image cannot train BatchNorm
    assert stats["loss"] > 0 and 0 <= stats["train_acc"] <= 1
    assert any(not torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_teacher_is_frozen_and_student_starts_from_it(tmp_path):
    imgs, labels = _data()
    teacher = build_model("compact", 7, width=4)
    train(teacher, imgs, labels, _params(epochs=1), mean=MEAN, std=STD, progress=False)
    meta = {
        "arch": "compact",
        "width": 4,
        "classes": list("abcdefg"),
        "image_size": 16,
        "mean": MEAN,
        "std": STD,
    }
    save_model(tmp_path / "t.pt", teacher, meta)
    teacher, _ = load_model(tmp_path / "t.pt")
    student, loaded_meta = load_model(tmp_path / "t.pt")
    assert loaded_meta == meta
    for a, b in zip(teacher.state_dict().values(), student.state_dict().values()):
        assert torch.equal(a, b)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    masked = imgs.copy()
    masked[:, 4:8, 4:8] = 0
    train(
        student,
        masked,
        labels,
        _params(epochs=1),
        mean=MEAN,
        std=STD,
        teacher=teacher,
        clean_images=imgs,
        alpha=1.0,
        beta=0.5,
        progress=False,
    )
    assert not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k]), k  # BatchNorm statistics included
    assert any(not torch.equal(v, before[k]) for k, v in student.state_dict().items())


def test_teacher_needs_aligned_clean_images():
    imgs, labels = _data()
    with pytest.raises(ValueError, match="clean_images"):
        train(
            build_model("compact", 7, width=4),
            imgs,
            labels,
            _params(),
            mean=MEAN,
            std=STD,
            teacher=build_model("compact", 7, width=4),
            clean_images=imgs[:10],
            progress=False,
        )


def test_model_file_requires_metadata(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        save_model(tmp_path / "m.pt", build_model("compact", 7, width=4), {"arch": "compact"})
    assert not (tmp_path / "m.pt").exists()


class Interrupted(Exception):
    """Stands for the job being killed right after an epoch's state was saved."""


def _stop_after(k):
    def hook(epoch):
        if epoch == k:
            raise Interrupted(epoch)

    return hook


def test_interrupted_run_resumes_at_next_epoch_with_identical_weights(tmp_path, caplog):
    from pasm.train.training import Resume

    imgs, labels = _data()
    init = build_model("compact", 7, width=4)
    full, part = build_model("compact", 7, width=4), build_model("compact", 7, width=4)
    full.load_state_dict(init.state_dict())
    part.load_state_dict(init.state_dict())
    params = _params(epochs=4, flip=True)
    train(full, imgs, labels, params, mean=MEAN, std=STD, progress=False)

    resume = Resume(tmp_path / "state.pt", key="inputs-and-params-hash")
    with pytest.raises(Interrupted):
        train(
            part,
            imgs,
            labels,
            params,
            mean=MEAN,
            std=STD,
            progress=False,
            resume=resume,
            log_csv=tmp_path / "log.csv",
            on_epoch_end=_stop_after(2),
        )
    assert resume.path.exists() and not (tmp_path / "log.csv").exists()  # no finished-looking log yet
    seen = []
    fresh = build_model("compact", 7, width=4)  # a new process: weights come from the saved state
    with caplog.at_level("INFO", logger="pasm.train.training"):
        hist = train(
            fresh,
            imgs,
            labels,
            params,
            mean=MEAN,
            std=STD,
            progress=False,
            resume=resume,
            log_csv=tmp_path / "log.csv",
            on_epoch_end=seen.append,
        )
    assert seen == [3, 4]  # epochs 1-2 were not trained again
    assert "continuing at epoch 3" in caplog.text
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert [int(r["epoch"]) for r in csv.DictReader(open(tmp_path / "log.csv"))] == [1, 2, 3, 4]
    for (k, va), vb in zip(full.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(va, vb), k


def test_state_with_another_key_is_not_reused(tmp_path):
    from pasm.train.training import Resume

    imgs, labels = _data()
    with pytest.raises(Interrupted):
        train(
            build_model("compact", 7, width=4),
            imgs,
            labels,
            _params(epochs=3),
            mean=MEAN,
            std=STD,
            progress=False,
            resume=Resume(tmp_path / "state.pt", "old"),
            on_epoch_end=_stop_after(2),
        )
    seen = []
    train(
        build_model("compact", 7, width=4),
        imgs,
        labels,
        _params(epochs=3),
        mean=MEAN,
        std=STD,
        progress=False,
        resume=Resume(tmp_path / "state.pt", "changed"),
        on_epoch_end=seen.append,
    )
    assert seen == [1, 2, 3]


def test_bfloat16_training_learns_and_keeps_float32_weights():
    imgs, labels = _data()
    torch.manual_seed(0)
    model = build_model("compact", 7, width=4)
    hist = train(
        model,
        imgs,
        labels,
        _params(precision="bfloat16"),
        mean=MEAN,
        std=STD,
        val=(imgs, labels),
        progress=False,
    )
    assert hist[-1]["val_acc"] > 0.9
    assert all(p.dtype is torch.float32 for p in model.parameters())


def test_unknown_precision_is_rejected_before_training():
    with pytest.raises(ValueError, match="precision 'fp16'"):
        TrainParams(precision="fp16")


@pytest.mark.parametrize("n, batch_size", [(96, 1), (1, 16), (0, 16)])
def test_training_that_would_see_no_image_is_refused_before_it_starts(n, batch_size):
    """Batches of one image are dropped (BatchNorm); an epoch of only those would train nothing."""
    imgs, labels = _data(n=n)
    model = build_model("compact", 7, width=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    with pytest.raises(ValueError) as err:
        train(
            model,
            imgs,
            labels,
            _params(batch_size=batch_size),
            mean=MEAN,
            std=STD,
            progress=False,
            on_epoch_end=seen.append,
        )
    message = str(err.value)
    assert f"batch_size {batch_size}" in message and f"{n} training images" in message, message
    assert seen == []
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_smallest_trainable_batch_and_data_still_train():
    imgs, labels = _data(n=3)
    model = build_model("compact", 7, width=4)
    hist = train(model, imgs, labels, _params(epochs=1, batch_size=2), mean=MEAN, std=STD, progress=False)
    assert hist[0]["images_per_s"] > 0  # one batch of 2 trained; the third image is dropped


@pytest.mark.parametrize("block", ["pretrain", "finetune"])
def test_config_refuses_a_training_batch_size_below_two(block):
    from pasm.workflow.config import ConfigError, validate_config

    cfg = {"datasets": {"d": {"format": "folder", "root": "data/d", block: {"batch_size": 1}}}}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert f"\n  datasets.d.{block}.batch_size:" in str(err.value)
    cfg["datasets"]["d"][block]["batch_size"] = 2
    assert validate_config(cfg)["datasets"]["d"][block]["batch_size"] == 2
