"""How long comp's commands take as whole processes, the way a user runs them.

Baseline in the same run: `python -c pass`, the interpreter alone. Two workspaces are built
in a temporary folder:

- the demo (`comp init --demo --no-images`, 3,000 rows, 60 classes) with 8 runs, as many
  as `make demo` leaves: `comp --help` and `comp leaderboard` are timed there;
- a blend library: 10 runs × 10,000 rows × 200 classes from benchmarks/blend.py's
  generator (structured, not uniform noise), imported with `comp import`: `comp blend`
  (nested caruana, 30 iterations) is timed there, and split into start-up (importing what
  the command needs), reading the runs, fitting, and the rest (writing the blend run),
  from the timings the blend stores in its run.json.

Each command is timed best of --repeats.

    .venv/bin/python benchmarks/cli.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).parent))
from blend import Scale, generate  # noqa: E402 - the blend benchmark's library generator


def timed(command: list[str], workspace: Path | None = None) -> tuple[float, str]:
    env = {**os.environ, **({"COMP_WORKSPACE": str(workspace)} if workspace else {})}
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds, result.stdout


def best(command: list[str], repeats: int, workspace: Path | None = None) -> float:
    return min(timed(command, workspace)[0] for _ in range(repeats))


COMP = [sys.executable, "-m", "comp"]


def demo_workspace(root: Path, n_runs: int) -> Path:
    """The demo competition with `n_runs` finished runs of peaked, noisy probabilities."""
    from comp.project import Project
    from comp.runs.runner import store_precomputed_run

    timed([*COMP, "init", "--demo", "--no-images"], root)
    timed([*COMP, "folds"], root)
    project = Project.open(root)
    competition = project.competition
    rng = np.random.default_rng(0)
    for m in range(n_runs):
        arrays = [_peaked(rng, truth, competition.n_classes) for truth in
                  (competition.y, rng.integers(0, competition.n_classes, len(competition.test_ids)))]
        store_precomputed_run(project, name=f"run{m}", model="import", params={}, oof=arrays[0],
                              test=arrays[1])
    return root


def _peaked(rng: np.random.Generator, truth: np.ndarray, n_classes: int) -> np.ndarray:
    logits = rng.standard_normal((len(truth), n_classes)).astype(np.float32)
    logits[np.arange(len(truth)), truth] += 3.0
    proba = np.exp(3 * logits)
    return proba / proba.sum(axis=1, keepdims=True)


def blend_workspace(root: Path, scale: Scale) -> list[str]:
    """A competition whose train labels are the generated library's, and its runs imported."""
    library = root / "library"
    generate(library, scale)
    y = np.load(library / "y.npy")
    data = root / "data"
    data.mkdir(parents=True)
    n_test = scale.rows // 5
    pl.DataFrame({"id": np.arange(len(y)), "label": y, "title": [f"item {i}" for i in range(len(y))]}
                 ).write_parquet(data / "train.parquet")
    pl.DataFrame({"id": np.arange(n_test) + len(y), "title": [f"item {i}" for i in range(n_test)]}
                 ).write_parquet(data / "test.parquet")
    timed([*COMP, "init", "--train", str(data / "train.parquet"), "--test", str(data / "test.parquet"),
           "--target", "label", "--text", "title", "--id", "id"], root)
    timed([*COMP, "folds"], root)
    names = []
    for m in range(scale.runs):
        folder = root / "imports" / f"run{m}"
        folder.mkdir(parents=True)
        oof = np.load(library / f"run-{m:02d}.npy")
        np.save(folder / "oof.npy", oof)
        np.save(folder / "test.npy", oof[:n_test])
        timed([*COMP, "import", str(folder), "--name", f"run{m}"], root)
        names.append(f"run{m}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--folder", type=Path, help="build the workspaces here and keep them")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="comp-cli-") as temporary:
        root = args.folder or Path(temporary)
        demo = demo_workspace(root / "demo", n_runs=8)
        python = best([sys.executable, "-c", "pass"], args.repeats)
        rows = [("`python -c pass` (the interpreter)", python)]
        rows.append(("`comp --help`", best([*COMP, "--help"], args.repeats)))
        rows.append(("`comp leaderboard` (8 runs)", best([*COMP, "leaderboard"], args.repeats, demo)))

        scale = Scale(runs=10, rows=10_000, classes=200, seed=0)
        library = root / "blend"
        names = blend_workspace(library, scale)
        startup = best([sys.executable, "-c", "import comp.cli, comp.blend, comp.project"], args.repeats)
        blends = []
        for i in range(max(1, args.repeats // 2)):
            seconds, _ = timed([*COMP, "blend", *names, "--iterations", "30", "--name", f"b{i}"], library)
            record = next(json.loads(p.read_text()) for p in (library / "runs").glob(f"b{i}-*/run.json"))
            blends.append((seconds, record["details"]["timing"], record["cv_score"]))
        seconds, timing, cv = min(blends, key=lambda b: b[0])
        rows.append(("`comp blend` (10 runs × 10,000 rows × 200 classes, caruana, 30 iterations)", seconds))

    print(f"{os.cpu_count()} CPU cores, best of {args.repeats}\n")
    print("| command | seconds | × python -c pass |\n| --- | ---: | ---: |")
    for name, value in rows:
        print(f"| {name} | {value:.2f} | {value / python:.1f} |")
    rest = seconds - startup - timing["read_s"] - timing["fit_s"]
    print(f"\n`comp blend` ({seconds:.2f} s, nested f1_weighted {cv:.4f}):\n")
    print("| part | seconds |\n| --- | ---: |")
    print(f"| start-up: interpreter and imports | {startup:.2f} |")
    print(f"| reading: the runs' arrays, checked and prepared | {timing['read_s']:.2f} |")
    print(f"| fitting: 5 nested folds and the full fit | {timing['fit_s']:.2f} |")
    print(f"| the rest: data, writing the blend run | {rest:.2f} |")


if __name__ == "__main__":
    main()
