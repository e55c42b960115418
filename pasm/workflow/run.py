"""How a Snakemake ``script:`` job runs: its log file, threads and retry record, and the stage
function named after its rule, called with the rule's names as keywords.

A rule's named ``input``, ``output`` and ``params`` are its stage's keywords, all of them and
by the same names, so a rule file reads as the stage's signature. Wildcards and resources are
passed when the stage names them (a stage need not know every part of its paths); a wildcard
whose parameter is annotated ``int`` is converted (``r``: the round).

Retries: a profile's `retries` restarts every failed job (SLURM: with more time and memory). A
job that failed on its input data would fail alike on every attempt, so a job whose rule declares
the `attempt` resource (`faces`, the one rule that reads user data) records such a failure
(DATA_ERRORS) beside its log, and a retry of it stops at once with that message instead of
reading the data again. Attempt 1 of every run removes the record first.
"""

from __future__ import annotations

import inspect
import logging
import sys
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Iterator

import torch

from pasm.nn.numerics import set_cuda_numerics
from pasm.workflow import ablation, data, evaluate, robustness, search, train
from pasm.workflow.placement import GPUUnavailable, job_placement

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
        raise NotRetried(
            f"not retried: an earlier attempt failed on its input data, which a retry reads "
            f"unchanged: {record.read_text().strip()}"
        )


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
    except (NotRetried, GPUUnavailable) as exc:
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


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Send INFO logs of the pasm package to the job's log file and to stderr."""
    root = logging.getLogger()
    root.handlers.clear()
    root.setLevel(logging.INFO)
    # milliseconds: which of two concurrent jobs held a GPU first is read from their logs
    fmt = logging.Formatter(
        "%(asctime)s.%(msecs)03d %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
    )
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    return logging.getLogger("pasm")


STAGES: MappingProxyType[str, Callable[..., Any]] = MappingProxyType(
    {
        "demo_images": data.demo_images,
        "faces": data.faces,
        "pretrain": train.pretrain,
        "finetune": train.finetune,
        "search_points": search.search_points,
        "gather_points": search.gather_points,
        "masked_samples": search.masked_samples,
        "evaluate": evaluate.evaluate,
        "cross_evaluate": evaluate.cross_evaluate,
        "point_density": evaluate.point_density,
        "round_decision": evaluate.round_decision,
        "final": evaluate.final,
        "comparison": evaluate.comparison,
        "robustness_corruptions": robustness.robustness_corruptions,
        "robustness_attack": robustness.robustness_attack,
        "robustness": robustness.robustness,
        # The ablations' points, masks, second backbone and scores are made as PASM round 1's are.
        "ablation_seeded_points": partial(search.search_points, scatteritem="1-of-1", r=1),
        "ablation_masked": partial(search.masked_samples, r=1),
        "ablation_pretrain_cross": train.pretrain,
        "ablation_train": ablation.ablation_train,
        "ablation_evaluate": partial(evaluate.score_model, r=1),
        "ablation_table": ablation.ablation_table,
    }
)
"""Rule name -> stage function (the ablations' partials fix what a rule of round 1 has as wildcards)."""


def _files(named: Any, what: str, rule: str) -> dict[str, Any]:
    """A job's named inputs or outputs as plain values (a path, or a list of paths); every file named."""
    values = {
        name: value if isinstance(value, str) else [str(v) for v in value] for name, value in named.items()
    }
    count = sum(1 if isinstance(v, str) else len(v) for v in values.values())
    if count != len(named):
        raise TypeError(f"rule {rule}: every {what} file must be named (its stage's keyword)")
    return values


def stage_arguments(stage: Callable[..., Any], job: Any) -> dict[str, Any]:
    """The keywords of ``stage`` for a Snakemake job: its named input, output and params, and the
    wildcards and resources the stage names."""
    parameters = inspect.signature(stage).parameters
    kwargs: dict[str, Any] = {}
    sources = [
        ("input", _files(job.input, "input", job.rule)),
        ("output", _files(job.output, "output", job.rule)),
        ("params", dict(job.params.items())),
    ]
    for kind, values in sources:
        for name, value in values.items():
            if name in kwargs:
                raise TypeError(
                    f"rule {job.rule}: {kind} {name!r} repeats a name of its input, output or params"
                )
            kwargs[name] = value
    for name, value in [*job.wildcards.items(), *job.resources.items()]:
        if name in parameters and name not in kwargs:
            wanted = parameters[name].annotation
            kwargs[name] = int(value) if wanted in (int, "int") else value
    unknown = sorted(set(kwargs) - set(parameters))
    if unknown:
        fn = stage.func if isinstance(stage, partial) else stage
        raise TypeError(
            f"rule {job.rule}: its stage {fn.__module__}.{fn.__name__} takes no {', '.join(unknown)}"
        )
    return kwargs


def run_stage(job: Any) -> Any:
    """Run the stage of a Snakemake ``script:`` job (the ``snakemake`` object) with its log and threads;
    a stage that takes a ``device`` runs where `pasm.workflow.placement` puts the job."""
    stage = STAGES[job.rule]
    with snakemake_job(job):
        kwargs = stage_arguments(stage, job)
        if "device" not in kwargs:  # a stage without a network
            return stage(**kwargs)
        with job_placement(job) as where:  # before anything starts CUDA in this process
            logging.getLogger("pasm").info("placed: %s", where.describe())
            if where.device.startswith("cuda"):
                set_cuda_numerics(bool(job.config.get("deterministic", False)))
            return stage(**{**kwargs, "device": where.device})
