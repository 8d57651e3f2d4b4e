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
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comp import __version__, atomic
from comp.clock import now
from comp.data.config import ExecutorConfig
from comp.errors import CompError
from comp.metrics import METRICS, score_all
from comp.models import create_model
from comp.models._base import FoldContext, Model, RunSetup
from comp.names import plain_name
from comp.progress import Reporter
from comp.project import Project
from comp.runs.distributed import Processes
from comp.runs.fold import FoldData, FoldFailure, FoldJob, FoldResult, checked_proba, train_fold
from comp.runs.parents import StoredParents, check_run_matches
from comp.runs.ray_executor import RayExecutor, WorkerLost
from comp.runs.store import STUDIES, FoldOutput, RunRecord, RunStore


@dataclass(frozen=True)
class RunRequest:
    model: str
    params: dict[str, Any]
    folds: str = "all"  # "all" or one fold number
    name: str | None = None
    run_id: str | None = None  # join or create a run with this id (distributed folds)
    seed: int | None = None  # default: the competition's cv.seed
    details: dict[str, Any] = dataclasses.field(default_factory=dict)  # e.g. a tuning trial's study


FoldCallback = Callable[[RunRecord, int, float], "str | None"]
"""Called as each fold lands with the run, the fold and its score; a reason to stop (a
pruned tuning trial) stops the run: the folds not landed are not trained, and run.json
says "failed" with the reason as its error and as details["pruned"], never "done"."""


def start_run(project: Project, request: RunRequest, reporter: Reporter,
              executor: ExecutorConfig | None = None, on_fold: FoldCallback | None = None) -> RunRecord:
    """A new run (or the run `request.run_id`, joined), trained on the requested folds, here
    or on the executor (default: comp.toml's [executor])."""
    wanted, model = checked_request(project, request)
    processes = Processes.from_env()
    with open_executor(executor or project.config.executor, processes) as pool:
        record_id = None
        if processes.is_main:
            record_id = create_or_join(project, model, request).id
        record = project.store.load(processes.share(record_id))
        try:
            return FoldLoop(project, record, reporter, processes, on_fold).train(wanted, pool)
        finally:
            processes.close()


def checked_request(project: Project, request: RunRequest) -> tuple[list[int], Model]:
    """The folds and the prepared model of a request; everything a request can get wrong
    fails here, before a run exists."""
    model = create_model(request.model, request.params)  # bad --set fails before any work
    if request.name is not None:
        plain_name(request.name, "--name")
    if request.run_id is not None:
        plain_name(request.run_id, "--run-id")
        if request.run_id == STUDIES:
            raise CompError(f"--run-id {STUDIES} is where comp tune keeps its studies: choose another")
    wanted = parse_folds(request.folds, project.folds.n_folds)
    if request.seed is not None and request.seed < 0:
        raise CompError(f"--seed must be 0 or more, got {request.seed}")
    model.prepare(RunSetup(train=project.competition.train, parents=_parents(project),
                           weights=project.weights))
    return wanted, model


def resume_run(project: Project, ref: str, fold_spec: str, reporter: Reporter,
               executor: ExecutorConfig | None = None) -> RunRecord:
    """Train the folds of an existing run that are not done yet."""
    record = project.store.resolve(ref)
    if record.model in {"blend", "import"}:
        raise CompError(f"run {record.id} was not trained by comp run: nothing to resume")
    wanted = parse_folds(fold_spec, project.folds.n_folds)
    processes = Processes.from_env()
    with open_executor(executor or project.config.executor, processes) as pool:
        try:
            return FoldLoop(project, record, reporter, processes).train(wanted, pool)
        finally:
            processes.close()


