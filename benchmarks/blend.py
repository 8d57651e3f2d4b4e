"""Ensemble selection at the real scale: comp's fast path against the straightforward way.

Builds, once, a library of synthetic runs shaped like the real ones: 20 runs × 91,120 rows
× 874 classes of float32 probabilities (~6.4 GB of .npy files) with a long-tailed class
prior, runs of different skill, errors shared between runs (hard rows, confusions between
similar classes, families of related models) and peaked softmax rows. Then, each in its
own subprocess so that each peak memory is its own:

- fast: `np.load(mmap_mode="r")` and `prepare` for every run (timed as "prepare"), then
  `ensemble_selection` for 50 iterations on weighted F1 over all rows;
- reference: the same greedy selection with replacement written the straightforward way,
  as AutoGluon's `EnsembleSelection` does it: for each iteration and each candidate, a new
  N × C mixture of the ensemble and the candidate, its argmax and its weighted F1.

Both score labels with comp's weighted F1 (`METRICS["f1_weighted"].on_labels`), so the
comparison is about the algorithm, not the metric, and both break ties the same way
(lower log loss of the mixture, then the same seeded random choice). The reference costs
one N × C pass per candidate; `--reference-iterations` runs fewer and extrapolates.

Prints library generation time, prepare time, selection times, the speed ratio, whether
the picks are identical, both scores and the peak memory of each path.

    .venv/bin/python benchmarks/blend.py                            # full scale
    .venv/bin/python benchmarks/blend.py --cache /tmp/blend-cache   # keep the library
    .venv/bin/python benchmarks/blend.py --runs 5 --rows 5000 --classes 100   # quick
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comp.blend import TOP_K
from comp.blend.library import CHUNK_ROWS, prepare
from comp.blend.selection import ensemble_selection
from comp.metrics import METRICS, log_loss_true

F1 = METRICS["f1_weighted"]
GIB = 1024**3
LIBRARY_VERSION = 1  # bump when the generator changes: cached libraries are rebuilt
CLASS_FAMILY_SIZE = 6  # similar classes (one parent category) that runs confuse
RUN_FAMILY_SIZE = 4  # related runs (one model type) that share part of their errors
NOISE_SHARES = (0.6, 0.25, 0.15)  # logit noise shared by all runs, by a run family, own
SKILL_RANGE = (4.5, 6.3)  # the true class's logit boost of the weakest and strongest run
SHARPNESS_RANGE = (2.0, 4.0)  # inverse temperatures: how peaked each run's rows are


@dataclass(frozen=True)
class Scale:
    runs: int
    rows: int
    classes: int
    seed: int

    @property
    def name(self) -> str:
        return f"blend-v{LIBRARY_VERSION}-{self.runs}x{self.rows}x{self.classes}-seed{self.seed}"

    @property
    def nbytes(self) -> int:
        return self.runs * self.rows * self.classes * 4


# ---------------------------------------------------------------------------- the library


@dataclass(frozen=True)
class Rows:
    """What every run sees of each row: its class, how hard it is, what it resembles."""

    y: np.ndarray  # [n] int64
    hardness: np.ndarray  # [n] in [0, 1]: hard rows are hard for every run
    confuser: np.ndarray  # [n] a similar class (same family) that hard rows look like
    log_prior: np.ndarray  # [C] runs lean towards frequent classes
    jitter: np.ndarray  # [n, runs] each run's own luck on each row


def make_rows(scale: Scale, rng: np.random.Generator) -> Rows:
    ranks = np.arange(1, scale.classes + 1)
    prior = 1.0 / (ranks + 5.0) ** 1.1  # long tail: the rarest class ~240× rarer than the top
    prior = prior[rng.permutation(scale.classes)] / prior.sum()
    y = rng.choice(scale.classes, size=scale.rows, p=prior)
    # families: consecutive blocks of a shuffled class order; the confuser is another member
    shuffled = rng.permutation(scale.classes)
    position = np.argsort(shuffled)[y]
    first = position // CLASS_FAMILY_SIZE * CLASS_FAMILY_SIZE
    size = np.minimum(CLASS_FAMILY_SIZE, scale.classes - first)
    offset = 1 + (rng.random(scale.rows) * (size - 1)).astype(np.int64)
    confuser = shuffled[first + (position - first + offset) % size]
    return Rows(
        y=y.astype(np.int64),
        hardness=rng.beta(1.2, 3.0, size=scale.rows).astype(np.float32),
        confuser=confuser,
        log_prior=np.log(prior).astype(np.float32),
        jitter=rng.standard_normal((scale.rows, scale.runs)).astype(np.float32),
    )


def run_styles(scale: Scale, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each run's skill (true-class logit boost) and sharpness, skills in shuffled order."""
    skill = rng.permutation(np.linspace(*SKILL_RANGE, scale.runs)).astype(np.float32)
    sharpness = rng.uniform(*SHARPNESS_RANGE, scale.runs).astype(np.float32)
    return skill, sharpness


