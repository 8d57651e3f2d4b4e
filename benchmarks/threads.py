"""Two comp runs on one machine: one after the other with every core each, or at once
with `--threads` giving each its share, and at once without a cap (oversubscribed).

Builds the demo (`comp init --demo`, `comp folds`) in a temporary folder unless
--workspace names one, then times, as whole `comp run` processes, the same two runs (fold
0 of `--model` with `--set` settings, distinct --run-id each time):

- sequential: one after the other, uncapped;
- capped: both at once, `--threads N/2` each (N = the machine's cores);
- uncapped: both at once, no cap.

Prints each wall time and the ratio to sequential.

    .venv/bin/python benchmarks/threads.py [--model bert] [--set epochs=2 ...]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMP = [sys.executable, "-m", "comp"]


def start(workspace: Path, run_id: str, model: str, settings: list[str], threads: int | None):
    cap = ["--threads", str(threads)] if threads else []
    command = [*COMP, "--workspace", str(workspace), *cap, "run", model, "--fold", "0", "--run-id", run_id,
               *[part for value in settings for part in ("--set", value)]]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_all(processes) -> None:
    for process in processes:
        if process.wait() != 0:
            raise SystemExit(f"{' '.join(process.args)} failed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path)
    parser.add_argument("--model", default="bert")
    parser.add_argument("--set", dest="settings", action="append", default=None)
    args = parser.parse_args()
    settings = args.settings or ["epochs=2", "length_buckets=true"]
    cores = os.cpu_count() or 2
    with tempfile.TemporaryDirectory(prefix="comp-threads-") as temporary:
        workspace = args.workspace or Path(temporary)
        if not (workspace / "comp.toml").exists():
            subprocess.run([*COMP, "--workspace", str(workspace), "init", "--demo"], check=True,
                           capture_output=True)
            subprocess.run([*COMP, "--workspace", str(workspace), "folds"], check=True, capture_output=True)
        start(workspace, "warm-up", args.model, settings, None).wait()  # caches: tokenizer, file hashes
        timings = {}
        started = time.perf_counter()
        for name in ("seq-a", "seq-b"):
            wait_all([start(workspace, name, args.model, settings, None)])
        timings["sequential, all cores each"] = time.perf_counter() - started
        share = max(1, cores // 2)
        for label, threads, stem in ((f"at once, --threads {share} each", share, "cap"),
                                     ("at once, uncapped", None, "free")):
            started = time.perf_counter()
            wait_all([start(workspace, f"{stem}-{i}", args.model, settings, threads) for i in "ab"])
            timings[label] = time.perf_counter() - started
    print(f"two `comp run {args.model} --fold 0` ({' '.join(settings)}), {cores} CPU cores\n")
    print("| how | seconds | ratio to sequential |\n| --- | ---: | ---: |")
    base = timings["sequential, all cores each"]
    for label, seconds in timings.items():
        print(f"| {label} | {seconds:.1f} | {seconds / base:.2f} |")


if __name__ == "__main__":
    main()