@contextlib.contextmanager
def open_executor(config: ExecutorConfig, processes: Processes) -> Iterator[RayExecutor | None]:
    """None for `local` (folds train in this process); a connected Ray executor, its
    resources checked, for `ray`."""
    if config.kind == "local":
        yield None
        return
    if processes.world_size > 1:
        raise CompError("--executor ray dispatches folds from one driver: do not start it under "
                        "accelerate launch or torchrun (ask for GPUs with --gpus-per-fold)")
    from comp.runs.ray_executor import RayExecutor

    executor = RayExecutor(config)
    try:
        yield executor
    finally:
        executor.close()


def _parents(project: Project) -> StoredParents:
    return StoredParents(project.store, project.competition, project.folds)


def create_or_join(project: Project, model: Model, request: RunRequest) -> RunRecord:
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
        version=__version__, git_commit=_git_commit(project.workspace.root), details=request.details,
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
    """Trains the folds of one run that are not done yet: here, one after another, or on
    an executor, all at once; either way this process alone writes what they made."""

    def __init__(self, project: Project, record: RunRecord, reporter: Reporter,
                 processes: Processes | None = None, on_fold: FoldCallback | None = None):
        self.project, self.record, self.reporter = project, record, reporter
        self.processes = processes or Processes()
        self.on_fold = on_fold
        self.store: RunStore = project.store
        self.stopped: str | None = None  # why on_fold stopped the run
        self.error: CompError | None = None  # a fold failed
        self._claims = contextlib.ExitStack()

    def train(self, wanted: list[int], executor: RayExecutor | None = None) -> RunRecord:
        store, record, processes = self.store, self.record, self.processes
        todo = self.start(wanted)
        if executor is None:
            self._train_here(todo)
        else:
            dispatch = Dispatch(executor, self.reporter)
            dispatch.add(self, todo)
            dispatch.run()
            if self.error is not None:
                raise self.error
        if processes.is_main:
            self.assemble_if_complete()
            if self.stopped:
                self.mark("failed", error=self.stopped, pruned=self.stopped)
        processes.share(None)  # the others read run.json only once the main process wrote it
        return store.load(record.id)

    def start(self, wanted: list[int]) -> list[int]:
        """The wanted folds not done yet; the run is marked running if there are any."""
        check_run_matches(self.record, self.project.competition, self.project.folds, finished=False)
        todo = [k for k in wanted if not self.store.fold_done(self.record.id, k)]
        if todo and self.processes.is_main:
            self.mark("running", error=None)
        return todo

    def _train_here(self, todo: list[int]) -> None:
        store, record, processes = self.store, self.record, self.processes
        data = fold_data(self.project)
        for k in self.reporter.track(todo, f"{record.id} folds"):
            lock = store.fold_lock(record.id, k) if processes.is_main else contextlib.nullcontext(True)
            with lock as taken:
                go = processes.share(bool(taken) and not store.fold_done(record.id, k))
                if not go:
                    if processes.is_main:
                        self._say_skipped(k)
                    continue
                try:
                    outcome = train_fold(self.job(k), data, self.reporter)
                except KeyboardInterrupt:
                    if processes.is_main:
                        self.mark("failed", error=f"interrupted during fold {k}")
                    raise
                if not processes.is_main:
                    if isinstance(outcome, FoldFailure):
                        raise CompError(outcome.message)
                    continue
                self.land(outcome)
            if self.error is not None:
                raise self.error
            if self.stopped:
                return
            self.assemble_if_complete()

    def claim(self, todo: list[int]) -> list[int]:
        """Take the locks of the folds in `todo` that no other process is training; they are
        held until the fold lands (or the run stops)."""
        claimed = []
        for k in todo:
            taken = self._claims.enter_context(self.store.fold_lock(self.record.id, k))
            if taken and not self.store.fold_done(self.record.id, k):
                claimed.append(k)
            else:
                self._say_skipped(k)
        return claimed

    def _say_skipped(self, k: int) -> None:
        if not self.store.fold_done(self.record.id, k):
            self.reporter.log(f"fold {k} of {self.record.id} is being trained by another process: skipped")

    def release(self) -> None:
        self._claims.close()

    def job(self, k: int) -> FoldJob:
        record = self.record
        return fold_job(self.project, run_id=record.id, model=record.model, params=record.params, fold=k,
                        seed=record.seed + k, workdir=self.store.fold_dir(record.id, k),
                        run_workdir=self.store.run_dir(record.id))

    def land(self, outcome: FoldResult | FoldFailure, retries: int = 0) -> None:
        """Write a fold's outputs (or record its failure in run.json, with the traceback in
        the fold's error.txt); then ask `on_fold` whether to go on."""
        record, competition = self.record, self.project.competition
        k = outcome.fold
        if isinstance(outcome, FoldFailure):
            message = outcome.message
            if outcome.traceback is not None:
                trace = self.store.fold_dir(record.id, k) / "error.txt"
                atomic.write_text(trace, outcome.traceback)
                message = f"{message} (traceback in {trace})"
            self.mark("failed", error=outcome.message)
            self.error = CompError(message)
            return
        valid_rows = self.project.folds.held_out(k)
        scores = score_all(competition.y[valid_rows], outcome.output.valid_proba)
        stats = dict(outcome.stats)
        if retries:
            stats["worker_retries"] = retries
        meta = {
            "fold": k,
            "score": scores[record.metric],
            "scores": scores,
            "duration_s": outcome.duration_s,
            "n_train": len(self.project.folds.training(k)),
            "n_valid": len(valid_rows),
            "seed": record.seed + k,
            "world_size": self.processes.world_size,
            "finished_at": now(),
            "stats": stats,
            **({"placement": outcome.placement} if outcome.placement else {}),
        }
        self.store.write_fold(record.id, k, outcome.output, meta)
        self.reporter.log(f"fold {k}: {record.metric} {meta['score']:.4f} ({meta['duration_s']:.1f}s)")
        if self.on_fold is not None:
            self.stopped = self.on_fold(record, k, meta["score"])

    def assemble_if_complete(self) -> RunRecord:
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

    def mark(self, status: str, error: str | None, **details: Any) -> None:
        """Set the run's status (unless it is done) and merge `details` into run.json."""
        with self.store.locked(self.record.id):
            record = self.store.load(self.record.id)
            if record.status != "done":
                record.status, record.error = status, error
                record.details.update(details)
                self.store.save(record)


