"""Glue for Snakemake `script:` jobs: per-job log file, thread count, errors recorded in the log,
and the job's named params and GPU resources as keyword arguments of its stage function.

Retries: a profile's `retries` restarts every failed job (SLURM: with more time and memory). A
job that failed on its input data would fail alike on every attempt, so a job whose rule declares
the `attempt` resource (`faces`, the one rule that reads user data) records such a failure
(DATA_ERRORS) beside its log, and a retry of it stops at once with that message instead of
reading the data again. Attempt 1 of every run removes the record first.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from pasm.workflow.joblog import setup_logging

DATA_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError)
"""Failures the same input raises on every attempt: bad data (readers name file and line) or a bad
value. Others (MemoryError, CUDA out of memory, I/O errors, a kill at a time limit) may pass on a retry."""


class NotRetried(SystemExit):
    """A retry of a job whose first attempt failed on its input data: exits 1 with one line, no traceback."""


def _data_error_record(smk: Any) -> Path | None:
    """Where a job that declares the `attempt` resource records a data error (beside its log), else None."""
    if "attempt" not in smk.resources.keys() or not len(smk.log):
        return None
    return Path(f"{smk.log[0]}.data-error")


def _check_retry(smk: Any, record: Path | None) -> None:
    """Attempt 1: forget an earlier run's record. Later attempts: NotRetried if attempt 1 failed on data."""
    if record is None:
        return
    if int(smk.resources.get("attempt", 1)) <= 1:
        record.unlink(missing_ok=True)
    elif record.is_file():
        raise NotRetried(f"not retried: an earlier attempt failed on its input data, which a retry reads "
                         f"unchanged: {record.read_text().strip()}")


@contextmanager
def snakemake_job(smk: Any) -> Iterator[Any]:
    """Set up logging to the job's log and torch's thread count; log any exception before re-raising.
    Yields the job object itself, so a script reads ``with snakemake_job(snakemake) as smk:``."""
    log = setup_logging(smk.log[0] if len(smk.log) else None)
    torch.set_num_threads(max(1, int(smk.threads)))
    log.info("rule %s, wildcards %s, threads %d", smk.rule, dict(smk.wildcards), smk.threads)
    record = _data_error_record(smk)
    try:
        _check_retry(smk, record)
        yield smk
    except NotRetried as exc:
        log.error("%s", exc)
        raise
    except DATA_ERRORS as exc:
        log.exception("job failed")
        if record is not None:
            record.write_text(f"{type(exc).__name__}: {exc}\n")
        raise
    except Exception:
        log.exception("job failed")
        raise
    finally:
        sys.stderr.flush()


def params_of(smk: Any) -> dict[str, Any]:
    """The rule's named params as a dict (every rule names each value its stage reads)."""
    return dict(smk.params.items())


def gpu_resources(smk: Any) -> dict[str, Any]:
    """This machine's GPU count and slot-lock folder, declared as the rule's resources (not params:
    they say where the job runs, not what it computes)."""
    return {"gpus": int(smk.resources.get("machine_gpus", 0)),
            "gpu_lock_dir": smk.resources.get("gpu_lock_dir") or None}
