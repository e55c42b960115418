"""The robustness evaluation: corrupted copies that are deterministic per (seed, face) and change only
what they say, the one-pixel attack's rates on a fragile and on a constant model, and a robustness
table whose paired statistics on the clean split are the comparison's."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from search_cases import MEAN, STD
from test_search_strategies import GreenOverRedModel, planted_images

from pasm.data.align import AlignSettings, template_points
from pasm.data.h5store import write_groups, write_table
from pasm.evaluate.comparison import write_comparison
from pasm.evaluate.corruptions import (
    FILLS,
    PIXEL_CORRUPTIONS,
    REGIONS,
    Corruption,
    corrupt,
    corruption_list,
    region_mask,
)
from pasm.evaluate.robustness import MEAN_SET, attack_rates, write_robustness
from pasm.search import SearchParams
from pasm.workflow.search import find_points_in_blocks

SIZE = 48
LANDMARKS = template_points(AlignSettings(size=SIZE, template="fer2013"))


def faces(n: int, grey: bool = True, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(30, 226, (n, SIZE, SIZE, 3), dtype=np.uint8)
    if grey:
        img[..., 1] = img[..., 2] = img[..., 0]
    return img


ALL = corruption_list(REGIONS, FILLS, [25, 40], PIXEL_CORRUPTIONS, [1, 2, 3])


# --------------------------------------------------------------------------- corruptions


@pytest.mark.parametrize("c", ALL, ids=lambda c: c.key)
def test_each_copy_is_deterministic_per_seed_and_face(c):
    img = faces(6)
    rows = np.arange(100, 106)
    a = corrupt(img, rows, c, seed=0, landmarks=LANDMARKS)
    again = corrupt(img, rows, c, seed=0, landmarks=LANDMARKS)
    assert np.array_equal(a, again) and a.dtype == np.uint8 and a.shape == img.shape
    alone = np.concatenate(
        [corrupt(img[i : i + 1], rows[i : i + 1], c, seed=0, landmarks=LANDMARKS) for i in (4, 1)]
    )
    assert np.array_equal(alone, a[[4, 1]])  # a face's copy does not depend on the batch it is in
    assert not np.array_equal(a, img)
    random = (c.kind == "occlusion" and c.level == "noise") or c.kind == "patch" or c.name == "gaussian_noise"
    other_seed = corrupt(img, rows, c, seed=1, landmarks=LANDMARKS)
    other_rows = corrupt(img, rows + 1, c, seed=0, landmarks=LANDMARKS)
    assert np.array_equal(other_seed, a) != random and np.array_equal(other_rows, a) != random


@pytest.mark.parametrize("region", REGIONS)
@pytest.mark.parametrize("fill", FILLS)
def test_an_occlusion_changes_its_region_only(region, fill):
    img = faces(5)
    out = corrupt(img, np.arange(5), Corruption("occlusion", region, fill), seed=3, landmarks=LANDMARKS)
    mask = region_mask(region, SIZE, LANDMARKS)
    assert np.array_equal(out[:, ~mask], img[:, ~mask])
    if fill != "noise":
        assert (out[:, mask] == {"grey": 128, "black": 0}[fill]).all()
    else:
        assert (out[:, mask] != img[:, mask]).mean() > 0.9
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()  # grey stays grey


def test_regions_sit_where_the_template_puts_eyes_mouth_and_nose():
    eyes, mouth, nose = (region_mask(r, SIZE, LANDMARKS) for r in ("eyes", "mouth", "nose"))
    rows = {
        name: np.flatnonzero(m.any(axis=1)) for name, m in (("eyes", eyes), ("mouth", mouth), ("nose", nose))
    }
    assert (
        rows["eyes"].max() < rows["nose"].min() <= rows["nose"].max() < rows["mouth"].min()
    )  # disjoint rows
    (lex, ley), (rex, _), _, (lmx, lmy), _ = LANDMARKS
    assert eyes[int(ley), int(lex)] and eyes[int(ley), int(rex)] and mouth[int(lmy), int(lmx)]
    img = faces(3)
    out = corrupt(img, np.arange(3), Corruption("occlusion", "eyes", "grey"), seed=0, landmarks=LANDMARKS)
    assert np.array_equal(out[:, rows["mouth"]], img[:, rows["mouth"]])  # an eye band leaves the mouth rows
    left, right = region_mask("left_half", SIZE, LANDMARKS), region_mask("right_half", SIZE, LANDMARKS)
    upper, lower = region_mask("upper", SIZE, LANDMARKS), region_mask("lower", SIZE, LANDMARKS)
    assert (left ^ right).all() and (upper ^ lower).all() and left[:, 0].all() and upper[0].all()


@pytest.mark.parametrize("side", [25, 40])
def test_a_patch_is_one_grey_square_of_its_side(side):
    img = faces(8)
    out = corrupt(img, np.arange(8), Corruption("patch", "patch", side), seed=0, landmarks=LANDMARKS)
    n = round(SIZE * side / 100)
    changed = (out != img).any(axis=3)
    for i in range(8):
        ys, xs = np.nonzero(changed[i])
        assert ys.max() - ys.min() + 1 <= n and xs.max() - xs.min() + 1 <= n
        assert (out[i][(out[i] != img[i]).any(axis=2)] == 128).all()
    starts = {tuple(np.argwhere(changed[i])[0]) for i in range(8)}
    assert len(starts) > 1  # placed per face


@pytest.mark.parametrize("name", PIXEL_CORRUPTIONS)
def test_pixel_corruptions_grow_with_severity_and_keep_grey_faces_grey(name):
    img = faces(6)
    dist = []
    for level in (1, 2, 3):
        out = corrupt(img, np.arange(6), Corruption("pixel", name, level), seed=0, landmarks=LANDMARKS)
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
        dist.append(np.abs(out.astype(int) - img).mean())
    assert 0 < dist[0] < dist[1] < dist[2], dist
    colour = faces(2, grey=False)
    out = corrupt(colour, np.arange(2), Corruption("pixel", name, 2), seed=0, landmarks=LANDMARKS)
    assert out.shape == colour.shape and not np.array_equal(out, colour)


def test_unknown_settings_are_named():
    with pytest.raises(ValueError, match="occlusion region \\['ears'\\]"):
        corruption_list(["ears"], ["grey"], [], [], [1])
    with pytest.raises(ValueError, match="severity \\[4\\]"):
        corruption_list([], [], [], ["jpeg"], [4])
    with pytest.raises(ValueError, match="patch sides"):
        corruption_list([], [], [0], [], [1])


# --------------------------------------------------------------------------- the one-pixel attack


class ConstantModel(torch.nn.Module):
    """The same logits for every image: nothing flips it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[2.0, 0.0, -1.0]]).expand(len(x), 3) + 0 * x.sum(dim=(1, 2, 3))[:, None]


