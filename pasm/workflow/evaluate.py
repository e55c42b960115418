"""Stages of workflow/rules/evaluate.smk: scores of a round's model, its report, cross-data-set tests,
the mined points' density, the round decision, the final round and the comparison over seeds."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from pasm.data.atomic import atomic_path
from pasm.data.faces import pixels_rgb
from pasm.data.h5store import Faces, read_faces, read_table, write_groups
from pasm.data.labels import CLASSES
from pasm.evaluate.comparison import write_comparison
from pasm.evaluate.metrics import classification_metrics
from pasm.evaluate.plots import confusion_plot, density_grid
from pasm.evaluate.point_density import class_densities, default_sigma, mean_grey_face
from pasm.evaluate.report import cross_by_round, write_round_report
from pasm.nn.inference import predict_logits, resolve_device
from pasm.nn.models import file_sha256, load_model
from pasm.workflow.placement import where_made
from pasm.workflow.rounds import decide, final_round

log = logging.getLogger(__name__)

EVAL_BLOCK = 1000
"""Faces resized per block in cross-evaluation (a multiple of predict_logits' batch of 50)."""


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file written by another stage."""
    return json.loads(Path(path).read_text())


def write_json(path: str | Path, value: Any) -> None:
    """Write ``value`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(value, indent=2))


def evaluation_subsets(
    faces: Faces, eval_splits: Sequence[str]
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Rows of every named subset restricted to the evaluation splits, and why any subset was left out.

    RAF-DB's occlusion/pose subsets lie inside its test split; CK+'s folds span every split, so only
    the part in an evaluation split is scored (a fold outside them is left out, with the reason).
    A subset named in eval_splits itself is scored whole, as a split, and is not repeated here.
    """
    split_names = [s for s in eval_splits if s not in faces.subsets]
    in_eval = np.isin(faces.splits, split_names)
    rows, skipped = {}, {}
    for name, mask in faces.subsets.items():
        if name in eval_splits:
            continue
        sel = np.flatnonzero(np.asarray(mask, dtype=bool) & in_eval)
        if sel.size:
            rows[name] = sel
        else:
            skipped[name] = f"none of its {int(np.sum(mask))} rows is in the evaluation splits {split_names}"
    return rows, skipped


def score_model(
    *,
    faces: str,
    model: str,
    metrics: str,
    predictions: str,
    confusion: str,
    ds: str,
    r: int,
    val_split: str | None,
    eval_splits: Sequence[str],
    device: str = "cpu",
) -> dict[str, Any]:
    """Metrics of a model on the validation split, every evaluation split and every named subset.

    ``predictions`` (predictions.h5) gets every evaluated face's logits, label and faces.h5 row,
    one group per split and subset ("splits/test", "subsets/occlusion"), so that methods can be
    compared face by face; ``confusion`` is the first evaluation split's confusion matrix.
    """
    torch_device = resolve_device(device)
    data = read_faces(faces)
    net, meta = load_model(model, torch_device)
    splits = list(dict.fromkeys(([val_split] if val_split else []) + list(eval_splits)))
    subsets, skipped = evaluation_subsets(data, eval_splits)
    result: dict[str, Any] = {
        "dataset": ds,
        "round": r,
        "model": str(model),
        "model_sha256": file_sha256(model),
        "classes": list(CLASSES),
        "splits": {},
        "subsets": {},
        "subsets_not_evaluated": skipped,
        "placement": where_made(device),
    }
    sets = [("splits", s, data.rows(s)) for s in splits] + [
        ("subsets", s, rows) for s, rows in subsets.items()
    ]
    groups = {}
    for kind, set_name, rows in sets:
        logits = predict_logits(net, data.images.subset(rows), meta["mean"], meta["std"], device=torch_device)
        groups[f"{kind}/{set_name}"] = {
            "rows": rows.astype(np.int64),
            "labels": data.labels[rows],
            "logits": logits.astype(np.float32),
        }
        m = classification_metrics(data.labels[rows], logits.argmax(1), CLASSES)
        if kind == "subsets":
            m["within_splits"] = sorted(set(data.splits[rows].tolist()))
        result[kind][set_name] = m
        log.info(
            "round %d %s: accuracy %.4f, macro F1 %.4f (n=%d)",
            r,
            set_name,
            m["accuracy"],
            m["macro_f1"],
            len(rows),
        )
    for set_name, why in skipped.items():
        log.info("round %d: subset %s not evaluated: %s", r, set_name, why)
    main_split = eval_splits[0]
    main = result["splits"][main_split]
    confusion_plot(
        np.array(main["confusion_matrix"]),
        CLASSES,
        confusion,
        title=f"{ds} round {r}, {main_split}: accuracy {main['accuracy']:.3f}",
    )
    attrs = {
        "dataset": ds,
        "round": r,
        "classes": list(CLASSES),
        "model_sha256": result["model_sha256"],
        "sets": list(groups),
    }
    write_groups(predictions, groups, attrs)
    write_json(metrics, result)
    return result


def evaluate(
    *,
    faces: str,
    model: str,
    earlier: Sequence[str],
    earlier_cross: Sequence[str],
    cross: Sequence[str],
    density: Sequence[str],
    metrics: str,
    predictions: str,
    confusion: str,
    rounds_png: str,
    rounds_html: str,
    round_html: str,
    ds: str,
    r: int,
    val_split: str | None,
    eval_splits: Sequence[str],
    device: str = "cpu",
) -> dict[str, Any]:
    """Score round r's model (score_model) and draw accuracy per round over the ``earlier`` rounds'
    metrics and cross-data-set results and this round's; this round's tables show where its mined
    points fell (``density``: the point_density picture, none for round 0)."""
    result = score_model(
        faces=faces,
        model=model,
        metrics=metrics,
        predictions=predictions,
        confusion=confusion,
        ds=ds,
        r=r,
        val_split=val_split,
        eval_splits=eval_splits,
        device=device,
    )
    before = cross_by_round([read_json(p) for p in earlier_cross])
    rounds = [(m, before.get(int(m["round"]), {})) for m in map(read_json, earlier)]
    now = {c["target"]: c for c in map(read_json, cross)}
    pictures = [(f"round {r}: where the mined points fell", Path(p).read_bytes()) for p in density]
    write_round_report(result, now, rounds, ds, rounds_png, rounds_html, round_html, pictures)
    return result


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """Bicubic resize of uint8 (N, H, W, 3) images to size x size (no-op when already that size)."""
    if images.shape[1:3] == (size, size):
        return images
    return np.stack([pixels_rgb(im, size) for im in images])


def cross_evaluate(
    *,
    faces: str,
    model: str,
    metrics: str,
    predictions: str,
    ds: str,
    r: int,
    target: str,
    device: str = "cpu",
) -> dict[str, Any]:
    """Test round r's model on every image of data set ``target``, over the classes both share.

    Labels are already canonical in both data sets; predictions are restricted to the classes
    present in the target (e.g. CK+48 has no neutral), and the label set used is recorded.
    """
    torch_device = resolve_device(device)
    data = read_faces(faces)
    net, meta = load_model(model, torch_device)
    present = sorted(set(data.labels.tolist()) & set(range(len(meta["classes"]))))
    rows = np.flatnonzero(np.isin(data.labels, present))
    blocks = [  # resized block by block: memory holds one block of either size
        predict_logits(
            net, resize_images(block, meta["image_size"]), meta["mean"], meta["std"], device=torch_device
        )
        for _, block in data.images.subset(rows).blocks(EVAL_BLOCK)
    ]
    logits = np.concatenate(blocks or [np.zeros((0, len(meta["classes"])))])
    pred = np.array(present)[logits[:, present].argmax(1)]
    result = {
        "source": ds,
        "target": target,
        "round": r,
        "model": str(model),
        "model_sha256": file_sha256(model),
        "classes": list(CLASSES),
        "label_mapping": {
            "shared_classes": [CLASSES[c] for c in present],
            "class_map": {CLASSES[c]: meta["classes"][c] for c in present},  # target label -> model output
            "source_classes": list(meta["classes"]),
            "source_only": [c for i, c in enumerate(meta["classes"]) if i not in present],
            "target_images_without_shared_label": int(len(data.labels) - len(rows)),
            "prediction": "argmax over the shared classes",
            "target_label_map": data.attrs.get("label_map", {}),
        },
        "all": classification_metrics(data.labels[rows], pred, CLASSES),
    }
    group = {
        "rows": rows.astype(np.int64),
        "labels": data.labels[rows],
        "logits": logits.astype(np.float32),
        "predicted": pred.astype(np.int64),
    }
    attrs = {
        "source": ds,
        "target": target,
        "round": r,
        "classes": list(CLASSES),
        "shared_classes": present,
        "prediction": "argmax over the shared classes",
    }
    write_groups(predictions, {"all": group}, attrs)
    log.info(
        "round %d on %s: accuracy %.4f over %d images, classes %s",
        r,
        target,
        result["all"]["accuracy"],
        len(rows),
        result["label_mapping"]["shared_classes"],
    )
    write_json(metrics, result)
    return result


def point_density(
    *, faces: str, points: str, density: str, ds: str, r: int, sigma: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Plot round r's mined points over the mean training face, per class and all together;
    return the densities and counts."""
    data = read_faces(faces)
    table, _ = read_table(points)
    idx = table["index"]
    h, w = data.images.shape[1:3]
    sigma = default_sigma(h) if sigma is None else sigma
    dens, counts = class_densities(table["x"], table["y"], data.labels[idx], len(CLASSES), h, w, sigma)
    density_grid(
        mean_grey_face(data.images, idx),
        dens,
        [*CLASSES, "all"],
        counts.tolist(),
        density,
        title=f"{ds} round {r}: mined points over the mean training face (Gaussian sigma {sigma:g} px)",
    )
    return dens, counts


def round_decision(
    *,
    metrics: Sequence[str],
    decision: str,
    val_split: str,
    rounds: int | str,
    max_rounds: int,
    margin: float,
) -> dict[str, Any]:
    """Decide on the round after the last of ``metrics`` (rounds 0..r, in order) and write the decision."""
    accs = [read_json(p)["splits"][val_split]["accuracy"] for p in metrics]
    result = {"round": len(accs) - 1, "val_accuracy": accs, **decide(accs, rounds, max_rounds, margin)}
    with atomic_path(decision) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    log.info(
        "round %d: %s (%s)", result["round"], "continue" if result["continue"] else "stop", result["reason"]
    )
    return result


def final(*, decisions: Sequence[str], models: Sequence[str], final: str) -> dict[str, Any]:
    """Record the rounds built and the final round (best validation accuracy) with its model in final.json."""
    last = read_json(decisions[-1])
    accs = last["val_accuracy"]
    best = final_round(accs)
    if len(models) != len(accs):
        raise ValueError(f"{len(models)} models for {len(accs)} evaluated rounds in {decisions[-1]}")
    result = {
        "final_round": best,
        "final_model": str(models[best]),
        "rounds_built": len(accs) - 1,
        "val_accuracy": accs,
        "stopped_because": last["reason"],
    }
    with atomic_path(final) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=2) + "\n")
    log.info("final round %d of %d built (%s)", best, result["rounds_built"], result["stopped_because"])
    return result


def comparison(
    *,
    predictions: Sequence[str],
    md: str,
    csv: str,
    png: str,
    ds: str,
    methods: Sequence[str],
    seeds: Sequence[int],
    references: Sequence[str],
    main_split: str,
    n_boot: int,
) -> list[dict[str, Any]]:
    """Every method of the run over seeds (``predictions``: method-major, seed-minor), with paired
    statistics."""
    return write_comparison(
        prediction_paths=predictions,
        methods=methods,
        seeds=seeds,
        references=references,
        main_split=main_split,
        dataset=ds,
        out_md=md,
        out_csv=csv,
        out_png=png,
        n_boot=n_boot,
    )
