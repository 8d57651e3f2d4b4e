"""How the leaderboard scales with hundreds of runs.

Baseline in the same process: the least any leaderboard must do, reading each run.json.
Prints the leaderboard's time as a ratio to that baseline, for 100 and 500 runs.

    .venv/bin/python benchmarks/leaderboard_scale.py
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

from comp.data.config import write_config
from comp.data.scaffold import kazanexpress_config
from comp.data.workspace import Workspace
from comp.project import Project
from comp.runs.leaderboard import leaderboard
from comp.runs.store import RunRecord, RunStore


def fake_runs(workspace: Workspace, n_runs: int, n_classes: int = 874) -> None:
    store = RunStore(workspace.runs)
    for i in range(n_runs):
        record = RunRecord(
            id=f"run-{i:04d}", name=f"run {i}", model="tfidf", params={"C": float(i)},
            status="done", created_at=f"2026-01-01T00:{i % 60:02d}:00+00:00", duration_s=60.0,
            folds_hash="f", data_hash="d", metric="f1_weighted", cv_score=0.8 + i / 1e5,
            fold_scores=[0.8] * 5, classes=list(range(n_classes)), n_folds=5,
            folds_done=list(range(5)), scores={"f1_macro": 0.7}, fold_mean=0.8, fold_std=0.01,
        )
        store.run_dir(record.id).mkdir(parents=True, exist_ok=True)
        store.save(record)


def best_of(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    for n_runs in (100, 500):
        with tempfile.TemporaryDirectory() as folder:
            workspace = Workspace(Path(folder))
            write_config(workspace.config_path, kazanexpress_config(with_images=False))
            fake_runs(workspace, n_runs)
            paths = list(workspace.runs.glob("*/run.json"))
            baseline = best_of(lambda paths=paths: [json.loads(p.read_text()) for p in paths])
            board = best_of(lambda workspace=workspace: leaderboard(Project(workspace)))
            print(
                f"{n_runs} runs: leaderboard {board * 1e3:.1f} ms, reading run.json files "
                f"{baseline * 1e3:.1f} ms, ratio {board / baseline:.2f}"
            )


if __name__ == "__main__":
    main()
