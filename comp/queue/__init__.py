"""`comp queue plan.toml`: a list of runs with dependencies, trained in order, and a blend.

    [[run]]
    name = "bert"
    model = "bert"
    set = { epochs = 3 }

    [[run]]
    name = "boost"
    model = "boost"
    set = { from = "bert,image" }   # plan names become the ids of those runs
    after = ["bert"]                 # optional: `from` already implies it

    [blend]                          # optional: blends the plan's runs last
    method = "caruana"

Each run starts once the runs it depends on are done. Locally the runs train one after
another; on Ray the folds of every run whose parents are done are in flight together. A
run already done with the same model, parameters, seed, folds and data is not trained
again, an unfinished one is resumed; a run that fails is reported and only the runs that
depend on it are left out.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from comp.blend import BlendRequest, blend, recipe
from comp.data.config import ExecutorConfig
from comp.errors import CompError
from comp.models import create_model
from comp.names import plain_name
from comp.progress import Reporter
from comp.project import Project
from comp.runs.distributed import Processes
from comp.runs.runner import (
    Dispatch,
    FoldLoop,
    RunRequest,
    checked_request,
    create_or_join,
    open_executor,
)
from comp.runs.store import RunRecord
from comp.typed import build

RUN_KEYS = {"name", "model", "set", "after"}


@dataclass(frozen=True)
class PlannedRun:
    name: str
    model: str
    params: dict[str, Any]
    after: list[str]
    """Plan runs this one waits for: its `after` and the plan names in its `from`."""


@dataclass(frozen=True)
class Plan:
    runs: list[PlannedRun]
    blend: dict[str, Any] | None = None
    """[blend]'s keys (those of `comp blend`); `runs` defaults to every run of the plan."""


@dataclass
class Outcome:
    """What became of one planned run (or the blend)."""

    name: str
    state: str  # done | skipped (already done) | resumed | failed | not run | pruned
    run_id: str | None = None
    message: str = ""