def probabilities(
    noise: np.ndarray, rows: Rows, block: slice, skill: float, sharpness: float, jitter: np.ndarray
) -> np.ndarray:
    """One run's softmax rows for one block, from its mixed logit noise (modified in place)."""
    index = np.arange(len(noise))
    y, confuser, hardness = rows.y[block], rows.confuser[block], rows.hardness[block]
    logits = noise
    logits += 0.3 * rows.log_prior
    logits[index, y] += skill - 5.0 * hardness + 0.4 * jitter
    logits[index, confuser] += 3.5 * hardness
    logits *= sharpness
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    return logits


def generate(folder: Path, scale: Scale) -> dict[str, Any]:
    """Write y.npy and run-XX.npy chunk by chunk (seeded per chunk) and a summary that
    marks the library complete. Only one block of rows per noise source is in RAM."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = make_rows(scale, np.random.default_rng([scale.seed, 0]))
    skill, sharpness = run_styles(scale, np.random.default_rng([scale.seed, 1]))
    np.save(folder / "y.npy", rows.y)
    outputs = [
        np.lib.format.open_memmap(folder / f"run-{m:02d}.npy", mode="w+", dtype=np.float32,
                                  shape=(scale.rows, scale.classes))
        for m in range(scale.runs)
    ]
    predicted = np.empty((scale.runs, scale.rows), dtype=np.int64)
    top1, top5 = [], []
    weights = [np.float32(np.sqrt(share)) for share in NOISE_SHARES]
    for chunk, start in enumerate(range(0, scale.rows, CHUNK_ROWS)):
        block = slice(start, min(start + CHUNK_ROWS, scale.rows))
        shape = (block.stop - start, scale.classes)

        def normal(stream: int, shape: tuple[int, int] = shape, chunk: int = chunk) -> np.ndarray:
            rng = np.random.default_rng([scale.seed, 2, chunk, stream])
            return rng.standard_normal(shape, dtype=np.float32)

        shared = weights[0] * normal(0)
        for m in range(scale.runs):
            if m % RUN_FAMILY_SIZE == 0:
                family = weights[1] * normal(1 + m // RUN_FAMILY_SIZE)
            noise = weights[2] * normal(1000 + m)
            noise += shared
            noise += family
            proba = probabilities(noise, rows, block, float(skill[m]), float(sharpness[m]),
                                  rows.jitter[block, m])
            outputs[m][block] = proba
            predicted[m, block] = proba.argmax(axis=1)
            if chunk == 0:
                ordered = -np.sort(-proba, axis=1)
                top1.append(float(np.median(ordered[:, 0])))
                top5.append(float(np.median(ordered[:, :5].sum(axis=1))))
    for output in outputs:
        output.flush()
    solo = [F1.on_labels(rows.y, predicted[m], scale.classes) for m in range(scale.runs)]
    summary = {"solo_f1": solo, "median_top1_mass": float(np.mean(top1)),
               "median_top5_mass": float(np.mean(top5))}
    (folder / "summary.json").write_text(json.dumps(summary))
    return summary


def library_paths(folder: Path, scale: Scale) -> tuple[Path, list[Path]]:
    return folder / "y.npy", [folder / f"run-{m:02d}.npy" for m in range(scale.runs)]


# ---------------------------------------------------------------------------- memory


class PeakMemory:
    """Peak memory of this process. ru_maxrss counts every resident page, including the
    pages of memory-mapped files that were touched (page cache the kernel can reclaim),
    so the peak of anonymous memory alone (sampled from /proc/self/status) is kept too."""

    def __init__(self, interval_s: float = 0.02):
        self.interval_s = interval_s
        self.peak_anon_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak_anon_kib = max(self.peak_anon_kib, status_kib("RssAnon"))
            if self._stop.wait(self.interval_s):
                return

    def report(self) -> dict[str, float]:
        return {"max_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB,
                "peak_anon_gib": self.peak_anon_kib * 1024 / GIB,
                "file_rss_gib": status_kib("RssFile") * 1024 / GIB}


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------------------- the two paths


def fast_path(folder: Path, scale: Scale, iterations: int) -> dict[str, Any]:
    y_path, run_paths = library_paths(folder, scale)
    y = np.load(y_path)
    with PeakMemory() as memory:
        started = time.perf_counter()
        library = [prepare(np.load(path, mmap_mode="r"), y, TOP_K) for path in run_paths]
        prepared = time.perf_counter()
        selection = ensemble_selection(library, y, np.arange(scale.rows), F1, iterations)
        selected = time.perf_counter()
    return {"prepare_s": prepared - started, "select_s": selected - prepared,
            "picks": selection.picks,
            "trajectory": selection.trajectory, **memory.report()}


def reference_selection(
    runs: list[np.ndarray], y: np.ndarray, iterations: int, seed: int,
    on_iteration: Callable[[int, int, float, float], None],
) -> tuple[list[int], list[float]]:
    """Caruana's selection with replacement as AutoGluon's EnsembleSelection writes it:
    every candidate's mixture is a new N × C array (here float32, like the inputs, which
    is faster than AutoGluon's float64). Ties: lower log loss, then a seeded choice."""
    rng = np.random.default_rng(seed)
    n, n_classes = runs[0].shape
    rows = np.arange(n)
    ensemble_sum = np.zeros((n, n_classes), dtype=np.float32)
    picks: list[int] = []
    trajectory: list[float] = []
    for size in range(iterations):
        started = time.perf_counter()
        scores = np.empty(len(runs))
        true_proba = []
        for m, candidate in enumerate(runs):
            mixture = (ensemble_sum + candidate) / (size + 1)
            scores[m] = F1.on_labels(y, mixture.argmax(axis=1), n_classes)
            true_proba.append(mixture[rows, y])
        tied = np.flatnonzero(scores == scores.max())
        if len(tied) > 1:
            losses = np.array([log_loss_true(true_proba[m]) for m in tied])
            tied = tied[losses == losses.min()]
        best = int(rng.choice(tied))
        ensemble_sum += runs[best]
        picks.append(best)
        trajectory.append(float(scores[best]))
        on_iteration(size + 1, best, trajectory[-1], time.perf_counter() - started)
    return picks, trajectory


