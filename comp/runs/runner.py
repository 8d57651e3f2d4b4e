"""The harness: trains a model family over the fixed folds and keeps the run store true.

It owns seeding, the fold loop, per-fold checkpoints, resume, scoring and assembly of
oof.npy / test.npy. Several processes may train folds of one run against a shared runs/:
a fold is trained by whoever takes its lock, and the process that lands the last fold
assembles the run. Everything a request can get wrong is checked before a run folder or
record exists.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comp import __version__, atomic
from comp.clock import now
from comp.errors import CompError
from comp.metrics import METRICS, score_all
from comp.models import create_model
from comp.models._base import FoldContext, Model, RunSetup
from comp.names import plain_name
from comp.progress import Reporter
from comp.project import Project
from comp.runs.distributed import Processes
from comp.runs.parents import StoredParents, check_run_matches
from comp.runs.store import FoldOutput, RunRecord, RunStore


@dataclass(frozen=True)
class RunRequest:
    model: str
    params: dict[str, Any]
    folds: str = "all"  # "all" or one fold number
    name: str | None = None
    run_id: str | None = None  # join or create a run with this id (distributed folds)
    seed: int | None = None  # default: the competition's cv.seed


def start_run(project: Project, request: RunRequest, reporter: Reporter) -> RunRecord:
    """A new run (or the run `request.run_id`, joined), trained on the requested folds."""
    model = create_model(request.model, request.params)  # bad --set fails before any work
    if request.name is not None:
        plain_name(request.name, "--name")
    if request.run_id is not None:
        plain_name(request.run_id, "--run-id")
    folds = project.folds
    wanted = parse_folds(request.folds, folds.n_folds)
    if request.seed is not None and request.seed < 0:
        raise CompError(f"--seed must be 0 or more, got {request.seed}")
    model.prepare(RunSetup(train=project.competition.train, parents=_parents(project),
                           weights=project.weights))
    processes = Processes.from_env()
    record_id = None
    if processes.is_main:
        record_id = _create_or_join(project, model, request).id
    record = project.store.load(processes.share(record_id))
    try:
        return FoldLoop(project, record, reporter, processes).train(wanted)
    finally:
        processes.close()


def resume_run(project: Project, ref: str, fold_spec: str, reporter: Reporter) -> RunRecord:
    """Train the folds of an existing run that are not done yet."""
    record = project.store.resolve(ref)
    if record.model in {"blend", "import"}:
        raise CompError(f"run {record.id} was not trained by comp run: nothing to resume")
    wanted = parse_folds(fold_spec, project.folds.n_folds)
    processes = Processes.from_env()
    try:
        return FoldLoop(project, record, reporter, processes).train(wanted)
    finally:
        processes.close()


def _parents(project: Project) -> StoredParents:
    return StoredParents(project.store, project.competition, project.folds)


def _create_or_join(project: Project, model: Model, request: RunRequest) -> RunRecord:
    """The run `request.run_id` when it exists with the same model and parameters (checked
    under its lock, so two processes starting it together agree), else a new run."""
    store, competition, folds = project.store, project.competition, project.folds
    params = dataclasses.asdict(model.params)
    name = request.name or request.model
    run_id = request.run_id or store.new_run_dir(name)
    record = RunRecord(
        id=run_id, name=name, model=request.model, params=params, status="running",
        created_at=now(), duration_s=0.0, folds_hash=folds.hash, data_hash=competition.data_hash,
        metric=competition.config.cv.metric, cv_score=None, fold_scores=[None] * folds.n_folds,
        classes=competition.classes, parents=model.parents(), n_folds=folds.n_folds,
        seed=competition.config.cv.seed if request.seed is None else request.seed,
        version=__version__, git_commit=_git_commit(project.workspace.root),
    )
    with store.locked(run_id):
        if not store.exists(run_id):
            store.save(record)
            return record
        existing = store.load(run_id)
    if (existing.model, existing.params, existing.seed) != (record.model, record.params, record.seed):
        raise CompError(f"run {existing.id} exists with model {existing.model} and other parameters "
                        "or seed: choose another --run-id or omit it")
    return existing


class FoldLoop:
    """Trains the folds of one run that are not done yet, one after another."""

    def __init__(self, project: Project, record: RunRecord, reporter: Reporter, processes: Processes):
        self.project, self.record, self.reporter, self.processes = project, record, reporter, processes
        self.store: RunStore = project.store

    def train(self, wanted: list[int]) -> RunRecord:
        store, record, processes = self.store, self.record, self.processes
        check_run_matches(record, self.project.competition, self.project.folds, finished=False)
        todo = [k for k in wanted if not store.fold_done(record.id, k)]
        if todo and processes.is_main:
            self._set_status("running", error=None)
        for k in self.reporter.track(todo, f"{record.id} folds"):
            lock = store.fold_lock(record.id, k) if processes.is_main else contextlib.nullcontext(True)
            with lock as taken:
                go = processes.share(bool(taken) and not store.fold_done(record.id, k))
                if not go:
                    if processes.is_main and not store.fold_done(record.id, k):
                        self.reporter.log(f"fold {k} of {record.id} is being trained by another "
                                          "process: skipped")
                    continue
                self._train_fold(k)
            if processes.is_main:
                self._assemble_if_complete()
        if processes.is_main:
            self._assemble_if_complete()
        processes.share(None)  # the others read run.json only once the main process wrote it
        return store.load(record.id)

    def _train_fold(self, k: int) -> None:
        record, processes, competition = self.record, self.processes, self.project.competition
        folds = self.project.folds
        seed = record.seed + k
        seed_everything(seed)
        model = create_model(record.model, record.params)
        ctx = fold_context(self.project, fold=k, seed=seed, workdir=self.store.fold_dir(record.id, k),
                           run_workdir=self.store.run_dir(record.id), reporter=self.reporter)
        train_rows, valid_rows = folds.training(k), folds.held_out(k)
        started = time.perf_counter()
        try:
            output = fit_predict(model, competition.train, train_rows, valid_rows, competition.test, ctx)
        except KeyboardInterrupt:
            if processes.is_main:
                self._set_status("failed", error=f"interrupted during fold {k}")
            raise
        except CompError as error:
            if processes.is_main:
                self._set_status("failed", error=f"fold {k}: {error}")
            raise
        except Exception as error:  # noqa: BLE001 - a model crash becomes one sentence + a file
            trace = ctx.workdir / "error.txt"
            message = f"fold {k} of run {record.id} failed: {type(error).__name__}: {error}"
            if processes.is_main:
                atomic.write_text(trace, traceback.format_exc())
                self._set_status("failed", error=message)
            raise CompError(f"{message} (traceback in {trace})") from None
        if not processes.is_main:
            return
        scores = score_all(competition.y[valid_rows], output.valid_proba)
        meta = {
            "fold": k,
            "score": scores[record.metric],
            "scores": scores,
            "duration_s": round(time.perf_counter() - started, 3),
            "n_train": len(train_rows),
            "n_valid": len(valid_rows),
            "seed": seed,
            "world_size": processes.world_size,
            "finished_at": now(),
            "stats": ctx.stats,
        }
        self.store.write_fold(record.id, k, output, meta)
        self.reporter.log(f"fold {k}: {record.metric} {meta['score']:.4f} ({meta['duration_s']:.1f}s)")

    def _assemble_if_complete(self) -> RunRecord:
        """Refresh run.json from the folds on disk; when all are done, write oof/test and score."""
        store, run_id, folds = self.store, self.record.id, self.project.folds
        competition = self.project.competition
        with store.locked(run_id):
            record = store.load(run_id)
            done = [k for k in range(folds.n_folds) if store.fold_done(run_id, k)]
            metas = {k: store.fold_meta(run_id, k) for k in done}
            record.folds_done = done
            record.fold_scores = [metas[k]["score"] if k in metas else None for k in range(folds.n_folds)]
            record.duration_s = round(sum(m["duration_s"] for m in metas.values()), 3)
            record.stats = _sum_stats(m.get("stats", {}) for m in metas.values())
            if len(done) == folds.n_folds and record.status != "done":
                store.assemble_run_arrays(run_id, [folds.held_out(k) for k in range(folds.n_folds)])
                _mark_done(record, competition.y, store.array(run_id, "oof"))
            store.save(record)
            return record

    def _set_status(self, status: str, error: str | None) -> None:
        with self.store.locked(self.record.id):
            record = self.store.load(self.record.id)
            if record.status != "done":
                record.status, record.error = status, error
                self.store.save(record)


def fold_context(project: Project, *, fold: int, seed: int, workdir: Path, run_workdir: Path,
                 reporter: Reporter) -> FoldContext:
    """What a model sees of the project while it trains one fold."""
    competition = project.competition
    return FoldContext(
        fold=fold, seed=seed, classes=competition.classes, class_names=competition.class_names,
        workdir=workdir, run_workdir=run_workdir, cache=project.workspace.cache,
        corpus=competition.corpus, data_hash=competition.data_hash, parents=_parents(project),
        reporter=reporter, user_root=project.workspace.root, weights=project.weights,
    )


def fit_predict(model: Model, train, train_rows: np.ndarray, valid_rows: np.ndarray, test,
                ctx: FoldContext) -> FoldOutput:
    """One fold: fit on `train_rows`, predict the held-out rows and the test table."""
    valid = train.take(valid_rows)
    model.fit(train=train.take(train_rows), valid=valid, ctx=ctx)
    n_classes = ctx.n_classes
    valid_proba, valid_emb = model.predict_with_embedding(valid)
    test_proba, test_emb = model.predict_with_embedding(test)
    return FoldOutput(
        valid_proba=checked_proba(valid_proba, len(valid_rows), n_classes),
        test_proba=checked_proba(test_proba, len(test), n_classes),
        valid_emb=_checked_embedding(valid_emb, len(valid_rows)),
        test_emb=_checked_embedding(test_emb, len(test)),
    )


def checked_proba(proba: np.ndarray, n_rows: int, n_classes: int) -> np.ndarray:
    """Rows normalised to sum to one, as float32; a model bug becomes a clear error."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (n_rows, n_classes):
        raise ValueError(f"expected probabilities of shape {(n_rows, n_classes)}, got {proba.shape}")
    if not np.isfinite(proba).all() or (proba < 0).any():
        raise ValueError("probabilities contain NaN, infinite or negative values")
    sums = proba.sum(axis=1, keepdims=True)
    if (sums <= 0).any():
        raise ValueError(f"{int((sums <= 0).sum())} rows of probabilities are all zero")
    return (proba / sums).astype(np.float32)