def attack(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray) -> dict:
    params = SearchParams(strategy="ranked", top_pixels=8, local_rounds=1, batch_size=50)
    rows = np.arange(len(images)) + 500
    found = find_points_in_blocks(
        model,
        images,
        labels,
        rows,
        meta={"mean": MEAN, "std": STD},
        params=params,
        device="cpu",
        progress=False,
        block=7,
    )
    return attack_rates(found)


def test_a_fragile_model_falls_to_the_attack_and_a_constant_one_never():
    images = planted_images(20)
    labels = np.zeros(20, np.int64)  # class 0 on every clean face; one pixel flips GreenOverRed to class 1
    fragile = attack(GreenOverRedModel(), images, labels)
    assert fragile["right_before"] == 20 and fragile["success"] >= 0.9 and fragile["prob_drop"] > 0.5
    assert fragile["correct"].sum() <= 2
    labels[::2] = 1  # the constant model gets half of them wrong; the attack counts only the right ones
    constant = attack(ConstantModel(), images, labels)
    assert constant["right_before"] == 10 and constant["success"] == 0 and constant["prob_drop"] == 0
    assert np.array_equal(constant["correct"], (labels == 0).astype(np.int8))


# --------------------------------------------------------------------------- the table


METHODS, SEEDS = ["round0", "round1", "random_erasing"], [0, 1]


@pytest.fixture
def run_files(tmp_path):
    """Prediction, corruption and attack files of 3 methods x 2 seeds on 200 faces, with real
    differences between the methods."""
    rng = np.random.default_rng(5)
    n, rows = 200, np.arange(1000, 1200)
    labels = rng.integers(0, 7, n)
    skill = {"round0": 0.6, "round1": 0.7, "random_erasing": 0.62}
    keys = ["occlusion/eyes/grey", "occlusion/mouth/grey", "gaussian_noise/1", "gaussian_noise/3"]
    files = {"predictions": [], "corruptions": [], "attack": []}
    for m in METHODS:
        for s in SEEDS:

            def predicted(p):
                right = rng.random(n) < p
                return np.where(right, labels, (labels + 1 + rng.integers(0, 6, n)) % 7)

            logits = np.eye(7, dtype=np.float32)[predicted(skill[m])]
            pred_path = tmp_path / f"{m}_{s}_pred.h5"
            write_groups(
                pred_path,
                {"splits/test": {"rows": rows, "labels": labels, "logits": logits}},
                {"sets": ["splits/test"]},
            )
            corr_path = tmp_path / f"{m}_{s}_corr.h5"
            groups = {
                f"test/{k}": {
                    "rows": rows,
                    "labels": labels,
                    "predicted": predicted(skill[m] - 0.1 * (i + 1)),
                }
                for i, k in enumerate(keys)
            }
            write_groups(corr_path, groups, {"sets": list(groups), "seconds": 1.0})
            right = logits.argmax(1) == labels
            flipped = right & (rng.random(n) < (0.8 if m == "round0" else 0.3))
            table = {
                "index": rows,
                "labels": labels,
                "clean_correct": right,
                "flipped": flipped,
                "prob_before": np.full(n, 0.9),
                "prob_after": np.where(flipped, 0.2, 0.8),
            }
            att_path = tmp_path / f"{m}_{s}_att.h5"
            write_table(att_path, table, {"seconds": 1.0})
            files["predictions"].append(pred_path)
            files["corruptions"].append(corr_path)
            files["attack"].append(att_path)
    return tmp_path, files, keys


