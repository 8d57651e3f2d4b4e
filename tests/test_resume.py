"""A run killed at any moment leaves the store consistent, and resuming equals never dying."""

import json
import signal
import time

import numpy as np
import pytest

from tests.conftest import comp, start_comp


def _arrays(ws, run_id):
    run = ws / "runs" / run_id
    return np.load(run / "oof.npy"), np.load(run / "test.npy")


@pytest.mark.parametrize("kill_after_folds", [pytest.param(0, marks=pytest.mark.slow), 2])
def test_sigkill_then_resume_equals_uninterrupted(tiny, kill_after_folds):
    comp("run", "tfidf", "--run-id", "reference", workspace=tiny)
    reference = _arrays(tiny, "reference")

    process = start_comp("run", "tfidf", "--run-id", "killed", workspace=tiny)
    fold_dir = tiny / "runs/killed/folds"
    deadline = time.time() + 120
    while time.time() < deadline and process.poll() is None:
        done = len(list(fold_dir.glob("*/fold.json"))) if fold_dir.exists() else 0
        if done >= kill_after_folds and (tiny / "runs/killed/run.json").exists():
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()

    record = json.loads((tiny / "runs/killed/run.json").read_text())
    assert record["status"] == "running"  # not done: oof.npy must not be trusted yet
    assert not (tiny / "runs/killed/oof.npy").exists()
    board = json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)
    assert next(e for e in board if e["id"] == "killed")["state"].startswith("partial")

    comp("run", "--resume", "killed", workspace=tiny)
    record = json.loads((tiny / "runs/killed/run.json").read_text())
    assert record["status"] == "done" and record["folds_done"] == [0, 1, 2, 3, 4]
    for resumed, uninterrupted in zip(_arrays(tiny, "killed"), reference, strict=True):
        np.testing.assert_array_equal(resumed, uninterrupted)


def test_folds_from_separate_processes_complete_the_run(tiny):
    comp("run", "tfidf", "--run-id", "reference", workspace=tiny)
    for k in (3, 0, 4, 1):
        comp("run", "tfidf", "--fold", str(k), "--run-id", "spread", workspace=tiny)
    record = json.loads((tiny / "runs/spread/run.json").read_text())
    assert record["status"] == "running" and record["folds_done"] == [0, 1, 3, 4]
    assert record["fold_scores"][2] is None
    comp("run", "tfidf", "--fold", "2", "--run-id", "spread", workspace=tiny)
    record = json.loads((tiny / "runs/spread/run.json").read_text())
    assert record["status"] == "done" and record["cv_score"] is not None
    for spread, reference in zip(_arrays(tiny, "spread"), _arrays(tiny, "reference"), strict=True):
        np.testing.assert_array_equal(spread, reference)


def test_joining_a_run_with_other_parameters_is_refused(tiny):
    comp("run", "tfidf", "--fold", "0", "--run-id", "r", workspace=tiny)
    result = comp("run", "tfidf", "--fold", "1", "--run-id", "r", "--set", "C=1",
                  workspace=tiny, check=False)
    assert result.returncode == 2 and "other parameters" in result.stderr
