"""Job glue: a job that failed on its input data is not worked through again on a retry."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from snakemake.iocontainers import Log, ResourceList

from pasm.workflow.run import NotRetried, snakemake_job


def _job(tmp_path, attempt: int | None):
    """What a Snakemake script job hands over, for a rule with (or without) the attempt resource."""
    resources = {"_cores": 1} if attempt is None else {"_cores": 1, "attempt": attempt}
    return SimpleNamespace(
        log=Log(fromdict={"log": str(tmp_path / "faces.log")}),
        threads=1,
        rule="faces",
        wildcards={"ds": "x"},
        resources=ResourceList(fromdict=resources),
    )


def _run(job, error: Exception | None) -> list[str]:
    """Run a job body that raises `error` (or succeeds); returns what happened, in order."""
    happened = []
    try:
        with snakemake_job(job):
            happened.append("worked")
            if error is not None:
                raise error
    except NotRetried as exc:
        happened.append(str(exc))
    except Exception as exc:
        happened.append(f"failed: {exc}")
    return happened


def test_a_data_error_is_not_worked_through_again_on_a_retry(tmp_path):
    error = ValueError("data/fer2013.csv.gz: truncated or damaged compressed file")
    assert _run(_job(tmp_path, 1), error) == ["worked", f"failed: {error}"]
    (happened,) = _run(_job(tmp_path, 2), None)
    assert happened.startswith("not retried: an earlier attempt failed on its input data")
    assert "ValueError: data/fer2013.csv.gz: truncated" in happened and "worked" not in happened
    assert (
        "data/fer2013.csv.gz: truncated" in (tmp_path / "faces.log").read_text()
    )  # the retry's log says why


@pytest.mark.parametrize(
    "error",
    [MemoryError("out of memory"), RuntimeError("CUDA out of memory"), OSError(5, "Input/output error")],
)
def test_resource_failures_are_retried(tmp_path, error):
    assert _run(_job(tmp_path, 1), error)[0] == "worked"
    assert _run(_job(tmp_path, 2), None) == ["worked"]  # a retry does the work


def test_a_new_run_forgets_an_earlier_runs_data_error(tmp_path):
    _run(_job(tmp_path, 1), FileNotFoundError("data set root data/x does not exist"))
    assert _run(_job(tmp_path, 1), None) == ["worked"]  # attempt 1 of a later run, after the data was fixed
    assert _run(_job(tmp_path, 2), None) == ["worked"]


def test_rules_without_the_attempt_resource_are_unchanged(tmp_path):
    _run(_job(tmp_path, None), ValueError("bad"))
    assert _run(_job(tmp_path, None), None) == ["worked"]
    assert not (tmp_path / "faces.log.data-error").exists()
