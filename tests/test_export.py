"""`pasm export --onnx`: the ONNX graph gives PyTorch's probabilities on real aligned faces and random
input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from predict_cases import PHOTOS, SIZE, photo, tiny_model_file

from pasm.app import cli
from pasm.app.export import TOLERANCE, onnx_probabilities, torch_probabilities
from pasm.app.predict import Predictor
from pasm.data.decode import load_image
from pasm.data.labels import CLASSES
from pasm.nn.models import load_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny model file (grey, as FER2013's) and its ONNX export, written through the command line."""
    folder = tmp_path_factory.mktemp("export")
    model_path = tiny_model_file(folder / "model.pt", fmt="fer2013", seed=3)
    onnx_path = folder / "model.onnx"
    assert cli.main(["export", "--onnx", str(onnx_path), "--model", str(model_path)]) == 0
    return model_path, onnx_path


def _max_diff(model_path: Path, onnx_path: Path, pixels: np.ndarray) -> float:
    model, meta = load_model(model_path)
    ours = onnx_probabilities(onnx_path, pixels)
    reference = torch_probabilities(model, pixels, meta["mean"], meta["std"])
    assert ours.shape == reference.shape == (len(pixels), len(CLASSES))
    np.testing.assert_allclose(ours.sum(1), 1.0, atol=1e-5)
    return float(np.abs(ours - reference).max())


@pytest.mark.parametrize("batch", [1, 5])
def test_random_input_any_batch(exported, batch):
    pixels = np.random.default_rng(batch).integers(0, 256, (batch, SIZE, SIZE, 3), dtype=np.uint8)
    assert _max_diff(*exported, pixels) <= TOLERANCE


def test_real_aligned_faces(exported):
    model_path, onnx_path = exported
    predictor = Predictor(model_path, "cpu")
    faces = [
        face for faces in predictor.predict([load_image(photo(name)) for name in PHOTOS]) for face in faces
    ]
    assert len(faces) == len(PHOTOS)
    crops = np.stack([f.crop for f in faces])
    assert _max_diff(model_path, onnx_path, crops) <= TOLERANCE
    assert _max_diff(model_path, onnx_path, crops[:1]) <= TOLERANCE
    # and the graph reproduces what `pasm predict` reports for these faces
    np.testing.assert_allclose(
        onnx_probabilities(onnx_path, crops), np.stack([f.probabilities for f in faces]), atol=TOLERANCE
    )


def test_graph_signature_and_card(exported):
    model_path, onnx_path = exported
    proto = onnx.load(str(onnx_path))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert inp.name == "pixels" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    in_dims = inp.type.tensor_type.shape.dim
    assert in_dims[0].dim_param and not in_dims[0].dim_value  # dynamic batch
    assert [d.dim_value for d in in_dims[1:]] == [SIZE, SIZE, 3]
    assert out.name == "probabilities" and out.type.tensor_type.shape.dim[1].dim_value == len(CLASSES)
    meta = json.loads({p.key: p.value for p in proto.metadata_props}["pasm"])
    assert meta["classes"] == list(CLASSES) and meta["image_size"] == SIZE
    assert meta["alignment"]["grey"] is True and meta["alignment"]["settings"]["template"] == "fer2013"
    assert not list(onnx_path.parent.glob("*.data"))  # weights inside the one file


def test_a_file_that_is_not_a_model_is_named(tmp_path, capsys):
    from pasm.data.h5store import Faces, write_faces

    faces = tmp_path / "faces.h5"
    write_faces(
        faces,
        Faces(
            images=np.zeros((1, 4, 4, 3), np.uint8),
            labels=np.zeros(1, np.int64),
            splits=np.array(["train"]),
            sources=np.array(["a.png"]),
            status=np.array(["pre-aligned"]),
        ),
    )
    assert cli.main(["export", "--onnx", str(tmp_path / "m.onnx"), "--model", str(faces)]) == 1
    err = capsys.readouterr().err
    assert (
        err == f"pasm export: {faces} is not a pasm model file (an HDF5 file, e.g. a faces.h5 or points.h5)\n"
    )
    assert not (tmp_path / "m.onnx").exists()
