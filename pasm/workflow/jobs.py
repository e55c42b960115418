"""Glue for Snakemake `script:` jobs: per-job log file, thread count, errors recorded in the log,
and the job's named params and GPU resources as keyword arguments of its stage function."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from pasm.workflow.joblog import setup_logging


@contextmanager
def snakemake_job(smk: Any) -> Iterator[Any]:
    """Set up logging to the job's log and torch's thread count; log any exception before re-raising.
    Yields the job object itself, so a script reads ``with snakemake_job(snakemake) as smk:``."""
    log = setup_logging(smk.log[0] if len(smk.log) else None)
    torch.set_num_threads(max(1, int(smk.threads)))
    log.info("rule %s, wildcards %s, threads %d", smk.rule, dict(smk.wildcards), smk.threads)
    try:
        yield smk
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