def test_the_tables_paired_statistics_are_the_comparisons_on_the_clean_split(run_files):
    tmp, files, keys = run_files
    common = dict(
        methods=METHODS,
        seeds=SEEDS,
        references=["round0", "random_erasing"],
        main_split="test",
        dataset="toy",
    )
    comparison = write_comparison(
        prediction_paths=files["predictions"],
        out_md=tmp / "c.md",
        out_csv=tmp / "c.csv",
        out_png=tmp / "c.png",
        n_boot=500,
        **common,
    )
    rows = write_robustness(
        prediction_paths=files["predictions"],
        corruption_paths=files["corruptions"],
        attack_paths={"ranked": files["attack"]},
        out_md=tmp / "r.md",
        out_csv=tmp / "r.csv",
        out_png=tmp / "r.png",
        eval_seconds=60.0,
        train_seconds=600.0,
        n_boot=500,
        **common,
    )
    clean = [r for r in rows if r["set"] == "clean splits/test"]
    assert len(clean) == len(comparison) == 3
    for a, b in zip(clean, comparison):
        assert {k: v for k, v in a.items() if k not in ("set", "kind")} == {
            k: v for k, v in b.items() if k != "set"
        }
    sets = list(dict.fromkeys(r["set"] for r in rows))
    assert sets == [
        "clean splits/test",
        *[f"test/{k}" for k in keys],
        MEAN_SET,
        "attack ranked",
        "drop eyes occluded",
        "drop mouth occluded",
        "drop gaussian_noise",
    ]
    by = {(r["set"], r["method"]): r for r in rows}
    mean = by[(MEAN_SET, "round1")]
    assert np.isclose(
        mean["accuracy_mean"], np.mean([by[(f"test/{k}", "round1")]["accuracy_mean"] for k in keys])
    )
    assert np.isnan(mean["vs_round0_p"]) and mean["vs_round0_ci_low"] <= mean["vs_round0_difference"]
    assert (
        by[("attack ranked", "round0")]["attack_success_mean"]
        > 0.6
        > 0.45
        > by[("attack ranked", "round1")]["attack_success_mean"]
    )
    assert (
        by[("attack ranked", "round1")]["vs_round0_ci_low"] > 0
    )  # fewer flips: more faces right under attack
    r0 = by[("attack ranked", "round0")]
    assert np.isclose(r0["prob_drop_mean"], 0.1 + 0.6 * r0["attack_success_mean"])  # 0.7 if flipped, else 0.1
    drop = by[("drop gaussian_noise", "round1")]
    assert drop["copies"] == 2 and drop["drop_mean"] > 0
    md = (tmp / "r.md").read_text()
    assert (
        "## attack ranked (200 faces" in md
        and "10.00% of it" in md
        and "| test/gaussian_noise/3 | 200 |" in md
    )
    assert len(list(csv.DictReader((tmp / "r.csv").open()))) == len(rows)
    assert (tmp / "r.png").stat().st_size > 5000


def test_attacked_faces_must_be_the_same_for_every_model(run_files):
    tmp, files, _ = run_files
    table = {
        "index": np.arange(3),
        "labels": np.zeros(3, int),
        "clean_correct": np.ones(3, bool),
        "flipped": np.zeros(3, bool),
        "prob_before": np.ones(3),
        "prob_after": np.ones(3),
    }
    write_table(files["attack"][3], table, {"seconds": 1.0})
    with pytest.raises(ValueError, match="attacked faces differ"):
        write_robustness(
            prediction_paths=files["predictions"],
            corruption_paths=files["corruptions"],
            attack_paths={"a": files["attack"]},
            methods=METHODS,
            seeds=SEEDS,
            references=["round0"],
            main_split="test",
            dataset="toy",
            out_md=tmp / "r.md",
            out_csv=tmp / "r.csv",
            out_png=tmp / "r.png",
            eval_seconds=1.0,
            train_seconds=1.0,
            n_boot=50,
        )
