"""Bad input replayed through Snakemake on a tiny folder data set: a changed data root reruns `faces`,
a missing one stops the run before any job, and a job that failed on bad data is not worked twice."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_snakemake, write_config
from PIL import Image

pytestmark = pytest.mark.workflow  # runs Snakemake or the whole pipeline: make test-fast leaves it out

FACES = "results/mine/faces.h5"


def _folder_data(root, value: int) -> None:
    """Two tiny grey faces per class and split, pixel value `value` (so two roots differ)."""
    for split in ("train", "val", "test"):
        for cls in ("angry", "happy"):
            for k in range(2):
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((8, 8, 3), value + k, np.uint8)).save(root / split / cls / f"{k}.png")


def _config(wd, root: str) -> None:
    write_config(
        wd,
        {
            "device": "cpu",
            "threads": 1,
            "method": {"mask_size": 5},
            "datasets": {
                "mine": {
                    "format": "folder",
                    "root": root,
                    "image_size": 16,
                    "model": {"arch": "compact", "width": 4},
                }
            },
        },
    )


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A working directory whose faces.h5 was built from data/a (data/b holds other faces)."""
    wd = tmp_path_factory.mktemp("roots")
    _folder_data(wd / "data" / "a", 40)
    _folder_data(wd / "data" / "b", 140)
    _config(wd, "data/a")
    run_snakemake(wd, "--cores", "1", FACES)
    return wd


def test_a_changed_root_reruns_faces(built):
    _config(built, "data/b")
    proc = run_snakemake(built, "-n", "--cores", "1", FACES)
    assert "rule faces:" in proc.stdout and "Params have changed since last execution" in proc.stdout
    assert "before: 'data/a' now: 'data/b'" in proc.stdout


def test_a_missing_root_stops_the_run_before_any_job(built):
    before = (built / FACES).stat().st_mtime_ns
    _config(built, "data/moved-away")
    proc = run_snakemake(built, "--cores", "1", FACES, check=False)
    assert proc.returncode != 0
    assert "datasets.mine.root: data/moved-away does not exist" in proc.stderr and str(built) in proc.stderr
    assert "Building DAG" not in proc.stdout + proc.stderr  # stopped while the config was read
    assert (built / FACES).stat().st_mtime_ns == before


def _bad_data(wd) -> None:
    """A folder data set with a class folder that is no expression: the reader's ValueError."""
    _folder_data(wd / "data" / "bad", 40)
    (wd / "data" / "bad" / "train" / "grumpy").mkdir()
    Image.new("RGB", (8, 8)).save(wd / "data" / "bad" / "train" / "grumpy" / "0.png")
    _config(wd, "data/bad")


def test_the_default_profile_runs_a_job_that_fails_on_bad_data_once(tmp_path):
    _bad_data(tmp_path)
    proc = run_snakemake(tmp_path, "--cores", "1", FACES, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "folder name 'grumpy' is not an expression class" in out
    assert out.count("Error in rule faces") == 1 and "Trying to restart job" not in out


def test_retries_of_a_job_that_failed_on_bad_data_stop_at_once(tmp_path):
    _bad_data(tmp_path)
    proc = run_snakemake(
        tmp_path, "--cores", "1", "--retries", "2", FACES, check=False
    )  # as the SLURM profile
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert out.count("Error in rule faces") == 3 and out.count("Trying to restart job") == 2
    assert "not retried: an earlier attempt failed on its input data" in out
    log = (tmp_path / "results/mine/logs/faces.log").read_text()  # the last attempt's log
    assert "not retried" in log and "folder name 'grumpy' is not an expression class" in log
    assert "read_folder_dataset" not in log  # the reader did not run again: no traceback through it
