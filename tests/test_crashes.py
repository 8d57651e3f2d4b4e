"""SIGKILL at random moments of `comp run`, `comp blend` and `comp submit`, several seeds.

After each kill the store is intact (nothing half-written passes for complete), and the
retry ends exactly where an uninterrupted command ends. The kill lands at a moment drawn
from a seeded RNG within the command's uninterrupted duration, so it hits start-up, the
work and the writes in turn. test_resume.py kills `comp run` at fold boundaries.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_store_intact, comp, start_comp

SEEDS = [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)]
TFIDF = ["run", "tfidf", "--set", "char_max=0"]
BLEND = ["blend", "reference", "second"]


@dataclass(frozen=True)
class Prepared:
    """A workspace with two runs, a blend and a submission, and how long each command took."""

    root: Path
    durations: dict[str, float]


def _timed(*args: str, workspace: Path) -> float:
    started = time.perf_counter()
    comp(*args, workspace=workspace)
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def prepared(tiny_template, tmp_path_factory) -> Prepared:
    root = tmp_path_factory.mktemp("crashes") / "ws"
    shutil.copytree(tiny_template, root)
    durations = {"run": _timed(*TFIDF, "--run-id", "reference", workspace=root)}
    comp(*TFIDF, "--set", "C=1", "--run-id", "second", workspace=root)
    durations["blend"] = _timed(*BLEND, "--name", "uninterrupted", workspace=root)
    durations["submit"] = _timed("submit", "reference", "--name", "uninterrupted", workspace=root)
    return Prepared(root, durations)


@pytest.fixture
def workspace(prepared, tmp_path) -> Path:
    copy = tmp_path / "ws"
    shutil.copytree(prepared.root, copy)
    return copy


def _kill_when(workspace: Path, args: list[str], moment: Callable[[], bool]) -> None:
    """Start `comp *args` and SIGKILL it once `moment()` is true (unless it ended before)."""
    process = start_comp(*args, workspace=workspace)
    while process.poll() is None and not moment():
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _kill_at_random(workspace: Path, args: list[str], seed: int, within: float) -> None:
    deadline = time.perf_counter() + random.Random(seed).uniform(0.0, within)
    _kill_when(workspace, args, lambda: time.perf_counter() >= deadline)


def _arrays(workspace: Path, run_id: str) -> list[np.ndarray]:
    return [np.load(workspace / "runs" / run_id / f"{name}.npy") for name in ("oof", "test")]


def _ids_named(board: list[dict], name: str) -> list[str]:
    return [entry["id"] for entry in board if entry["name"] == name]


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_run_then_retry_equals_uninterrupted(workspace, prepared, seed):
    _kill_at_random(workspace, [*TFIDF, "--run-id", "killed"], seed, prepared.durations["run"])
    board = {entry["id"]: entry for entry in assert_store_intact(workspace)}
    if "killed" in board:  # it may have died before run.json, or after its last write
        assert board["killed"]["state"] == "done" or board["killed"]["state"].startswith("partial")

    comp(*TFIDF, "--run-id", "killed", workspace=workspace)  # joins the run: trains what is missing
    assert {e["id"]: e["state"] for e in assert_store_intact(workspace)}["killed"] == "done"
    for retried, uninterrupted in zip(_arrays(workspace, "killed"), _arrays(workspace, "reference"),
                                      strict=True):
        np.testing.assert_array_equal(retried, uninterrupted)


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_blend_is_no_run_and_retry_equals_uninterrupted(workspace, prepared, seed):
    _kill_at_random(workspace, [*BLEND, "--name", "killed"], seed, prepared.durations["blend"])
    board = assert_store_intact(workspace)
    # A blend's run.json lands last: killed before it, the blend is simply not there.
    assert {entry["state"] for entry in board if entry["name"] == "killed"} <= {"done"}

    comp(*BLEND, "--name", "killed", workspace=workspace)
    board = assert_store_intact(workspace)
    [uninterrupted] = _ids_named(board, "uninterrupted")
    for blend_id in _ids_named(board, "killed"):
        for retried, expected in zip(_arrays(workspace, blend_id), _arrays(workspace, uninterrupted),
                                     strict=True):
            np.testing.assert_array_equal(retried, expected)


def test_blend_killed_while_storing_its_run_is_no_run(workspace):
    before = set((workspace / "runs").glob("*/folds"))
    _kill_when(workspace, [*BLEND, "--name", "killed"],
               lambda: bool(set((workspace / "runs").glob("*/folds")) - before))
    assert set((workspace / "runs").glob("*/folds")) - before, "killed before it began to store"
    assert not _ids_named(assert_store_intact(workspace), "killed")


def _complete_submission(workspace: Path, name: str) -> bytes:
    """The submission's bytes, checked against the provenance that must sit beside them."""
    content = (workspace / "submissions" / f"{name}.csv").read_bytes()
    provenance = json.loads((workspace / "submissions" / f"{name}.json").read_text())
    assert provenance["sha256"] == hashlib.sha256(content).hexdigest()
    return content


@pytest.mark.parametrize("seed", SEEDS)
def test_killed_submit_leaves_no_file_without_provenance_and_retry_equals_uninterrupted(
        workspace, prepared, seed):
    _kill_at_random(workspace, ["submit", "reference", "--name", "killed"], seed,
                    prepared.durations["submit"])
    expected = _complete_submission(workspace, "uninterrupted")
    if (workspace / "submissions/killed.csv").exists():
        assert _complete_submission(workspace, "killed") == expected
    else:
        comp("submit", "reference", "--name", "killed", workspace=workspace)
        assert _complete_submission(workspace, "killed") == expected
    assert_store_intact(workspace)