class Dispatch:
    """The folds of one or more runs in flight on an executor at once. Each result is
    landed by its run's FoldLoop as it arrives, so a driver killed midway leaves every fold
    that came back; a fold whose worker died is sent again, at most `max_retries` times."""

    def __init__(self, executor: RayExecutor, reporter: Reporter):
        self.executor, self.reporter = executor, reporter
        self._inflight: dict[Any, tuple[FoldLoop, int]] = {}
        self._data: dict[str, Any] = {}  # run id → its FoldData in the object store
        self._retries: dict[tuple[str, int], int] = {}
        self._bars: dict[str, int] = {}

    def add(self, loop: FoldLoop, todo: list[int]) -> None:
        """Claim and submit the folds in `todo` of `loop`'s run."""
        run_id = loop.record.id
        claimed = loop.claim(todo)
        if not claimed:
            loop.release()
            return
        data = fold_data(loop.project)
        parents = data.parents.snapshot(loop.record.parents, loop.project.folds.n_folds)
        self._data[run_id] = self.executor.ship(dataclasses.replace(data, parents=parents))
        self._bars[run_id] = self.reporter.task(f"{run_id} folds", total=len(claimed))
        for k in claimed:
            self._submit(loop, k)

    def _submit(self, loop: FoldLoop, k: int) -> None:
        handle = self.executor.submit(loop.job(k), self._data[loop.record.id])
        self._inflight[handle] = (loop, k)

    def busy(self) -> bool:
        return bool(self._inflight)

    def holds(self, loop: FoldLoop) -> bool:
        """Whether folds of `loop`'s run are in flight."""
        return any(other is loop for other, _ in self._inflight.values())

    def run(self) -> None:
        while self.busy():
            self.next()

    def next(self) -> FoldLoop | None:
        """Wait for one fold and land it; the run, when that was the last of its folds in
        flight (it is complete, failed or stopped), else None."""
        try:
            (handle, *_) = self.executor.wait(list(self._inflight))
            loop, k = self._inflight.pop(handle)
            outcome = self.executor.outcome(handle, k)
        except KeyboardInterrupt:  # ^C or SIGTERM: what landed stays, the rest is marked
            self._interrupted()
            raise
        key = (loop.record.id, k)
        if isinstance(outcome, WorkerLost):
            retries = self._retries.get(key, 0)
            if retries < self.executor.config.max_retries and loop.error is None and not loop.stopped:
                self._retries[key] = retries + 1
                self.reporter.log(f"fold {k} of {loop.record.id}: worker lost ({outcome.reason}), "
                                  f"training it again ({retries + 1}/{self.executor.config.max_retries})")
                self._submit(loop, k)
                return None
            outcome = FoldFailure(k, f"fold {k}: its worker died {retries + 1} times ({outcome.reason})")
        if loop.error is None and not loop.stopped:
            loop.land(outcome, retries=self._retries.get(key, 0))
            self.reporter.advance(self._bars[loop.record.id])
            if loop.error is None and not loop.stopped:
                loop.assemble_if_complete()
        if loop.error is not None or loop.stopped:
            self._cancel(loop)
        if self.holds(loop):
            return None
        loop.release()
        self.reporter.remove(self._bars.pop(loop.record.id))
        self._data.pop(loop.record.id, None)
        return loop

    def _interrupted(self) -> None:
        for handle, (loop, k) in list(self._inflight.items()):
            self.executor.cancel(handle)
            loop.mark("failed", error=f"interrupted during fold {k}")
            loop.release()
        self._inflight.clear()

    def _cancel(self, loop: FoldLoop) -> None:
        for handle, (other, _) in list(self._inflight.items()):
            if other is loop:
                self.executor.cancel(handle)