def load_plan(path: str, user_root: Path) -> Plan:
    """Read and check a plan: every mistake is one sentence, before anything runs."""
    candidate = Path(path) if Path(path).is_absolute() else user_root / path
    try:
        raw = tomllib.loads(candidate.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise CompError(f"plan {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CompError(f"plan {path} is not valid TOML: {error}") from None
    unknown = set(raw) - {"run", "blend"}
    if unknown:
        raise CompError(f"plan {path}: unknown table {sorted(unknown)[0]!r} (a plan has [[run]] and [blend])")
    tables = raw.get("run")
    if not isinstance(tables, list) or not tables:
        raise CompError(f"plan {path}: no runs (add [[run]] tables with name and model)")
    runs: list[PlannedRun] = []
    for number, table in enumerate(tables, 1):
        runs.append(_planned_run(table, f"plan {path} run {number}", [r.name for r in runs]))
    blend_table = raw.get("blend")
    if blend_table is not None:
        if not isinstance(blend_table, Mapping):
            raise CompError(f"plan {path}: [blend] must be a table")
        names = [r.name for r in runs]
        refs = blend_table.get("runs", names)
        if not isinstance(refs, list) or any(ref not in names for ref in refs):
            raise CompError(f"plan {path} [blend] runs must name runs of the plan ({', '.join(names)})")
        build(BlendRequest, {**blend_table, "runs": refs}, f"plan {path} [blend]")
        blend_table = {**blend_table, "runs": refs}
    return Plan(runs, blend_table)


def _planned_run(table: Any, where: str, earlier: list[str]) -> PlannedRun:
    if not isinstance(table, Mapping):
        raise CompError(f"{where}: expected a table")
    unknown = set(table) - RUN_KEYS
    if unknown:
        raise CompError(f"{where}: unknown key {sorted(unknown)[0]!r} (known: {', '.join(sorted(RUN_KEYS))})")
    for key in ("name", "model"):
        if not isinstance(table.get(key), str):
            raise CompError(f"{where}: needs {key} = \"...\"")
    name = plain_name(table["name"], f"{where} name")
    if name in earlier:
        raise CompError(f"{where}: the name {name!r} is used twice")
    params = table.get("set", {})
    if not isinstance(params, Mapping):
        raise CompError(f"{where} ({name}): set must be a table, e.g. set = {{ C = 4 }}")
    create_model(table["model"], params)  # an unknown model or a bad parameter fails now
    after = table.get("after", [])
    if not isinstance(after, list) or any(not isinstance(a, str) for a in after):
        raise CompError(f"{where} ({name}): after must be a list of run names")
    for parent in after:
        if parent not in earlier:
            raise CompError(f"{where} ({name}): after names {parent!r}, which is not an earlier "
                            "run of the plan")
    from_plan = [ref for ref in _from_refs(params) if ref in earlier]
    return PlannedRun(name, table["model"], dict(params), list(dict.fromkeys([*after, *from_plan])))


def _from_refs(params: Mapping[str, Any]) -> list[str]:
    refs = params.get("from", [])
    return [r.strip() for r in refs.split(",") if r.strip()] if isinstance(refs, str) else list(refs)


class Queue:
    """Carries a plan out against one project: which runs are done, ready, waiting, failed."""

    def __init__(self, project: Project, plan: Plan, reporter: Reporter):
        self.project, self.plan, self.reporter = project, plan, reporter
        self.outcomes: dict[str, Outcome] = {}
        self.ids: dict[str, str] = {}  # plan name → run id, once known

    def request(self, run: PlannedRun) -> RunRequest:
        """The run's request with plan names in `from` replaced by those runs' ids."""
        params = dict(run.params)
        if "from" in params:
            params["from"] = [self.ids.get(ref, ref) for ref in _from_refs(params)]
        return RunRequest(model=run.model, params=params, name=run.name)

    def ready(self) -> list[PlannedRun]:
        """Runs not settled whose parents are all done; those whose parent failed are settled
        as not run."""
        found = []
        for run in self.plan.runs:
            if run.name in self.outcomes:
                continue
            failed = [p for p in run.after if p in self.outcomes and not self._succeeded(p)]
            if failed:
                self.outcomes[run.name] = Outcome(run.name, "not run",
                                                  message=f"its parent {failed[0]} did not finish")
            elif all(self._succeeded(p) for p in run.after):
                found.append(run)
        return found

    def _succeeded(self, name: str) -> bool:
        outcome = self.outcomes.get(name)
        return outcome is not None and outcome.state in {"done", "skipped", "resumed"}

    def existing(self, request: RunRequest) -> tuple[RunRecord | None, Any]:
        """A stored run this request would repeat (done first, else unfinished), and the
        prepared model; pruned trials and other folds or data never match."""
        project = self.project
        _, model = checked_request(project, request)
        params = _normalised(dataclasses.asdict(model.params))
        seed = project.config.cv.seed
        matches = [
            r for r in project.store.all()
            if r.model == request.model and r.seed == seed and r.folds_hash == project.folds.hash
            and r.data_hash == project.competition.data_hash and _normalised(r.params) == params
            and not r.details.get("pruned") and r.status in {"done", "running", "failed"}
        ]
        matches.sort(key=lambda r: (r.status != "done", r.created_at))
        return (matches[0] if matches else None), model

    def begin(self, run: PlannedRun) -> tuple[RunRecord, bool] | None:
        """The run to train for `run` (a new one, or an unfinished one to resume: the flag);
        None when a run just like it is done, which settles `run` as skipped."""
        request = self.request(run)
        existing, model = self.existing(request)
        if existing is not None and existing.status == "done":
            self.ids[run.name] = existing.id
            self.outcomes[run.name] = Outcome(run.name, "skipped", existing.id, "already done")
            return None
        return existing or create_or_join(self.project, model, request), existing is not None

    def settle(self, run: PlannedRun, record: RunRecord, resumed: bool) -> None:
        self.ids[run.name] = record.id
        if record.status == "done":
            state = "resumed" if resumed else "done"
            score = f"{record.metric} {record.cv_score:.4f}"
            self.outcomes[run.name] = Outcome(run.name, state, record.id, score)
        else:
            self.outcomes[run.name] = Outcome(run.name, "failed", record.id, record.error or "not finished")

    def fail(self, run: PlannedRun, error: CompError, run_id: str | None = None) -> None:
        self.outcomes[run.name] = Outcome(run.name, "failed", run_id, str(error))
        self.reporter.log(f"run {run.name} failed: {error}")


def run_plan(project: Project, plan: Plan, reporter: Reporter,
             executor: ExecutorConfig | None = None) -> list[Outcome]:
    """Every run of the plan, each after its parents, then the blend; one outcome each."""
    queue = Queue(project, plan, reporter)
    config = executor or project.config.executor
    with open_executor(config, Processes()) as pool:
        bar = reporter.task("plan", total=len(plan.runs))
        if pool is None:
            _run_here(queue, bar)
        else:
            _run_dispatched(queue, Dispatch(pool, reporter), bar)
        reporter.remove(bar)
    outcomes = [queue.outcomes[run.name] for run in plan.runs]
    if plan.blend is not None:
        outcomes.append(_blend(queue))
    return outcomes


def _run_here(queue: Queue, bar: int) -> None:
    while ready := queue.ready():
        for run in ready:
            _train_here(queue, run)
            queue.reporter.advance(bar, status=run.name)


def _train_here(queue: Queue, run: PlannedRun) -> None:
    project, reporter = queue.project, queue.reporter
    record = None
    try:
        begun = queue.begin(run)
        if begun is None:
            return
        record, resumed = begun
        record = FoldLoop(project, record, reporter).train(list(range(project.folds.n_folds)))
        queue.settle(run, record, resumed)
    except CompError as error:
        queue.fail(run, error, record.id if record else None)


def _run_dispatched(queue: Queue, dispatch: Dispatch, bar: int) -> None:
    """Folds of every ready run in flight together; a run that lands its last fold may
    release its children."""
    project = queue.project
    active: dict[str, tuple[PlannedRun, bool]] = {}  # run id → (planned run, resumed)
    while True:
        for run in queue.ready():
            if any(planned is run for planned, _ in active.values()):
                continue
            try:
                begun = queue.begin(run)
                if begun is None:
                    queue.reporter.advance(bar, status=run.name)
                    continue
                record, resumed = begun
                loop = FoldLoop(project, record, queue.reporter)
                todo = loop.start(list(range(project.folds.n_folds)))
            except CompError as error:
                queue.fail(run, error)
                queue.reporter.advance(bar, status=run.name)
                continue
            active[record.id] = (run, resumed)
            dispatch.add(loop, todo)
            if not dispatch.holds(loop):
                _finish(queue, loop, active, bar)
        if not dispatch.busy():
            if not queue.ready():
                return
            continue
        loop = dispatch.next()
        if loop is not None:
            _finish(queue, loop, active, bar)


def _finish(queue: Queue, loop: FoldLoop, active: dict, bar: int) -> None:
    run, resumed = active.pop(loop.record.id)
    if loop.error is not None:
        queue.fail(run, loop.error, loop.record.id)
    else:
        queue.settle(run, loop.assemble_if_complete(), resumed)
    queue.reporter.advance(bar, status=run.name)


def _blend(queue: Queue) -> Outcome:
    plan, project = queue.plan, queue.project
    options = dict(plan.blend or {})
    refs = options.pop("runs")
    name = options.get("name") or "plan_blend"
    missing = [ref for ref in refs if ref not in queue.ids or not queue._succeeded(ref)]
    if missing:
        return Outcome(name, "not run", message=f"{missing[0]} did not finish")
    ids = [queue.ids[ref] for ref in refs]
    if "weights" in options:
        options["weights"] = {queue.ids.get(k, k): v for k, v in options["weights"].items()}
    request = build(BlendRequest, {**options, "name": name, "runs": ids}, "plan [blend]")
    wanted = _normalised(recipe(request, ids))
    for record in project.store.all():
        if record.model == "blend" and record.name == name and record.status == "done" \
                and _normalised(record.params) == wanted:
            return Outcome(name, "skipped", record.id, "already done")
    try:
        record = blend(project, request)
    except CompError as error:
        return Outcome(name, "failed", message=str(error))
    return Outcome(name, "done", record.id, f"{record.metric} {record.cv_score:.4f}")


def describe(project: Project, plan: Plan, reporter: Reporter) -> list[dict[str, Any]]:
    """`--dry-run`: each planned run, what it waits for and whether it would be trained."""
    queue = Queue(project, plan, reporter)
    rows = []
    for run in plan.runs:
        would = "train"
        run_id = None
        if all(parent in queue.ids for parent in run.after):
            try:
                existing, _ = queue.existing(queue.request(run))
            except CompError as error:
                existing, would = None, f"refused: {error}"
            if existing is not None:
                done = existing.status == "done"
                would = "skip (done)" if done else f"resume ({len(existing.folds_done)} folds done)"
                run_id = existing.id
                if done:
                    queue.ids[run.name] = existing.id
        else:
            would = "train (after its parents)"
        rows.append({"name": run.name, "model": run.model, "set": run.params, "after": run.after,
                     "would": would, "run_id": run_id})
    if plan.blend is not None:
        rows.append({"name": plan.blend.get("name") or "plan_blend", "model": "blend",
                     "set": {k: v for k, v in plan.blend.items() if k not in {"runs", "name"}},
                     "after": plan.blend["runs"], "would": "blend last", "run_id": None})
    return rows


def _normalised(params: dict[str, Any]) -> Any:
    return json.loads(json.dumps(params, sort_keys=True, default=str))

