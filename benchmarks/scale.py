"""comp at the real competition's scale: time and peak memory of each command.

Generates the demo competition at KazanExpress size (91,120 train / 16,860 test rows, 874
classes, no images) and runs, each as its own process: `comp init`, `comp folds`,
`comp run tfidf`, `comp run fasttext`, `comp leaderboard` over 500 runs, `comp blend` of 20
runs and `comp submit`. Peak memory is each process's own maximum resident set (wait4),
not the maximum over all children so far.

Model runs train fold 0 only unless --all-folds (a full run takes about n_folds times as
long: the folds are the same size). The 500 leaderboard runs and the 20 blend inputs are
synthesised straight into the run store (run.json, and oof.npy / test.npy for the blend
inputs), with the workspace's real folds and data hashes, so they count as finished runs.

    .venv/bin/python benchmarks/scale.py               # the real scale (the README's table)
    .venv/bin/python benchmarks/scale.py --quick       # 3,000 rows, 60 classes: a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from comp.runs.store import RunStore


@dataclass(frozen=True)
class Scale:
    train_rows: int
    test_rows: int
    classes: int
    leaderboard_runs: int = 500
    blend_runs: int = 20


REAL = Scale(train_rows=91_120, test_rows=16_860, classes=874)
QUICK = Scale(train_rows=3_000, test_rows=600, classes=60, leaderboard_runs=100, blend_runs=5)


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float
    peak_mb: float


def run_comp(workspace: Path, name: str, *args: str) -> Step:
    """Run `comp *args` in its own process; its wall time and its own peak resident memory."""
    env = {**os.environ, "COMP_WORKSPACE": str(workspace)}
    started = time.perf_counter()
    # output to a file, not a pipe: a pipe nobody reads until the end blocks a chatty child
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen([sys.executable, "-m", "comp", *args], env=env,
                                   stdout=log, stderr=subprocess.STDOUT)
        # wait4 reports this child's own rusage; RUSAGE_CHILDREN would be the maximum so far.
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        log.seek(0)
        output = log.read().decode(errors="replace")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{output}")
    print(f"  {name}: {seconds:.1f} s, {usage.ru_maxrss / 1024:.0f} MB", flush=True)
    return Step(name, seconds, usage.ru_maxrss / 1024)


def synthesize_runs(workspace: Path, template_id: str, count: int, stem: str) -> list[str]:
    """`count` finished runs copied from a real run's record (same hashes, new ids and scores)."""
    store = RunStore(workspace / "runs")
    template = store.load(template_id)
    base = float(np.mean([s for s in template.fold_scores if s is not None]))
    ids = []
    for i in range(count):
        score = base * (0.9 + 0.1 * i / count)
        record = dataclasses.replace(
            template, id=f"{stem}-{i:04d}", name=f"{stem} {i}", status="done",
            params={**template.params, "C": float(i + 1)}, cv_score=score, fold_mean=score,
            fold_std=0.0, folds_done=list(range(template.n_folds)),
        )
        store.run_dir(record.id).mkdir(parents=True, exist_ok=True)
        store.save(record)
        ids.append(record.id)
    return ids


def write_predictions(workspace: Path, run_id: str, y: np.ndarray, n_test: int, n_classes: int,
                      seed: int, chunk_rows: int = 8192) -> None:
    """Peaked, noisy probabilities (right on about 70% of rows) written in row chunks."""
    rng = np.random.default_rng(seed)
    folder = workspace / "runs" / run_id
    for name, truth in (("oof", y), ("test", rng.integers(0, n_classes, n_test))):
        path = folder / f"{name}.npy"
        array = np.lib.format.open_memmap(path.with_suffix(".tmp"), mode="w+", dtype=np.float32,
                                          shape=(len(truth), n_classes))
        for start in range(0, len(truth), chunk_rows):
            rows = slice(start, start + chunk_rows)
            block = rng.random((len(array[rows]), n_classes), dtype=np.float32) ** 8
            right = rng.random(len(block)) < 0.7
            block[right, truth[rows][right]] += 1.0
            array[rows] = block / block.sum(axis=1, keepdims=True)
        array.flush()
        del array
        os.replace(path.with_suffix(".tmp"), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small sizes: check the script runs.")
    parser.add_argument("--workspace", type=Path, help="Where to build it (default: a temp folder).")
    parser.add_argument("--all-folds", action="store_true", help="Train every fold, not fold 0.")
    parser.add_argument("--tfidf", default="char_max=0,max_features=200000,classifier=sgd,max_iter=20",
                        help="tfidf --set values, comma-separated.")
    parser.add_argument("--fasttext", default="epoch=10", help="fasttext --set values.")
    args = parser.parse_args()
    scale = QUICK if args.quick else REAL
    with tempfile.TemporaryDirectory(prefix="comp-scale-") as temporary:
        workspace = args.workspace or Path(temporary)
        steps = benchmark(workspace, scale, "all" if args.all_folds else "0", args.tfidf, args.fasttext)
    fold_note = "every fold" if args.all_folds else "fold 0 of 5"
    print(f"\n{scale.train_rows:,} train / {scale.test_rows:,} test rows, {scale.classes} classes, "
          f"{os.cpu_count()} CPU cores; model runs: {fold_note}\n")
    print("| step | seconds | peak memory (MB) |\n| --- | ---: | ---: |")
    for step in steps:
        print(f"| {step.name} | {step.seconds:.1f} | {step.peak_mb:.0f} |")


def _sets(values: str) -> list[str]:
    return [part for value in values.split(",") if value for part in ("--set", value.strip())]


def benchmark(workspace: Path, scale: Scale, fold: str, tfidf: str, fasttext: str) -> list[Step]:
    steps = [
        run_comp(workspace, "comp init --demo", "init", "--demo", "--no-images",
                 "--train-rows", str(scale.train_rows), "--test-rows", str(scale.test_rows),
                 "--classes", str(scale.classes)),
        run_comp(workspace, "comp folds", "folds"),
        run_comp(workspace, f"comp run tfidf --fold {fold}", "run", "tfidf", "--fold", fold,
                 "--run-id", "tfidf", *_sets(tfidf)),
        run_comp(workspace, f"comp run fasttext --fold {fold}", "run", "fasttext", "--fold", fold,
                 "--run-id", "fasttext", *_sets(fasttext)),
    ]
    synthesize_runs(workspace, "tfidf", scale.leaderboard_runs - 2, "synthetic")
    steps.append(run_comp(workspace, f"comp leaderboard ({scale.leaderboard_runs} runs)",
                          "leaderboard", "--json"))

    from comp.project import Project

    y = Project.open(workspace).competition.y
    inputs = synthesize_runs(workspace, "tfidf", scale.blend_runs, "blendinput")
    for seed, run_id in enumerate(inputs):
        write_predictions(workspace, run_id, y, scale.test_rows, scale.classes, seed)
    steps.append(run_comp(workspace, f"comp blend ({scale.blend_runs} runs)", "blend", *inputs,
                          "--name", "blend"))
    steps.append(run_comp(workspace, "comp submit", "submit", "blend"))
    return steps


if __name__ == "__main__":
    main()
