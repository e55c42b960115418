"""Metrics against a hand-computed confusion matrix, and batched inference."""

import numpy as np
import torch

from pasm.evaluation import classification_metrics, confusion_matrix, predict_logits


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
