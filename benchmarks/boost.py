"""What one fold of `comp run boost` costs per engine, at the demo's shape and the real one.

The features are synthetic but shaped like boost's: reduced parent blocks (two blocks of
64 dimensions: class centroids plus noise, so trees find signal), two numeric columns and a
shop id categorical whose shops sell in a few classes. Shapes:

- demo: 3,000 rows (2,400 train, 600 held-out), 60 classes, trained to `--demo-rounds`;
- real: 91,120 rows (72,896 train, 18,224 held-out), 874 classes, 128 reduced dimensions,
  only `--real-rounds` rounds (a full fit would take hours on a CPU).

"s/100 rounds" is the cost of rounds beyond the first (the fit minus a one-round fit,
scaled to 100 rounds), so one-off work (binning, imports) does not inflate it; from fewer
than 100 rounds it is an extrapolation, and the row says so.

Each engine and shape runs in its own subprocess (comp's engine functions, the defaults of
`comp run boost`, all cores unless `--threads`), so its peak resident memory
(`ru_maxrss`, which counts the native libraries' allocations) is its own. py-boost runs
only where there is a CUDA GPU. Prints one table.

    .venv/bin/python benchmarks/boost.py            # both shapes (minutes)
    .venv/bin/python benchmarks/boost.py --quick    # smoke run: small shapes, 3 rounds
"""

from __future__ import annotations

import argparse
import importlib
import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from comp.errors import CompError
from comp.metrics import METRICS
from comp.models._features import FeatureMatrix
from comp.models.boost import ENGINES, BoostParams, require_cuda


@dataclass(frozen=True)
class Shape:
    name: str
    rows: int
    classes: int
    dims: int
    shops: int


DEMO = Shape("demo", 3_000, 60, 128, 120)
REAL = Shape("real", 91_120, 874, 128, 4_000)
QUICK = {"demo": Shape("demo (quick)", 600, 12, 16, 20), "real": Shape("real (quick)", 2_000, 874, 16, 50)}
HELD_OUT_SHARE = 0.2
LIBRARIES = {"lightgbm": "lightgbm", "catboost": "catboost", "pyboost": "py_boost"}


def synthetic_features(shape: Shape, seed: int = 0) -> tuple[FeatureMatrix, np.ndarray]:
    rng = np.random.default_rng(seed)
    prior = rng.zipf(1.5, shape.classes).astype(float)
    y = rng.choice(shape.classes, size=shape.rows, p=prior / prior.sum())
    centroids = rng.normal(size=(shape.classes, shape.dims)).astype(np.float32)
    parents = centroids[y] + rng.normal(scale=2.0, size=(shape.rows, shape.dims)).astype(np.float32)
    home_shop = rng.integers(shape.shops, size=shape.classes)
    shop = np.where(rng.random(shape.rows) < 0.7, home_shop[y], rng.integers(shape.shops, size=shape.rows))
    numeric = np.hstack([parents, rng.random((shape.rows, 2), dtype=np.float32)])
    return FeatureMatrix(numeric, shop[:, None] + 1, [shape.shops + 1]), y


def measure(engine: str, shape: Shape, rounds: int, threads: int) -> dict:
    """One fold's fit (a fixed number of rounds: no early stopping) and held-out prediction.

    A one-round fit first: the difference between the two is the cost of the extra rounds
    without the one-off work (binning, target statistics)."""
    importlib.import_module(LIBRARIES[engine])  # imported before any clock starts
    x, y = synthetic_features(shape)
    n_train = int(shape.rows * (1 - HELD_OUT_SHARE))
    seen = np.unique(y[:n_train])
    train = FeatureMatrix(x.numeric[:n_train], x.categorical[:n_train], x.cardinalities)
    held_out = FeatureMatrix(x.numeric[n_train:], x.categorical[n_train:], x.cardinalities)

    def fit(n_rounds: int):
        params = BoostParams(engine=engine, rounds=n_rounds, threads=threads)
        started = time.perf_counter()
        predict, _ = ENGINES[engine](params, 0, train, np.searchsorted(seen, y[:n_train]),
                                     held_out, np.zeros(0, np.int64), len(seen))
        return predict, time.perf_counter() - started

    fit(1)  # warms the library up (lazy initialisation, thread pools)
    _, one_round_s = fit(1)
    predict, fit_s = fit(rounds)
    started = time.perf_counter()
    labels = seen[predict(held_out).argmax(axis=1)]
    return {
        "fit_s": fit_s, "per_round_s": (fit_s - one_round_s) / max(1, rounds - 1),
        "predict_s": time.perf_counter() - started,
        "f1": METRICS["f1_weighted"].on_labels(y[n_train:], labels, shape.classes),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def run_child(engine: str, shape: Shape, rounds: int, threads: int) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps([engine, vars(shape), rounds, threads])]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes and 3 rounds: a smoke run")
    parser.add_argument("--demo-rounds", type=int, default=100)
    parser.add_argument("--real-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="0: all cores")
    parser.add_argument("--engines", default="lightgbm,catboost,pyboost")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        engine, shape, rounds, threads = json.loads(args.child)
        print(json.dumps(measure(engine, Shape(**shape), rounds, threads)))
        return

    shapes = [(DEMO, args.demo_rounds), (REAL, args.real_rounds)]
    if args.quick:
        shapes = [(QUICK["demo"], 3), (QUICK["real"], 3)]
    header = (f"{'engine':9} {'shape':13} {'rows':>7} {'classes':>7} {'rounds':>6} {'fit s':>7} "
              f"{'s/100 rounds':>12} {'predict s':>9} {'peak RSS':>9} {'F1':>6}")
    print(header)
    print("-" * len(header))
    for engine in args.engines.split(","):
        if engine == "pyboost":
            try:
                require_cuda()
            except CompError:
                print(f"{engine:9} skipped: no CUDA GPU on this machine")
                continue
        for shape, rounds in shapes:
            result = run_child(engine, shape, rounds, args.threads)
            per_100 = result["per_round_s"] * 100
            print(f"{engine:9} {shape.name:13} {shape.rows:>7,} {shape.classes:>7} {rounds:>6} "
                  f"{result['fit_s']:>7.1f} {per_100:>12.1f} {result['predict_s']:>9.1f} "
                  f"{result['peak_rss_gib']:>7.2f} G {result['f1']:>6.3f}"
                  + ("  (s/100 rounds extrapolated)" if rounds < 100 else ""))

if __name__ == "__main__":
    main()
