"""Metrics against a hand-computed confusion matrix, and batched inference."""

import numpy as np
import torch

from pasm.evaluate.metrics import classification_metrics, confusion_matrix
from pasm.nn.inference import predict_logits


def test_confusion_matrix_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2])
    expected = np.array([[2, 1, 0], [0, 1, 1], [0, 0, 1]])
    assert (confusion_matrix(y_true, y_pred, 3) == expected).all()


def test_metrics_by_hand():
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 1, 0, 1, 2, 2])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert m["n"] == 6
    assert np.isclose(m["accuracy"], 4 / 6)
    assert np.isclose(m["per_class_accuracy"]["a"], 2 / 3)
    assert np.isclose(m["per_class_accuracy"]["b"], 1 / 2)
    assert m["per_class_accuracy"]["d"] is None  # absent class does not count in the mean
    assert np.isclose(m["mean_class_accuracy"], (2 / 3 + 1 / 2 + 1) / 3)
    assert m["support"] == {"a": 3, "b": 2, "c": 1, "d": 0}


def test_predict_logits_matches_a_direct_forward():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))
    imgs = np.random.default_rng(1).integers(0, 256, (7, 4, 4, 3), dtype=np.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    got = predict_logits(model, imgs, mean, std, batch_size=3)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert np.allclose(got, model(x).detach().numpy(), atol=1e-5)


def test_precision_recall_f1_and_normalised_confusion_by_hand():
    # classes: a, b, c in the truth; d only predicted; e absent from both
    y_true = np.array([0, 0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 3, 1, 1, 2, 0])
    m = classification_metrics(y_true, y_pred, ["a", "b", "c", "d", "e"])
    assert m["confusion_matrix"] == [[1, 1, 0, 1, 0], [0, 2, 0, 0, 0], [1, 0, 1, 0, 0], [0] * 5, [0] * 5]
    expected = {  # precision TP/predicted, recall TP/support, F1 2TP/(predicted + support)
        "a": (1 / 2, 1 / 3, 2 / 5),
        "b": (2 / 3, 1.0, 4 / 5),
        "c": (1.0, 1 / 2, 2 / 3),
        "d": (0.0, None, 0.0),
        "e": (None, None, None),
    }
    for name, values in expected.items():
        got = m["per_class"][name]
        for key, want in zip(("precision", "recall", "f1"), values):
            assert (got[key] is None) if want is None else np.isclose(got[key], want), (name, key, got[key])
    assert m["per_class"]["d"]["support"] == 0 and m["per_class"]["d"]["predicted"] == 1
    assert np.isclose(m["accuracy"], 4 / 7)
    assert np.isclose(m["mean_class_accuracy"], (1 / 3 + 1 + 1 / 2) / 3)  # d and e have no true sample
    assert np.isclose(m["macro_f1"], (2 / 5 + 4 / 5 + 2 / 3 + 0) / 4)  # e absent from both: left out
    norm = m["confusion_matrix_normalized"]
    assert np.allclose(norm[0], [1 / 3, 1 / 3, 0, 1 / 3, 0]) and np.allclose(norm[2], [1 / 2, 0, 1 / 2, 0, 0])
    assert norm[3] is None and norm[4] is None
    assert m["per_class_accuracy"]["a"] == m["per_class"]["a"]["recall"]


def test_a_class_never_predicted_has_no_precision_and_zero_f1():
    m = classification_metrics(np.array([0, 1]), np.array([0, 0]), ["a", "b"])
    assert m["per_class"]["b"] == {"precision": None, "recall": 0.0, "f1": 0.0, "support": 1, "predicted": 0}
    assert np.isclose(m["per_class"]["a"]["f1"], 2 / 3) and np.isclose(m["macro_f1"], 1 / 3)


def test_metrics_of_nothing_are_null_not_zero():
    m = classification_metrics(np.array([], np.int64), np.array([], np.int64), ["a", "b"])
    assert (
        m["n"] == 0 and m["accuracy"] is None and m["macro_f1"] is None and m["mean_class_accuracy"] is None
    )
    assert m["confusion_matrix_normalized"] == [None, None]
