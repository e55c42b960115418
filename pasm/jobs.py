"""Glue for Snakemake `script:` jobs: per-job log file, thread count, errors recorded in the log."""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator

import torch

from pasm.joblog import setup_logging


@contextmanager
def snakemake_job(smk: Any) -> Iterator[logging.Logger]:
    """Set up logging to the job's log and torch's thread count; log any exception before re-raising."""
    log = setup_logging(smk.log[0] if len(smk.log) else None)
    torch.set_num_threads(max(1, int(smk.threads)))
    log.info("rule %s, wildcards %s, threads %d", smk.rule, dict(smk.wildcards), smk.threads)
    try:
        yield log
    except Exception:
        log.exception("job failed")
        raise
    finally:
        sys.stderr.flush()
