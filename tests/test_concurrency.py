"""Several `comp run` processes against one runs/ at once end exactly as serial runs do.

Different models run side by side; processes sharing one run (`--run-id`) split its folds
through the fold locks, each fold trained once. The leaderboard answers throughout.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_store_intact, comp, start_comp

TFIDF = ["run", "tfidf", "--set", "char_max=0"]
FASTTEXT = ["run", "fasttext", "--set", "epoch=3"]


@pytest.fixture(scope="module")
def serial(tiny_template, tmp_path_factory) -> Path:
    """The same runs made one after the other: what the concurrent ones must equal."""
    root = tmp_path_factory.mktemp("serial") / "ws"
    shutil.copytree(tiny_template, root)
    comp(*TFIDF, "--run-id", "tfidf", workspace=root)
    comp(*FASTTEXT, "--run-id", "fasttext", workspace=root)
    return root


def _run_together(workspace: Path, *commands: list[str]) -> list[str]:
    """Run the commands at once, reading the leaderboard until they end; their stderr."""
    processes = [start_comp(*command, workspace=workspace, capture=True) for command in commands]
    while any(p.poll() is None for p in processes):
        board = comp("leaderboard", "--json", workspace=workspace)  # must never fail meanwhile
        assert isinstance(json.loads(board.stdout), list)
    logs = []
    for process in processes:
        stdout, stderr = process.communicate()
        assert process.returncode == 0, stdout + stderr
        logs.append(stderr)
    return logs


def _assert_equal_runs(workspace: Path, serial: Path, run_id: str, reference_id: str) -> None:
    for name in ("oof", "test"):
        np.testing.assert_array_equal(np.load(workspace / "runs" / run_id / f"{name}.npy"),
                                      np.load(serial / "runs" / reference_id / f"{name}.npy"))


def test_two_models_at_once_equal_serial_runs(tiny, serial):
    _run_together(tiny, [*TFIDF, "--run-id", "tfidf"], [*FASTTEXT, "--run-id", "fasttext"])
    board = assert_store_intact(tiny)
    assert {e["id"]: e["state"] for e in board} == {"tfidf": "done", "fasttext": "done"}
    for run_id in ("tfidf", "fasttext"):
        _assert_equal_runs(tiny, serial, run_id, run_id)


def _trained_folds(log: str) -> list[int]:
    return [int(k) for k in re.findall(r"^fold (\d+): f1_weighted", log, flags=re.MULTILINE)]


@pytest.mark.parametrize(
    "fold_specs", [["all", "all"], pytest.param(["0", "1", "all"], marks=pytest.mark.slow)],
    ids=["all-and-all", "single-folds-and-all"]
)
def test_processes_sharing_one_run_train_each_fold_once(tiny, serial, fold_specs):
    logs = _run_together(tiny, *[[*TFIDF, "--run-id", "shared", "--fold", k] for k in fold_specs])
    trained = sorted(k for log in logs for k in _trained_folds(log))
    assert trained == [0, 1, 2, 3, 4], logs
    board = assert_store_intact(tiny)
    assert [(e["id"], e["state"]) for e in board] == [("shared", "done")]
    _assert_equal_runs(tiny, serial, "shared", "tfidf")


def test_two_submissions_of_one_name_at_once_never_mix_file_and_provenance(tiny):
    comp(*TFIDF, "--name", "words", workspace=tiny)
    comp(*TFIDF, "--name", "strong", "--set", "C=0.01", workspace=tiny)
    for attempt in range(4):
        name = f"s{attempt}"
        processes = [start_comp("submit", run, "--name", name, workspace=tiny, capture=True)
                     for run in ("words", "strong")]
        codes = sorted(p.wait(timeout=120) for p in processes)
        assert codes == [0, 2], codes  # one lands, the other is told the name is taken
        provenance = json.loads((tiny / "submissions" / f"{name}.json").read_text())
        written = (tiny / "submissions" / f"{name}.csv").read_bytes()
        assert hashlib.sha256(written).hexdigest() == provenance["sha256"]
        assert "byte-identical" in comp("reproduce", name, workspace=tiny).stdout
