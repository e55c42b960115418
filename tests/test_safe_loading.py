"""Files that pasm reads back are loaded without running code: a pickle planted as a training state
beside a model being trained, or given as a model file, runs nothing; the state is ignored (training
starts from epoch 1) and the model file refused, each with a message naming the file and saying why."""

import logging
import pathlib
import pickle

import pytest
import torch
from PIL import Image
from test_training import _data as training_data

from pasm.app import cli
from pasm.nn.models import NotAModelFile, build_model, load_model
from pasm.train.training import Resume, TrainParams, train

MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


class Planted:
    """Unpickling this runs code: it creates the file `marker` (stands for any command an attacker
    chooses)."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = pathlib.Path(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _plant(path: pathlib.Path, marker: pathlib.Path, fmt: str) -> pathlib.Path:
    """Write a malicious pickle at `path`: as torch.save writes it (zip) or as a bare pickle."""
    if fmt == "torch.save":
        torch.save(Planted(marker), path)
    else:
        path.write_bytes(pickle.dumps(Planted(marker), protocol=2))
    return path


FORMATS = ["torch.save", "bare pickle"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_planted_file_runs_code_when_loaded_unsafely(tmp_path, fmt):
    """The control: without weights_only the planted file does create its marker, so the tests below
    that find no marker show that nothing ran."""
    marker = tmp_path / "marker"
    path = _plant(tmp_path / "planted.pt", marker, fmt)
    try:
        torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # a bare pickle: torch reads it as a bad magic number, after running its code
        pass
    assert marker.exists()


def _data():
    return training_data(n=48)


def _params(**kw):
    base = dict(epochs=2, batch_size=16, lr=0.05, lr_milestones=[2], crop_pad=1, flip=False, seed=0)
    return TrainParams(**{**base, **kw})


@pytest.mark.parametrize("fmt", FORMATS)
def test_planted_training_state_runs_nothing_and_is_ignored_with_the_reason(tmp_path, caplog, fmt):
    marker = tmp_path / "marker"
    state = _plant(tmp_path / "model.train_state.pt", marker, fmt)
    imgs, labels = _data()
    seen = []
    with caplog.at_level(logging.INFO, logger="pasm.train.training"):
        train(
            build_model("compact", 7, width=4),
            imgs,
            labels,
            _params(),
            mean=MEAN,
            std=STD,
            progress=False,
            resume=Resume(state, key="inputs-and-params-hash"),
            on_epoch_end=seen.append,
        )
    assert not marker.exists(), "unpickling the training state ran code"
    assert seen == [1, 2]  # started from epoch 1
    ignored = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(ignored) == 1, caplog.text
    assert str(state) in ignored[0] and "starting from epoch 1" in ignored[0]
    why = "not loaded as that could run code" if fmt == "torch.save" else "it is not a PyTorch zip archive"
    assert why in ignored[0], ignored[0]
    assert "weights_only=False" not in caplog.text  # torch's advice to run the file's code is not repeated
    # the planted file was replaced by this run's own state, which loads without running code
    assert torch.load(state, map_location="cpu", weights_only=True)["epoch"] == 2


def test_a_real_training_state_loads_without_running_code(tmp_path):
    """What _save_state writes (weights, SGD momentum, MultiStepLR milestones, generator states,
    history) is all loadable with weights_only=True."""
    imgs, labels = _data()
    state = tmp_path / "model.train_state.pt"
    train(
        build_model("compact", 7, width=4),
        imgs,
        labels,
        _params(epochs=1),
        mean=MEAN,
        std=STD,
        progress=False,
        resume=Resume(state, key="k"),
    )
    loaded = torch.load(state, map_location="cpu", weights_only=True)
    assert loaded["key"] == "k" and loaded["epoch"] == 1 and loaded["optimizer"]["state"]


@pytest.mark.parametrize(
    "fmt, why",
    [
        ("torch.save", "objects other than tensors and plain values; not loaded, as that could run code"),
        ("bare pickle", "a pickle"),
    ],
)
def test_planted_model_file_runs_nothing_and_is_refused_naming_it(tmp_path, fmt, why):
    marker = tmp_path / "marker"
    path = _plant(tmp_path / "model.pt", marker, fmt)
    with pytest.raises(NotAModelFile) as err:
        load_model(path)
    assert not marker.exists(), "loading the model file ran code"
    assert str(err.value).startswith(f"{path} is not a pasm model file") and why in str(err.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_planted_model_file_given_to_predict_runs_nothing(tmp_path, capsys, fmt):
    marker = tmp_path / "marker"
    path = _plant(tmp_path / "model.pt", marker, fmt)
    image = tmp_path / "face.png"
    Image.new("RGB", (8, 8)).save(image)
    code = cli.main(["predict", str(image), "--model", str(path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert not marker.exists(), "pasm predict ran the model file's code"
    assert code == 1
    assert err.startswith(f"pasm predict: {path} is not a pasm model file"), err
    assert len(err.strip().splitlines()) == 1 and "weights_only" not in err


@pytest.mark.parametrize(
    "write, why",
    [
        (lambda p: torch.save([1, 2], p), "it holds a list, not a training state"),
        (lambda p: p.write_bytes(b"not a state"), "it is not a PyTorch zip archive"),
        (lambda p: p.write_bytes(b"PK\x03\x04 truncated"), "it is not a PyTorch zip archive"),
    ],
)
def test_a_state_that_is_not_a_training_state_is_ignored_with_the_reason(tmp_path, caplog, write, why):
    from pasm.train.training import _load_state

    path = tmp_path / "model.train_state.pt"
    write(path)
    with caplog.at_level(logging.INFO, logger="pasm.train.training"):
        assert _load_state(Resume(path, key="k")) is None
    (message,) = [r.getMessage() for r in caplog.records]
    assert str(path) in message and why in message and "starting from epoch 1" in message
