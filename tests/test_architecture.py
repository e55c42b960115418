"""The package's layers import one way: data < nn < {search, train} < evaluate < {workflow, app}.

A module may import its own subpackage and any lower layer, never a higher one or a sibling of
its own layer; this test reads every import statement of pasm/ and fails on the first that does not.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

LAYER = {"data": 0, "nn": 1, "search": 2, "train": 2, "evaluate": 3, "workflow": 4, "app": 4}


def _imports(path: Path) -> list[str]:
    """Every pasm module a file imports, at top level or inside functions."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return [n for n in names if n == "pasm" or n.startswith("pasm.")]


def _violations() -> list[str]:
    bad = []
    for path in sorted((REPO / "pasm").rglob("*.py")):
        parts = path.relative_to(REPO / "pasm").parts
        if len(parts) < 2:
            continue  # pasm/__init__.py
        own = parts[0]
        for name in _imports(path):
            target = name.split(".")[1] if "." in name else None
            if target is None or target == own:
                continue
            if target not in LAYER or LAYER[target] >= LAYER[own]:
                bad.append(f"{path.relative_to(REPO)} (layer {own}) imports {name}")
    return bad


def test_every_module_belongs_to_a_layer():
    subpackages = {p.name for p in (REPO / "pasm").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert subpackages == set(LAYER)
    assert sorted(p.name for p in (REPO / "pasm").glob("*.py")) == ["__init__.py"]


def test_imports_go_one_way():
    assert _violations() == []


def test_the_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The rule itself can fail: a data module importing the workflow layer is reported."""
    import test_architecture as me

    fake = tmp_path / "pasm"
    for sub in LAYER:
        (fake / sub).mkdir(parents=True)
    (fake / "data" / "bad.py").write_text("from pasm.workflow.train import pretrain\n")
    (fake / "train" / "sibling.py").write_text("import pasm.search.de\n")
    (fake / "app" / "fine.py").write_text("from pasm.evaluate.metrics import confusion_matrix\n")
    monkeypatch.setattr(me, "REPO", tmp_path)
    assert me._violations() == [  # app importing evaluate (a lower layer) is fine
        "pasm/data/bad.py (layer data) imports pasm.workflow.train",
        "pasm/train/sibling.py (layer train) imports pasm.search.de",
    ]
