"""`comp blend`: ensembles of finished runs, scored as honestly as a single model.

Every blend is fitted nested on the fixed folds: for fold k the weights (or meta-model)
are fitted on the other folds' OOF rows and predict fold k's rows. Those predictions are
the blend's oof.npy and give its cv_score, so a blend competes with models on equal
terms and can itself be blended. The in-sample score (fitted and scored on all rows,
optimistic) is reported beside it. A blend is a run: model `blend`, parents its inputs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from comp.blend.library import CHUNK_ROWS, RunProbabilities, prepare
from comp.blend.methods import Blender, Caruana, Fixed, Optimized, Stack, WithOffsets
from comp.data import Competition
from comp.errors import CompError
from comp.folds import load_folds
from comp.leaderboard import leaderboard
from comp.metrics import METRICS
from comp.runner import check_run_matches, store_precomputed_run
from comp.store import RunRecord, RunStore
from comp.workspace import Workspace

METHODS = ("caruana", "optimize", "stack", "weights")
TOP_K = 32
DIVERSITY_SAMPLE_CELLS = 2_000_000  # rows × classes per run in the correlation sample


@dataclass(frozen=True)
class BlendRequest:
    runs: list[str] = field(default_factory=list)  # empty: every finished non-blend run
    top: int | None = None
    method: str = "caruana"
    metric: str | None = None  # what the method optimises; default: the competition metric
    iterations: int = 50
    init: int = 0
    bags: int = 1
    seed: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    temperature: bool = False
    meta: str = "logit"
    offsets: bool = False
    name: str | None = None


def blend(workspace: Workspace, request: BlendRequest) -> RunRecord:
    if request.method not in METHODS:
        raise CompError(f"--method must be one of {', '.join(METHODS)}, got {request.method!r}")
    competition = Competition.load(workspace)
    folds = load_folds(workspace, competition)
    store = RunStore(workspace.runs)
    parents = _choose_parents(workspace, store, request)
    for parent in parents:
        check_run_matches(parent, competition, folds, finished=True)
    objective_name = request.metric or competition.config.cv.metric
    if objective_name not in METRICS:
        raise CompError(f"--metric must be one of {', '.join(METRICS)}, got {objective_name!r}")
    objective = METRICS[objective_name]
    started = time.perf_counter()
    y = competition.y
    oofs = [_checked_array(store, r, "oof", (len(y), competition.n_classes)) for r in parents]
    tests = [_checked_array(store, r, "test", (len(competition.test_ids), competition.n_classes))
             for r in parents]
    library = [prepare(oof, y, TOP_K) for oof in oofs]

    def make() -> Blender:
        return _make_blender(request, objective, parents)

    oof_blend = np.zeros((len(y), competition.n_classes), dtype=np.float32)
    oof_without_offsets = oof_blend.copy() if request.offsets else None
    fold_tests, fold_details = [], []
    for k in range(folds.n_folds):
        held_out = folds.held_out(k)
        blender = make()
        blender.fit(library, y, folds.training(k))
        parts = [oof[held_out] for oof in oofs]
        if isinstance(blender, WithOffsets):
            oof_without_offsets[held_out] = blender.inner.predict(parts)
            oof_blend[held_out] = blender.with_offsets(oof_without_offsets[held_out])
        else:
            oof_blend[held_out] = blender.predict(parts)
        fold_details.append(blender.describe())
        if not blender.test_from_full_fit:
            fold_tests.append(blender.predict(tests))
    full = make()
    full.fit(library, y, np.arange(len(y)))
    in_sample = full.predict(oofs)
    test_blend = full.predict(tests) if full.test_from_full_fit else np.mean(fold_tests, axis=0)

    metric = METRICS[competition.config.cv.metric]
    details = {
        "method": request.method,
        "objective": objective.name,
        "in_sample_score": metric(y, _normalised(in_sample)),
        "nested_without_offsets": None if oof_without_offsets is None else metric(
            y, _normalised(oof_without_offsets)),
        "full_fit": full.describe(),
        "fold_fits": fold_details,
        "parents": [
            {"id": r.id, "name": r.name, "model": r.model, "cv_score": r.cv_score,
             "weight": _weight(full, m)}
            for m, r in enumerate(parents)
        ],
        "diversity": diversity(library, oofs, y),
    }
    params = {k: v for k, v in vars(request).items() if k not in {"name", "runs"}}
    return store_precomputed_run(
        workspace, competition, folds, name=request.name or f"blend-{request.method}",
        model="blend", params={**params, "runs": [r.id for r in parents]},
        oof=oof_blend, test=test_blend, parents=[r.id for r in parents],
        seed=request.seed, duration_s=time.perf_counter() - started, details=details,
    )


def _make_blender(request: BlendRequest, objective, parents: list[RunRecord]) -> Blender:
    blender: Blender
    if request.method == "caruana":
        blender = Caruana(metric=objective, iterations=request.iterations, init=request.init,
                          bags=request.bags, seed=request.seed)
    elif request.method == "optimize":
        blender = Optimized(temperature=request.temperature)
    elif request.method == "stack":
        blender = Stack(meta=request.meta, seed=request.seed)
    else:
        given = [request.weights.get(r.id, request.weights.get(r.name, 0.0)) for r in parents]
        blender = Fixed(given=np.array(given))
    if request.offsets:
        if not objective.is_argmax:
            raise CompError(f"--offsets tunes an argmax metric, not {objective.name}")
        blender = WithOffsets(inner=blender, metric=objective)
    return blender


def _weight(blender: Blender, m: int) -> float | None:
    weights = getattr(getattr(blender, "inner", blender), "weights", None)
    return None if weights is None else float(weights[m])


def _choose_parents(workspace: Workspace, store: RunStore, request: BlendRequest) -> list[RunRecord]:
    if request.method == "weights":
        if not request.weights:
            raise CompError("--method weights needs --weights RUN_A=0.7,RUN_B=0.3")
        refs = list(request.weights)
    else:
        refs = request.runs
    if refs:
        parents = [store.resolve(ref) for ref in refs]
    else:
        parents = [e.record for e in leaderboard(workspace)
                   if e.state == "done" and e.record.model != "blend"]
    if request.top:
        ranked = [e.record.id for e in leaderboard(workspace)]
        parents = sorted(parents, key=lambda r: ranked.index(r.id))[: request.top]
    ids = [r.id for r in parents]
    if len(set(ids)) != len(ids):
        raise CompError("a run is named twice among the blend's inputs")
    if request.method == "weights":
        negative = [ref for ref, w in request.weights.items() if w < 0]
        if negative or sum(request.weights.values()) <= 0:
            raise CompError("--weights must be non-negative and not all zero")
    if len(parents) < (1 if request.method == "weights" else 2):
        raise CompError(f"blending needs at least two finished runs, found {len(parents)}")
    return parents


def _checked_array(store: RunStore, record: RunRecord, name: str, shape) -> np.ndarray:
    array = store.array(record.id, name, mmap=True)
    if array.shape != shape:
        raise CompError(f"run {record.id}: {name}.npy has shape {array.shape}, expected {shape}")
    for start in range(0, len(array), CHUNK_ROWS * 4):
        block = np.asarray(array[start:start + CHUNK_ROWS * 4])
        if not np.isfinite(block).all() or (block < 0).any():
            raise CompError(f"run {record.id}: {name}.npy has NaN, infinite or negative values")
        if (block.sum(axis=1) <= 0).any():
            raise CompError(f"run {record.id}: {name}.npy has rows that are all zero")
    return array


def _normalised(proba: np.ndarray) -> np.ndarray:
    return proba / proba.sum(axis=1, keepdims=True)


def diversity(library: list[RunProbabilities], oofs: list[np.ndarray], y: np.ndarray) -> dict:
    """Which parents are worth blending: pairwise correlation of their OOF probabilities
    (on a row sample) and how often their top classes disagree."""
    n_sample = min(len(y), max(200, DIVERSITY_SAMPLE_CELLS // oofs[0].shape[1]))
    sample = np.sort(np.random.default_rng(0).choice(len(y), n_sample, replace=False))
    flat = np.stack([np.asarray(oof[sample], dtype=np.float32).ravel() for oof in oofs])
    correlation = np.corrcoef(flat)
    top = np.stack([run.top_index[:, 0] for run in library])
    disagreement = (top[:, None, :] != top[None, :, :]).mean(axis=2)
    return {"correlation": np.round(correlation, 4).tolist(),
            "disagreement": np.round(disagreement, 4).tolist()}


def explain_rows(record: RunRecord) -> list[dict[str, Any]]:
    """Per parent: weight, solo CV score, mean correlation and disagreement with the others."""
    details = record.details
    correlation = np.array(details["diversity"]["correlation"])
    disagreement = np.array(details["diversity"]["disagreement"])
    n = len(correlation)
    rows = []
    for m, parent in enumerate(details["parents"]):
        others = [j for j in range(n) if j != m]
        rows.append({**parent,
                     "mean_correlation": float(correlation[m, others].mean()) if others else None,
                     "mean_disagreement": float(disagreement[m, others].mean()) if others else None})
    return rows
