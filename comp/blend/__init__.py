"""`comp blend`: ensembles of finished runs, scored as honestly as a single model.

Every blend is fitted nested on the fixed folds: for fold k the weights (or meta-model)
are fitted on the other folds' OOF rows and predict fold k's rows. Those predictions are
the blend's oof.npy and give its cv_score, so a blend competes with models on equal
terms and can itself be blended. The in-sample score (fitted and scored on all rows,
optimistic) is reported beside it. A blend is a run: model `blend`, parents its inputs.

Two optional measurements refit the whole nested scheme: `drop_one` refits without each
parent in turn (what the blend loses without it: near zero for a parent it does not
need), and a `calibrate` blend is also fitted uncalibrated, so its effect is a number.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from comp.blend.calibration import make_calibration
from comp.blend.library import CHUNK_ROWS, RunProbabilities, prepare
from comp.blend.methods import Blender, Caruana, Fixed, Optimized, Stack, WithOffsets
from comp.data.folds import Folds
from comp.errors import CompError
from comp.metrics import METRICS
from comp.names import plain_name
from comp.project import Project
from comp.runs.leaderboard import leaderboard
from comp.runs.parents import check_run_matches
from comp.runs.runner import store_precomputed_run
from comp.runs.store import RunRecord, RunStore
from comp.typed import Params, param

METHODS = ("caruana", "optimize", "stack", "weights")
TOP_K = 32
DIVERSITY_SAMPLE_CELLS = 500_000  # rows × classes per run in the correlation sample


@dataclass(frozen=True)
class BlendRequest(Params):
    """What `comp blend` was asked for, validated when built: a mistake fails before any work."""

    runs: list[str] = field(default_factory=list)  # empty: every finished non-blend run
    top: int | None = param(None, ge=1)
    method: str = "caruana"
    metric: str | None = None  # what the method optimises; default: the competition metric
    iterations: int = param(50, ge=1)
    init: int = param(0, ge=0)
    bags: int = param(1, ge=1)
    seed: int = param(0, ge=0)
    weights: dict[str, float] = field(default_factory=dict)
    temperature: bool = False
    meta: str = "logit"
    offsets: bool = False
    calibrate: str = "none"  # none | temperature | rank, per parent before blending
    drop_one: bool = False  # refit without each parent to measure what it adds
    name: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.method not in METHODS:
            raise CompError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        if self.metric is not None and self.metric not in METRICS:
            raise CompError(f"--metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        make_calibration(self.calibrate)
        if any(not math.isfinite(w) or w < 0 for w in self.weights.values()):
            raise CompError("--weights must be finite and non-negative")
        if self.name is not None:
            plain_name(self.name, "--name")


def blend(project: Project, request: BlendRequest) -> RunRecord:
    competition, folds, store = project.competition, project.folds, project.store
    parents = _choose_parents(project, request)
    for parent in parents:
        check_run_matches(parent, competition, folds, finished=True)
    objective = METRICS[request.metric or competition.config.cv.metric]
    started = time.perf_counter()
    y = competition.y
    oofs = [_checked_array(store, r, "oof", (len(y), competition.n_classes)) for r in parents]
    tests = [_checked_array(store, r, "test", (len(competition.test_ids), competition.n_classes))
             for r in parents]
    inputs = Inputs(oofs, tests, [prepare(oof, y, TOP_K) for oof in oofs])
    read_s = time.perf_counter() - started

    def nested(members: list[int], calibrate: str = request.calibrate) -> NestedFit:
        chosen = [parents[m] for m in members]
        return _nested(lambda: _make_blender(request, objective, chosen), inputs.subset(members),
                       y, folds, calibrate)

    metric = METRICS[competition.config.cv.metric]

    def score(proba: np.ndarray) -> float:
        return metric(y, _normalised(proba))

    everyone = list(range(len(parents)))
    fit = nested(everyone)
    nested_score = score(fit.oof)
    details = {
        "method": request.method,
        "objective": objective.name,
        "in_sample_score": score(fit.in_sample),
        "nested_without_offsets": None if fit.oof_without_offsets is None else score(
            fit.oof_without_offsets),
        "calibrate": request.calibrate,
        "nested_without_calibration": None if request.calibrate == "none" else score(
            nested(everyone, calibrate="none").oof),
        "full_fit": fit.full.describe(),
        "fold_fits": fit.fold_fits,
        "parents": [
            {"id": r.id, "name": r.name, "model": r.model, "cv_score": r.cv_score,
             "weight": _weight(fit.full, m),
             "calibration": fit.calibrations[m] if fit.calibrations else None}
            for m, r in enumerate(parents)
        ],
        "diversity": diversity(inputs.library, oofs, y),
    }
    if request.drop_one:
        sign = 1.0 if metric.greater_is_better else -1.0
        for m, parent in enumerate(details["parents"]):
            others = [j for j in everyone if j != m]
            if _can_blend(request, [parents[j] for j in others]):
                without = score(nested(others).oof)
                parent["drop_one"] = {"score_without": without, "loss": sign * (nested_score - without)}
            else:
                parent["drop_one"] = None
    fit_s = time.perf_counter() - started - read_s
    details["timing"] = {"read_s": round(read_s, 3), "fit_s": round(fit_s, 3)}
    return store_precomputed_run(
        project, name=request.name or f"blend-{request.method}",
        model="blend", params=recipe(request, [r.id for r in parents]),
        oof=fit.oof, test=fit.test, parents=[r.id for r in parents],
        seed=request.seed, duration_s=time.perf_counter() - started, details=details,
    )


@dataclass(frozen=True)
class Inputs:
    """The parents' OOF and test probabilities, and the OOF laid out for fast blending."""

    oofs: list[np.ndarray]
    tests: list[np.ndarray]
    library: list[RunProbabilities]

    def subset(self, members: list[int]) -> Inputs:
        return Inputs(*([values[m] for m in members] for values in (self.oofs, self.tests, self.library)))

    def calibrated(self, kind: str, y: np.ndarray, rows: np.ndarray) -> tuple[Inputs, list[dict]]:
        """Each parent calibrated by a fit on `rows` of its OOF (unchanged for `none`)."""
        if kind == "none":
            return self, []
        fits = [make_calibration(kind).fit(oof, y, rows) for oof in self.oofs]
        oofs = [c.apply(oof) for c, oof in zip(fits, self.oofs, strict=True)]
        tests = [c.apply(test) for c, test in zip(fits, self.tests, strict=True)]
        return Inputs(oofs, tests, [prepare(oof, y, TOP_K) for oof in oofs]), [c.describe() for c in fits]