def reference_path(folder: Path, scale: Scale, iterations: int) -> dict[str, Any]:
    y_path, run_paths = library_paths(folder, scale)
    y = np.load(y_path)
    seconds: list[float] = []

    def progress(iteration: int, pick: int, score: float, elapsed: float) -> None:
        seconds.append(elapsed)
        print(f"  reference iteration {iteration}/{iterations}: {elapsed:.1f} s, "
              f"pick run {pick}, weighted F1 {score:.5f}", file=sys.stderr, flush=True)

    with PeakMemory() as memory:
        runs = [np.load(path, mmap_mode="r") for path in run_paths]
        picks, trajectory = reference_selection(runs, y, iterations, seed=0, on_iteration=progress)
    return {"iteration_s": seconds, "picks": picks, "trajectory": trajectory, **memory.report()}


def run_path(only: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    """Run one path in a fresh interpreter, so that its peak memory is its own."""
    command = [sys.executable, __file__, "--only", only, "--cache", str(folder),
               "--runs", str(args.runs), "--rows", str(args.rows), "--classes", str(args.classes),
               "--seed", str(args.seed), "--iterations", str(args.iterations),
               "--reference-iterations", str(args.reference_iterations)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


# ---------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--rows", type=int, default=91_120)
    parser.add_argument("--classes", type=int, default=874)
    parser.add_argument("--seed", type=int, default=0, help="of the generated library")
    parser.add_argument("--iterations", type=int, default=50, help="of the fast path")
    parser.add_argument("--reference-iterations", type=int,
                        help="of the reference (default: --iterations; ~2.7 s each at full scale "
                             "on 2 cores): fewer are compared pick by pick and extrapolated")
    parser.add_argument("--cache", type=Path, help="folder that keeps the library between runs "
                                                    "(default: a temporary folder, deleted)")
    parser.add_argument("--only", choices=("fast", "reference"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    scale = Scale(args.runs, args.rows, args.classes, args.seed)
    args.reference_iterations = min(args.reference_iterations or args.iterations, args.iterations)

    if args.only:
        folder = args.cache / scale.name
        result = (fast_path(folder, scale, args.iterations) if args.only == "fast"
                  else reference_path(folder, scale, args.reference_iterations))
        print(json.dumps(result))
        return
    if args.cache is None:
        with tempfile.TemporaryDirectory(prefix="blend-bench-") as temporary:
            benchmark(args, scale, Path(temporary))
    else:
        benchmark(args, scale, args.cache)


def benchmark(args: argparse.Namespace, scale: Scale, cache: Path) -> None:
    folder = cache / scale.name
    print(f"library: {scale.runs} runs × {scale.rows:,} rows × {scale.classes} classes float32, "
          f"{scale.nbytes / 1e9:.1f} GB in {folder}", flush=True)
    summary_path = folder / "summary.json"
    if summary_path.exists():
        summary = json.loads(summary_path.read_text())
        print("  generation: cached", flush=True)
    else:
        cache.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(cache).free
        if free < scale.nbytes * 1.1:
            sys.exit(f"only {free / 1e9:.1f} GB free in {cache}; pass --cache DIR elsewhere")
        started = time.perf_counter()
        summary = generate(folder, scale)
        print(f"  generation: {time.perf_counter() - started:.1f} s", flush=True)
    solo = np.array(summary["solo_f1"])
    print(f"  solo weighted F1 of the runs: {solo.min():.3f} to {solo.max():.3f} "
          f"(median {np.median(solo):.3f}); median row's top-1 mass "
          f"{summary['median_top1_mass']:.2f}, top-5 mass {summary['median_top5_mass']:.2f}", flush=True)

    print(f"fast path (comp.blend: prepare with K={TOP_K}, ensemble_selection), "
          f"{args.iterations} iterations, weighted F1, all rows ...", flush=True)
    fast = run_path("fast", args, cache)
    k = args.reference_iterations
    print(f"reference (new N × C float32 mixture per candidate, as AutoGluon's "
          f"EnsembleSelection), {k} of {args.iterations} iterations"
          f"{' (--reference-iterations)' if k < args.iterations else ''} ...", flush=True)
    reference = run_path("reference", args, cache)

    per_iteration = float(np.mean(reference["iteration_s"]))
    reference_total = per_iteration * args.iterations
    how = "actual" if k == args.iterations else f"extrapolated from {k}"
    fast_total = fast["select_s"]
    same = fast["picks"][:k] == reference["picks"]
    print()
    print(f"prepare ({scale.runs} runs, memory-mapped): {fast['prepare_s']:.2f} s")
    print(f"fast selection, {args.iterations} iterations: {fast_total:.2f} s "
          f"({fast_total / args.iterations:.3f} s per iteration)")
    print(f"reference selection: {per_iteration:.3f} s per iteration, "
          f"{reference_total:.1f} s for {args.iterations} ({how})")
    print(f"speed ratio, selection only: {reference_total / fast_total:.1f}×; "
          f"fast prepare + selection: {reference_total / (fast_total + fast['prepare_s']):.1f}×")
    print(f"picks identical for the first {k} iterations: {'yes' if same else 'NO'}")
    print(f"  fast      {fast['picks'][:k]}")
    print(f"  reference {reference['picks']}")
    print(f"weighted F1 after {k} picks: fast {fast['trajectory'][k - 1]:.6f}, "
          f"reference {reference['trajectory'][-1]:.6f}; fast after {args.iterations}: "
          f"{fast['trajectory'][-1]:.6f}")
    print("weighted F1 in both: comp.metrics f1_weighted on labels (the algorithms differ, "
          "not the metric)")
    print("peak memory, each path in its own process (ru_maxrss counts touched pages of "
          "the memory-mapped runs, which the kernel can reclaim; anonymous sampled every 20 ms):")
    for name, result in (("fast", fast), ("reference", reference)):
        print(f"  {name:<9} max RSS {result['max_rss_gib']:.2f} GiB, of which anonymous at "
              f"peak {result['peak_anon_gib']:.2f} GiB; mapped file pages resident at the end "
              f"{result['file_rss_gib']:.2f} GiB")


if __name__ == "__main__":
    main()
