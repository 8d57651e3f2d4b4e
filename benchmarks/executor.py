"""The same 5-fold run trained locally and through Ray, timed as whole commands.

The demo competition (`comp init --demo --no-images`, --train-rows rows) and a tfidf whose
folds take over ten seconds each on 2 cores. Each arm is one `comp run` process, as a user
runs it, so Ray's share includes starting its private cluster and the workers:

- local: `comp --threads 2 run tfidf` (the folds one after another, 2 threads each);
- ray, 2 CPUs per fold: the same schedule through Ray, so the ratio to local is the
  executor's overhead (the goal is at most 10%);
- ray, 1 CPU per fold: two folds at once, one thread each.

Every arm's oof.npy is compared with the local one, byte for byte.

    .venv/bin/python benchmarks/executor.py [--train-rows 4000]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMP = [sys.executable, "-m", "comp"]
PARAMS = ["--set", "C=30"]  # folds of 10-20 s on 2 cores at 4,000 rows


def timed(args: list[str], workspace: Path) -> float:
    started = time.perf_counter()
    result = subprocess.run([*COMP, *args], env={**os.environ, "COMP_WORKSPACE": str(workspace)},
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"comp {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return time.perf_counter() - started


def oof_digest(workspace: Path, name: str) -> str:
    (path,) = (workspace / "runs").glob(f"{name}-*/oof.npy")
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=4000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        timed(["init", "--demo", "--no-images", "--train-rows", str(args.train_rows)], workspace)
        timed(["folds"], workspace)
        arms = {
            "local": ["--threads", "2", "run", "tfidf", *PARAMS, "--name", "local"],
            "ray, 2 CPUs per fold": ["run", "tfidf", *PARAMS, "--name", "ray2", "--executor", "ray",
                                     "--cpus-per-fold", "2"],
            "ray, 1 CPU per fold": ["run", "tfidf", *PARAMS, "--name", "ray1", "--executor", "ray",
                                    "--cpus-per-fold", "1"],
        }
        seconds = {arm: timed(command, workspace) for arm, command in arms.items()}
        digests = {arm: oof_digest(workspace, command[command.index("--name") + 1])
                   for arm, command in arms.items()}
        folds = [json.loads(p.read_text())["duration_s"]
                 for p in (workspace / "runs").glob("local-*/folds/*/fold.json")]
    print(f"demo, {args.train_rows} train rows, tfidf 5 folds; "
          f"local folds {min(folds):.1f}-{max(folds):.1f} s")
    print(f"{'arm':24} {'wall s':>8} {'× local':>8}  oof sha256")
    for arm, wall in seconds.items():
        print(f"{arm:24} {wall:8.1f} {wall / seconds['local']:8.3f}  {digests[arm]}")
    same = len(set(digests.values())) == 1
    print("every arm's oof.npy is identical to local's" if same else "ARRAYS DIFFER")


if __name__ == "__main__":
    main()