@dataclass(frozen=True)
class NestedFit:
    oof: np.ndarray  # each fold's rows predicted by the blend fitted on the other folds
    oof_without_offsets: np.ndarray | None
    test: np.ndarray
    in_sample: np.ndarray  # every row predicted by the blend fitted on all rows
    full: Blender
    fold_fits: list[dict[str, Any]]
    calibrations: list[dict[str, Any]]  # per parent, fitted on all rows


def _nested(make: Callable[[], Blender], inputs: Inputs, y: np.ndarray, folds: Folds,
            calibrate: str) -> NestedFit:
    """Fit on the other folds, predict each fold; calibration is fitted inside the same split."""
    oof = np.zeros(inputs.oofs[0].shape, dtype=np.float32)
    oof_without_offsets = None
    fold_tests, fold_fits = [], []
    for k in range(folds.n_folds):
        held_out, training = folds.held_out(k), folds.training(k)
        fold_inputs, _ = inputs.calibrated(calibrate, y, training)
        blender = make()
        blender.fit(fold_inputs.library, y, training)
        parts = [oof_m[held_out] for oof_m in fold_inputs.oofs]
        if isinstance(blender, WithOffsets):
            if oof_without_offsets is None:
                oof_without_offsets = np.zeros_like(oof)
            oof_without_offsets[held_out] = blender.inner.predict(parts)
            oof[held_out] = blender.with_offsets(oof_without_offsets[held_out])
        else:
            oof[held_out] = blender.predict(parts)
        fold_fits.append(blender.describe())
        if not blender.test_from_full_fit:
            fold_tests.append(blender.predict(fold_inputs.tests))
    full_inputs, calibrations = inputs.calibrated(calibrate, y, np.arange(len(y)))
    full = make()
    full.fit(full_inputs.library, y, np.arange(len(y)))
    test = full.predict(full_inputs.tests) if full.test_from_full_fit else np.mean(fold_tests, axis=0)
    return NestedFit(oof, oof_without_offsets, test, full.predict(full_inputs.oofs), full, fold_fits,
                     calibrations)


def _can_blend(request: BlendRequest, parents: list[RunRecord]) -> bool:
    """Whether the request's method still has something to blend with these parents alone."""
    return request.method != "weights" or sum(
        request.weights.get(r.id, request.weights.get(r.name, 0.0)) for r in parents) > 0


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


def recipe(request: BlendRequest, run_ids: list[str]) -> dict[str, Any]:
    """A blend's run.json params: what makes it, with its inputs by id."""
    # drop_one measures the blend, it does not change it: not part of the recipe
    params = {k: v for k, v in vars(request).items() if k not in {"name", "runs", "drop_one"}}
    return {**params, "runs": run_ids}


def _choose_parents(project: Project, request: BlendRequest) -> list[RunRecord]:
    if request.method == "weights":
        if not request.weights:
            raise CompError("--method weights needs --weights RUN_A=0.7,RUN_B=0.3")
        refs = list(request.weights)
    else:
        refs = request.runs
    if refs:
        parents = [project.store.resolve(ref) for ref in refs]
    else:
        parents = [e.record for e in leaderboard(project)
                   if e.state == "done" and e.record.model != "blend"]
    if request.top:
        ranked = [e.record.id for e in leaderboard(project)]
        parents = sorted(parents, key=lambda r: ranked.index(r.id))[: request.top]
    ids = [r.id for r in parents]
    if len(set(ids)) != len(ids):
        raise CompError("a run is named twice among the blend's inputs")
    if request.method == "weights" and sum(request.weights.values()) <= 0:
        raise CompError("--weights must not be all zero")
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