def fold_context(project: Project, *, fold: int, seed: int, workdir: Path, run_workdir: Path,
                 reporter: Reporter) -> FoldContext:
    """What a model sees of the project while it trains one fold."""
    job = fold_job(project, run_id="", model="", params={}, fold=fold, seed=seed, workdir=workdir,
                   run_workdir=run_workdir)
    return job.context(fold_data(project), reporter)


def fold_job(project: Project, *, run_id: str, model: str, params: dict[str, Any], fold: int, seed: int,
             workdir: Path, run_workdir: Path) -> FoldJob:
    """Fold `fold` of the project's folds as a job, scratch files in `workdir`/`run_workdir`."""
    competition, folds = project.competition, project.folds
    return FoldJob(
        run_id=run_id, model=model, params=params, fold=fold, seed=seed,
        train_rows=folds.training(fold), valid_rows=folds.held_out(fold), classes=competition.classes,
        class_names=competition.class_names, data_hash=competition.data_hash, workdir=workdir,
        run_workdir=run_workdir, cache=project.workspace.cache, user_root=project.workspace.root,
        weights=project.weights,
    )


def fold_data(project: Project) -> FoldData:
    """What every fold of a run on this project reads; parents straight from the store."""
    competition = project.competition
    return FoldData(train=competition.train, test=competition.test, corpus=competition.corpus,
                    parents=_parents(project))


def _mark_done(record: RunRecord, y: np.ndarray, oof: np.ndarray) -> None:
    record.scores = score_all(y, oof)
    record.cv_score = record.scores[record.metric]
    fold_scores = np.array(record.fold_scores, dtype=float)
    record.fold_mean, record.fold_std = float(fold_scores.mean()), float(fold_scores.std())
    record.status, record.error, record.finished_at = "done", None, now()
    record.details.pop("pruned", None)  # a pruned trial resumed to the end is a finished run


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


def _git_commit(root: Path) -> str | None:
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None

