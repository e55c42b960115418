"""Shared test helpers: repository paths and a real Snakemake runner."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def run_snakemake(
    workdir: Path, *args: str, check: bool = True, timeout: int = 900, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the repository's Snakefile in `workdir` with this interpreter's snakemake (`env`: added
    to this process's environment)."""
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(REPO / "workflow" / "Snakefile"),
        "-d",
        str(workdir),
        *args,
    ]
    full_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        **(env or {}),
    }
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
        )
    return proc


def write_config(workdir: Path, cfg: dict) -> Path:
    """Write a run's config where the workflow reads it: <workdir>/config/config.yaml."""
    import yaml

    path = workdir / "config" / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture(scope="module")
def one_torch_thread():
    """MTCNN runs many tiny ops; on a shared 2-core box one thread avoids OpenMP contention stalls."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
