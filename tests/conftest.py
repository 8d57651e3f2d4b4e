"""Shared fixtures: tiny real demo workspaces and a runner for the real `comp` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comp.demo import DemoSpec
from comp.scaffold import init_demo
from comp.workspace import Workspace

TINY = DemoSpec(train_rows=400, test_rows=80, classes=12, image_size=32, seed=3)


def comp(*args: str, workspace: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run the real CLI in a fresh process, as a user would."""
    env = {**os.environ, "COMP_WORKSPACE": str(workspace), "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "comp", *args], env=env, capture_output=True, text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"comp {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny_template(tmp_path_factory) -> Path:
    """A tiny demo competition with folds, made once per session and copied per test."""
    root = tmp_path_factory.mktemp("tiny_template")
    init_demo(Workspace(root), TINY, force=False)
    comp("folds", workspace=root)
    return root


@pytest.fixture
def tiny(tiny_template: Path, tmp_path: Path) -> Path:
    workspace = tmp_path / "ws"
    shutil.copytree(tiny_template, workspace)
    return workspace


def finished_run(workspace: Path, run_id: str, emb_dim: int | None = None):
    """The run's record, oof and test arrays, checked against the run-store contract."""
    import json

    import numpy as np

    run = workspace / "runs" / run_id
    record = json.loads((run / "run.json").read_text())
    oof, test = np.load(run / "oof.npy"), np.load(run / "test.npy")
    assert record["status"] == "done"
    assert oof.shape[1] == test.shape[1] == len(record["classes"])
    np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(test.sum(axis=1), 1.0, atol=1e-5)
    if emb_dim is not None:
        assert np.load(run / "emb_oof.npy").shape == (len(oof), emb_dim)
        assert np.load(run / "emb_test.npy").shape == (len(test), emb_dim)
    return record, oof, test
