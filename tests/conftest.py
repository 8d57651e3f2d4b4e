"""Shared fixtures: tiny real demo workspaces and a runner for the real `comp` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from comp.data.demo import DemoSpec
from comp.data.scaffold import init_demo
from comp.data.workspace import Workspace

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


def start_comp(*args: str, workspace: Path, capture: bool = False) -> subprocess.Popen:
    """Start the real CLI without waiting: for kills and concurrent processes."""
    env = {**os.environ, "COMP_WORKSPACE": str(workspace)}
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "comp", *args], env=env, text=True,
                            stdout=output, stderr=output)


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


def tree_digest(folder: Path) -> str:
    """Every file under `folder`, names and bytes: equal digests, an untouched folder."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        digest.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def one_clear_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """The command failed as a user error must: exit 2, one line, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert message.startswith("error:") and message.count("\n") == 0, message
    for fragment in fragments:
        assert fragment in message, message


def assert_store_intact(workspace: Path) -> list[dict]:
    """No half-written file passes for a complete one; returns the leaderboard, which works.

    Every run.json parses; a fold is either done (fold.json and loadable arrays) or has no
    fold.json; a done run has oof.npy and test.npy whose rows sum to one.
    """
    import json

    import numpy as np

    for run in (workspace / "runs").glob("*/run.json"):
        record = json.loads(run.read_text())
        for fold_record in run.parent.glob("folds/*/fold.json"):
            json.loads(fold_record.read_text())
            for name in ("valid.npy", "test.npy"):
                assert np.isfinite(np.load(fold_record.parent / name)).all(), fold_record
        if record["status"] == "done":
            finished_run(workspace, record["id"])
    board = json.loads(comp("leaderboard", "--json", workspace=workspace).stdout)
    assert {e["id"] for e in board} == {p.parent.name for p in (workspace / "runs").glob("*/run.json")}
    return board


def fold_zero(workspace: Path, scratch: Path, reporter):
    """The workspace's project, fold 0's train and held-out tables, and a context to fit a
    model on them in-process, as the harness would."""
    from comp.project import Project
    from comp.runs.runner import fold_context

    project = Project.open(workspace)
    competition, folds = project.competition, project.folds
    ctx = fold_context(project, fold=0, seed=0, workdir=scratch / "folds/0", run_workdir=scratch,
                       reporter=reporter)
    return project, competition.train.take(folds.training(0)), competition.train.take(folds.held_out(0)), ctx


class NoParents:
    """A model context's parent runs when there are none."""

    def resolve(self, ref: str) -> str:
        raise AssertionError(f"no parent runs here, asked for {ref}")

    has = array = fold_array = resolve


def bare_context(scratch: Path, classes: list, reporter):
    """A fold context with no project behind it: for training-loop tests on synthetic tensors."""
    import numpy as np

    from comp.models._base import FoldContext

    return FoldContext(fold=0, seed=0, classes=classes, class_names=None, workdir=scratch,
                       run_workdir=scratch, cache=scratch / ".cache", corpus=np.array([], dtype=object),
                       data_hash="none", parents=NoParents(), reporter=reporter, user_root=scratch)


@pytest.fixture(scope="module")
def ray_cluster() -> str:
    """One local Ray cluster for every Ray test (they all live in tests/test_scale.py, so
    it is started once, and stopped before the rest of the suite rather than idling under
    it): 2 CPUs and 2 logical GPUs, so GPU scheduling is tested without a GPU. This process
    is connected to it (library calls use it as it is); CLI processes join it with
    `--address` (the returned address)."""
    ray = pytest.importorskip("ray")
    context = ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                       object_store_memory=200 * 2**20, configure_logging=False)
    yield context.address_info["gcs_address"]
    ray.shutdown()
