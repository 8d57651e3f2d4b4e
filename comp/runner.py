"""The harness: trains a model family over the fixed folds and keeps the run store true.

It owns seeding, the fold loop, per-fold checkpoints, resume, scoring and assembly of
oof.npy / test.npy. Several processes may train folds of one run against a shared runs/:
a fold is trained by whoever takes its lock, and the process that lands the last fold
assembles the run.
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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from comp import __version__, atomic
from comp.data import Competition
from comp.distributed import Processes
from comp.errors import CompError
from comp.folds import Folds, load_folds
from comp.metrics import METRICS, score_all
from comp.models import create_model
from comp.models.base import FoldContext, Model
from comp.progress import Reporter
from comp.store import FoldOutput, RunRecord, RunStore
from comp.workspace import Workspace


@dataclass(frozen=True)
class RunRequest:
    model: str
    params: dict[str, Any]
    folds: str = "all"  # "all" or one fold number
    name: str | None = None
    run_id: str | None = None  # join or create a run with this id (distributed folds)
    seed: int | None = None  # default: the competition's cv.seed


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def start_run(workspace: Workspace, request: RunRequest, reporter: Reporter) -> RunRecord:
    """A new run (or the run `request.run_id`, joined), trained on the requested folds."""
    competition = Competition.load(workspace)
    folds = load_folds(workspace, competition)
    model = create_model(request.model, request.params)  # bad --set fails before any work
    model.prepare(workspace, competition, folds)
    store = RunStore(workspace.runs)
    params = dataclasses.asdict(model.params)
    processes = Processes.from_env()
    record = None
    if request.run_id and store.exists(request.run_id):
        record = store.load(request.run_id)
        if (record.model, record.params) != (request.model, params):
            raise CompError(
                f"run {record.id} exists with model {record.model} and other parameters: "
                "choose another --run-id or omit it"
            )
    elif processes.is_main:
        record = _new_record(workspace, store, competition, folds, model, request, params)
    record = store.load(processes.share(record.id if processes.is_main else None))
    return train_folds(workspace, competition, folds, store, record, request.folds, reporter,
                       processes)


def resume_run(workspace: Workspace, ref: str, fold_spec: str, reporter: Reporter) -> RunRecord:
    """Train the folds of an existing run that are not done yet."""
    competition = Competition.load(workspace)
    folds = load_folds(workspace, competition)
    store = RunStore(workspace.runs)
    record = store.resolve(ref)
    if record.model in {"blend", "import"}:
        raise CompError(f"run {record.id} was not trained by comp run: nothing to resume")
    return train_folds(workspace, competition, folds, store, record, fold_spec, reporter,
                       Processes.from_env())


def _new_record(workspace, store, competition, folds, model, request, params) -> RunRecord:
    config = competition.config
    name = request.name or request.model
    if request.run_id:
        run_id = request.run_id
        store.run_dir(run_id).mkdir(parents=True, exist_ok=True)
    else:
        run_id = store.new_run_dir(_slug(name))
    record = RunRecord(
        id=run_id,
        name=name,
        model=request.model,
        params=params,
        status="running",
        created_at=now(),
        duration_s=0.0,
        folds_hash=folds.hash,
        data_hash=competition.data_hash,
        metric=config.cv.metric,
        cv_score=None,
        fold_scores=[None] * folds.n_folds,
        classes=competition.classes,
        parents=model.parents(),
        n_folds=folds.n_folds,
        seed=config.cv.seed if request.seed is None else request.seed,
        version=__version__,
        git_commit=_git_commit(workspace.root),
    )
    with store.locked(run_id):
        if not store.exists(run_id):  # another process may have created it meanwhile
            store.save(record)
    return store.load(run_id)


def train_folds(
    workspace: Workspace,
    competition: Competition,
    folds: Folds,
    store: RunStore,
    record: RunRecord,
    fold_spec: str,
    reporter: Reporter,
    processes: Processes | None = None,
) -> RunRecord:
    processes = processes or Processes()
    check_run_matches(record, competition, folds, finished=False)
    wanted = _parse_folds(fold_spec, folds.n_folds)
    todo = [k for k in wanted if not store.fold_done(record.id, k)]
    if todo and processes.is_main:
        _set_status(store, record.id, "running", error=None)
    for k in reporter.track(todo, f"{record.id} folds"):
        lock = store.fold_lock(record.id, k) if processes.is_main else contextlib.nullcontext(True)
        with lock as taken:
            go = processes.share(bool(taken) and not store.fold_done(record.id, k))
            if not go:
                if processes.is_main and not store.fold_done(record.id, k):
                    reporter.log(f"fold {k} of {record.id} is being trained by another process: skipped")
                continue
            _train_fold(workspace, competition, folds, store, record, k, reporter, processes)
        if processes.is_main:
            _assemble_if_complete(store, record.id, competition, folds)
    if processes.is_main:
        record = _assemble_if_complete(store, record.id, competition, folds)
    processes.share(None)  # the others read run.json only once the main process wrote it
    return store.load(record.id)


def _train_fold(workspace, competition, folds, store, record, k, reporter, processes) -> None:
    seed = record.seed + k
    seed_everything(seed)
    model = create_model(record.model, record.params)
    ctx = FoldContext(
        fold=k,
        seed=seed,
        classes=competition.classes,
        class_names=competition.class_names,
        workdir=store.fold_dir(record.id, k),
        workspace=workspace,
        store=store,
        reporter=reporter,
        corpus=np.concatenate([competition.train.text, competition.test.text]),
        data_hash=competition.data_hash,
    )
    train_rows, valid_rows = folds.training(k), folds.held_out(k)
    started = time.perf_counter()
    try:
        output = _fit_predict(model, competition, train_rows, valid_rows, ctx)
    except KeyboardInterrupt:
        if processes.is_main:
            _set_status(store, record.id, "failed", error=f"interrupted during fold {k}")
        raise
    except CompError as error:
        if processes.is_main:
            _set_status(store, record.id, "failed", error=f"fold {k}: {error}")
        raise
    except Exception as error:  # noqa: BLE001 - a model crash becomes one sentence + a file
        trace = ctx.workdir / "error.txt"
        message = f"fold {k} of run {record.id} failed: {type(error).__name__}: {error}"
        if processes.is_main:
            atomic.write_text(trace, traceback.format_exc())
            _set_status(store, record.id, "failed", error=message)
        raise CompError(f"{message} (traceback in {trace})") from None
    if not processes.is_main:
        return
    y_valid = competition.y[valid_rows]
    scores = score_all(y_valid, output.valid_proba)
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
    store.write_fold(record.id, k, output, meta)
    reporter.log(f"fold {k}: {record.metric} {meta['score']:.4f} ({meta['duration_s']:.1f}s)")


def _fit_predict(model: Model, competition, train_rows, valid_rows, ctx) -> FoldOutput:
    train, test = competition.train, competition.test
    valid = train.take(valid_rows)
    model.fit(train.take(train_rows), valid, ctx)
    n_classes = competition.n_classes
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


def _assemble_if_complete(store: RunStore, run_id: str, competition, folds: Folds) -> RunRecord:
    """Refresh run.json from the folds on disk; when all are done, write oof/test and score."""
    with store.locked(run_id):
        record = store.load(run_id)
        done = [k for k in range(folds.n_folds) if store.fold_done(run_id, k)]
        metas = {k: store.fold_meta(run_id, k) for k in done}
        record.folds_done = done
        record.fold_scores = [metas[k]["score"] if k in metas else None for k in range(folds.n_folds)]
        record.duration_s = round(sum(m["duration_s"] for m in metas.values()), 3)
        record.stats = _sum_stats(m.get("stats", {}) for m in metas.values())
        if len(done) == folds.n_folds and record.status != "done":
            _write_run_arrays(store, run_id, folds, len(competition.test_ids))
            _mark_done(record, competition.y, store.array(run_id, "oof"))
        store.save(record)
        return record


def _mark_done(record: RunRecord, y: np.ndarray, oof: np.ndarray) -> None:
    record.scores = score_all(y, oof)
    record.cv_score = record.scores[record.metric]
    fold_scores = np.array(record.fold_scores, dtype=float)
    record.fold_mean, record.fold_std = float(fold_scores.mean()), float(fold_scores.std())
    record.status, record.error, record.finished_at = "done", None, now()


def store_precomputed_run(
    workspace: Workspace,
    competition: Competition,
    folds: Folds,
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
    store = RunStore(workspace.runs)
    metric = METRICS[competition.config.cv.metric]
    oof = checked_proba(oof, len(competition.y), competition.n_classes)
    test = checked_proba(test, len(competition.test_ids), competition.n_classes)
    run_id = store.new_run_dir(_slug(name))
    record = RunRecord(
        id=run_id, name=name, model=model, params=params, status="running", created_at=now(),
        duration_s=round(duration_s, 3), folds_hash=folds.hash, data_hash=competition.data_hash,
        metric=metric.name, cv_score=None, fold_scores=[None] * folds.n_folds,
        classes=competition.classes, parents=parents or [], n_folds=folds.n_folds, seed=seed,
        version=__version__, git_commit=_git_commit(workspace.root), details=details or {},
    )
    for k in range(folds.n_folds):
        held_out = folds.held_out(k)
        score = metric(competition.y[held_out], oof[held_out])
        record.fold_scores[k] = score
        store.write_fold(run_id, k, FoldOutput(valid_proba=oof[held_out], test_proba=test),
                         {"fold": k, "score": score, "n_valid": len(held_out)})
    atomic.save_npy(store.run_dir(run_id) / "oof.npy", oof)
    atomic.save_npy(store.run_dir(run_id) / "test.npy", test)
    record.folds_done = list(range(folds.n_folds))
    _mark_done(record, competition.y, oof)
    store.save(record)
    return record


def _write_run_arrays(store: RunStore, run_id: str, folds: Folds, n_test: int) -> None:
    for fold_name, run_name in (("valid", "oof"), ("emb_valid", "emb_oof")):
        parts = [store.fold_array(run_id, k, fold_name) for k in range(folds.n_folds)]
        if any(p is None for p in parts):
            continue
        assembled = np.zeros((len(folds.fold), parts[0].shape[1]), dtype=np.float32)
        for k, part in enumerate(parts):
            assembled[folds.held_out(k)] = part
        atomic.save_npy(store.run_dir(run_id) / f"{run_name}.npy", assembled)
    for name in ("test", "emb_test"):
        parts = [store.fold_array(run_id, k, name) for k in range(folds.n_folds)]
        if all(p is not None for p in parts):
            mean = np.mean(np.stack(parts), axis=0, dtype=np.float64).astype(np.float32)
            atomic.save_npy(store.run_dir(run_id) / f"{name}.npy", mean)


def _sum_stats(stats_per_fold) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for stats in stats_per_fold:
        for key, value in stats.items():
            summable = isinstance(value, int | float) and not isinstance(value, bool)
            total[key] = total.get(key, 0) + value if summable else value
    return total


def check_run_matches(
    record: RunRecord, competition: Competition, folds: Folds | None, finished: bool
) -> None:
    """Refuse, naming the run, one made on other folds (unless `folds` is None), other data
    or other classes, or (with `finished`) one not done."""
    if finished and record.status != "done":
        raise CompError(f"run {record.id} is not finished (status: {record.status})")
    if folds is not None and record.folds_hash != folds.hash:
        raise CompError(
            f"run {record.id} was made on other folds ({record.folds_hash}, now {folds.hash})"
        )
    if record.data_hash != competition.data_hash:
        raise CompError(f"run {record.id} was made on other data (the data files changed)")
    if record.classes != competition.classes:
        raise CompError(f"run {record.id} has other classes than the current train file")
    if record.metric not in METRICS:
        raise CompError(f"run {record.id} uses an unknown metric {record.metric!r}")


def _set_status(store: RunStore, run_id: str, status: str, error: str | None) -> None:
    with store.locked(run_id):
        record = store.load(run_id)
        if record.status != "done":
            record.status, record.error = status, error
            store.save(record)


def _parse_folds(fold_spec: str, n_folds: int) -> list[int]:
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


def _slug(name: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return cleaned.strip("-") or "run"