def _checked_embedding(embedding: np.ndarray | None, n_rows: int) -> np.ndarray | None:
    if embedding is None:
        return None
    embedding = np.asarray(embedding, dtype=np.float32)
    if embedding.ndim != 2 or len(embedding) != n_rows or not np.isfinite(embedding).all():
        raise ValueError(f"embeddings must be finite and of shape ({n_rows}, dim)")
    return embedding


def _mark_done(record: RunRecord, y: np.ndarray, oof: np.ndarray) -> None:
    record.scores = score_all(y, oof)
    record.cv_score = record.scores[record.metric]
    fold_scores = np.array(record.fold_scores, dtype=float)
    record.fold_mean, record.fold_std = float(fold_scores.mean()), float(fold_scores.std())
    record.status, record.error, record.finished_at = "done", None, now()


def store_precomputed_run(
    project: Project,
    *,
    name: str,
    model: str,
    params: dict[str, Any],
    oof: np.ndarray,
    test: np.ndarray,
    parents: list[str] | None = None,
    seed: int = 0,
    duration_s: float = 0.0,
    details: dict[str, Any] | None = None,
) -> RunRecord:
    """Store predictions made outside the fold loop (a blend, an import) as a finished run,
    laid out like any other: per-fold outputs first, then oof/test, then run.json. With
    run.json last, a process killed on the way leaves no run, not a run that never ends."""
    store, competition, folds = project.store, project.competition, project.folds
    metric = METRICS[competition.config.cv.metric]
    oof = checked_proba(oof, len(competition.y), competition.n_classes)
    test = checked_proba(test, len(competition.test_ids), competition.n_classes)
    run_id = store.new_run_dir(plain_name(name, "--name"))
    record = RunRecord(
        id=run_id, name=name, model=model, params=params, status="running", created_at=now(),
        duration_s=round(duration_s, 3), folds_hash=folds.hash, data_hash=competition.data_hash,
        metric=metric.name, cv_score=None, fold_scores=[None] * folds.n_folds,
        classes=competition.classes, parents=parents or [], n_folds=folds.n_folds, seed=seed,
        version=__version__, git_commit=_git_commit(project.workspace.root), details=details or {},
    )
    for k in range(folds.n_folds):
        held_out = folds.held_out(k)
        score = metric(competition.y[held_out], oof[held_out])
        record.fold_scores[k] = score
        store.write_fold(run_id, k, FoldOutput(valid_proba=oof[held_out], test_proba=test),
                         {"fold": k, "score": score, "n_valid": len(held_out)})
    store.write_run_arrays(run_id, oof=oof, test=test)
    record.folds_done = list(range(folds.n_folds))
    _mark_done(record, competition.y, oof)
    store.save(record)
    return record


def _sum_stats(stats_per_fold) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for stats in stats_per_fold:
        for key, value in stats.items():
            summable = isinstance(value, int | float) and not isinstance(value, bool)
            total[key] = total.get(key, 0) + value if summable else value
    return total


def parse_folds(fold_spec: str, n_folds: int) -> list[int]:
    if fold_spec == "all":
        return list(range(n_folds))
    try:
        fold = int(fold_spec)
    except ValueError:
        raise CompError(f"--fold must be 'all' or a fold number, got {fold_spec!r}") from None
    if not 0 <= fold < n_folds:
        raise CompError(f"--fold {fold} is out of range: the folds are 0..{n_folds - 1}")
    return [fold]


def seed_everything(seed: int) -> None:
    """Seed every RNG a model may use; torch only if a model already imported it."""
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - third-party libraries draw from the global RNG
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)


def _git_commit(root: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None

