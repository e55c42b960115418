"""Cross-data-set evaluation: shared label set, restricted predictions, recorded mapping, resizing."""

import json

import numpy as np
import torch

from pasm.data.h5store import Faces, read_groups, write_faces
from pasm.nn.models import build_model, save_model
from pasm.workflow.evaluate import cross_evaluate


def test_cross_evaluation_uses_the_shared_classes(tmp_path):
    torch.manual_seed(0)
    model = build_model("compact", 7, width=4)
    with torch.no_grad():
        model.fc.bias.copy_(torch.tensor([0.0, 0, 0, 0, 0, 0, 50.0]))  # always "neutral" unless restricted
    meta = {
        "arch": "compact",
        "width": 4,
        "classes": ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"],
        "image_size": 16,
        "mean": [0.5] * 3,
        "std": [0.25] * 3,
    }
    save_model(tmp_path / "m.pt", model, meta)
    labels = np.array([0, 3, 3, 0, 3])
    faces = Faces(
        images=np.random.default_rng(0).integers(0, 256, (5, 24, 24, 3), dtype=np.uint8),
        labels=labels,
        splits=np.array(["test"] * 5),
        sources=np.array(list("abcde")),
        status=np.array(["x"] * 5),
        attrs={"label_map": {"anger": "angry"}},
    )
    write_faces(tmp_path / "faces.h5", faces)
    result = cross_evaluate(
        faces=tmp_path / "faces.h5",
        model=tmp_path / "m.pt",
        metrics=tmp_path / "out.json",
        predictions=tmp_path / "predictions.h5",
        ds="src",
        target="tgt",
        r=1,
    )
    groups, _ = read_groups(tmp_path / "predictions.h5")
    assert (groups["all"]["rows"] == np.arange(5)).all()
    assert float(np.mean(groups["all"]["predicted"] == groups["all"]["labels"])) == result["all"]["accuracy"]
    saved = json.loads((tmp_path / "out.json").read_text())
    assert saved == json.loads(json.dumps(result))
    mapping = saved["label_mapping"]
    assert mapping["shared_classes"] == ["angry", "happy"]
    assert mapping["target_label_map"] == {"anger": "angry"}
    assert mapping["class_map"] == {"angry": "angry", "happy": "happy"}
    assert mapping["source_classes"] == meta["classes"] and "neutral" in mapping["source_only"]
    per_class = saved["all"]["per_class"]
    assert per_class["neutral"] == {
        "precision": None,
        "recall": None,
        "f1": None,
        "support": 0,
        "predicted": 0,
    }
    assert per_class["angry"]["support"] == 2 and per_class["happy"]["support"] == 3
    cm = np.array(saved["all"]["confusion_matrix"])
    assert cm.sum() == 5 and cm[:, 6].sum() == 0  # neutral is never predicted: not in the target
    assert set(np.flatnonzero(cm.sum(0))) <= {0, 3}
