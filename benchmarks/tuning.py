"""20 tuning trials of tfidf with and without pruning: wall time and best CV side by side.

The demo competition (`comp init --demo --no-images`, --train-rows rows), word n-grams only
(`--set char_max=0`) so a trial takes seconds. Each arm is one `comp tune` process with the
same sampler seed in its own study: `--pruner none`, `--pruner wilcoxon` (the default) and
`--pruner median`. Printed: wall time, the folds trained, trials pruned, the best trial's
CV, and the time ratio to no pruning.

    .venv/bin/python benchmarks/tuning.py [--trials 20] [--train-rows 3000]
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

COMP = [sys.executable, "-m", "comp"]


def run(args: list[str], workspace: Path) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run([*COMP, *args], env={**os.environ, "COMP_WORKSPACE": str(workspace)},
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--train-rows", type=int, default=3000)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        run(["init", "--demo", "--no-images", "--train-rows", str(args.train_rows)], workspace)
        run(["folds"], workspace)
        for pruner in ("none", "wilcoxon", "median"):
            study_name = f"pruner_{pruner}"
            wall, _ = run(["tune", "tfidf", "--trials", str(args.trials), "--set", "char_max=0",
                           "--pruner", pruner, "--study", study_name, "--seed", "0"], workspace)
            study = json.loads(run(["tune", "--show", study_name, "--json"], workspace)[1])
            trials = study["trials"]
            rows.append((pruner, wall, sum(t["folds"] for t in trials),
                         sum(t["state"] == "PRUNED" for t in trials), study["best"]["value"],
                         study["best"]["number"]))
    print(f"demo, {args.train_rows} train rows; {args.trials} trials of tfidf (char_max=0), seed 0")
    print(f"{'pruner':10} {'wall s':>8} {'× none':>7} {'folds':>6} {'pruned':>7} {'best CV':>8} "
          f"{'best trial':>10}")
    for pruner, wall, folds, pruned, best, number in rows:
        print(f"{pruner:10} {wall:8.1f} {wall / rows[0][1]:7.3f} {folds:6d} {pruned:7d} {best:8.4f} "
              f"{number:10d}")


if __name__ == "__main__":
    main()
