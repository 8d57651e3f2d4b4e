"""`comp tune`: search a family's parameters with Optuna on the fixed folds.

Each trial is an ordinary run (on the leaderboard, blendable, submittable), named and
tagged `<study>-t<number>`; its folds are reported to Optuna as steps, so a pruner stops a
clearly worse trial early and its partial run says "pruned". The search space is the one
the family declares next to its defaults (`param(..., tune=Tune(...))`), narrowed or widened
by a TOML file and pinned with `--set`; the defaults are the first trial. A study lives in
runs/studies/<study>.journal (Optuna's JournalStorage, no server) or any Optuna storage URL,
and several `comp tune` processes on one study share it without running a trial twice.
Optuna is imported only by this command.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomllib

from comp import atomic
from comp.data.config import ExecutorConfig
from comp.errors import CompError
from comp.metrics import METRICS
from comp.models import model_class
from comp.names import plain_name
from comp.progress import Reporter
from comp.project import Project
from comp.runs.distributed import Processes
from comp.runs.runner import RunRequest, open_executor, start_run
from comp.typed import Params, Tune, build, field_name, param, tuning_space

Pruner = Literal["wilcoxon", "median", "none"]


@dataclass(frozen=True)
class Dimension:
    """One tuned parameter: where it is searched, its type and the first trial's value."""

    tune: Tune
    kind: type
    first: Any


@dataclass(frozen=True)
class TuneRequest(Params):
    model: str
    trials: int = param(20, ge=1)
    """Trials this process runs (several processes on one study add theirs up)."""
    timeout: float | None = param(None, gt=0)
    """Seconds after which this process starts no new trial."""
    study: str | None = None
    """Default: the model's name."""
    space: str | None = None
    """A TOML file of ranges, one table per parameter (low, high, log, step | choices; default)."""
    pinned: dict[str, Any] = field(default_factory=dict)
    pruner: Pruner = "wilcoxon"
    storage: str | None = None
    """An Optuna storage URL (a database several machines share); default: the journal file."""
    seed: int = param(0, ge=0)

    @property
    def study_name(self) -> str:
        return plain_name(self.study or self.model, "--study")


@dataclass(frozen=True)
class TrialRow:
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING | WAITING
    value: float | None
    params: dict[str, Any]
    run_id: str | None
    folds: int  # folds reported


@dataclass(frozen=True)
class StudySummary:
    name: str
    model: str
    metric: str
    direction: str
    trials: list[TrialRow]
    importances: dict[str, float]

    @property
    def best(self) -> TrialRow | None:
        done = [t for t in self.trials if t.state == "COMPLETE" and t.value is not None]
        if not done:
            return None
        sign = 1 if self.direction == "maximize" else -1
        return max(done, key=lambda t: (sign * t.value, -t.number))


def search_space(request: TuneRequest, user_root: Path) -> dict[str, Dimension]:
    """The family's declared ranges, overridden by the --space file, minus pinned parameters;
    every bound and first value is checked by building the family's Params with it."""
    params_cls = model_class(request.model).Params
    hints = typing.get_type_hints(params_cls)
    declared = tuning_space(params_cls)
    firsts: dict[str, Any] = {}
    if request.space is not None:
        for name, table in _read_space(request.space, user_root).items():
            if not isinstance(table, Mapping):
                raise CompError(f"--space {name}: expected a table (low, high, log, step | choices; default)")
            options = dict(table)
            if "default" in options:
                firsts[name] = options.pop("default")
            if "choices" in options:
                options["choices"] = tuple(options["choices"])
            try:
                declared[name] = Tune(**options)
            except TypeError:
                raise CompError(f"--space {name}: the keys are low, high, log, step, choices and default, "
                                f"got {', '.join(table)}") from None
    pinned = build(params_cls, request.pinned, f"{request.model} parameter")
    space = {}
    for name, tune in declared.items():
        if name in request.pinned:
            continue
        attribute = field_name(name)
        if not hasattr(pinned, attribute):
            raise CompError(f"--space: {request.model} has no parameter {name!r}")
        problem = tune.problem()
        if problem:
            raise CompError(f"--space {name}: {problem}")
        kind = _number_kind(hints[attribute])
        first = firsts.get(name, getattr(pinned, attribute))
        for value in _corners(tune) + [first]:
            build(params_cls, {**request.pinned, name: value}, f"--space {name}")
        if not _within(tune, first):
            raise CompError(f"--space {name}: the first trial's value {first!r} lies outside the range")
        space[name] = Dimension(tune, kind if tune.choices is None else object, first)
    if not space:
        raise CompError(f"nothing to tune: {request.model} declares no ranges left unpinned (give --space)")
    return space


def _read_space(path: str, user_root: Path) -> dict[str, Any]:
    candidate = Path(path) if Path(path).is_absolute() else user_root / path
    try:
        return tomllib.loads(candidate.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise CompError(f"--space {path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise CompError(f"--space {path} is not valid TOML: {error}") from None


def _number_kind(hint: Any) -> type:
    options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    return int if int in options else float


def _corners(tune: Tune) -> list[Any]:
    return list(tune.choices) if tune.choices is not None else [tune.low, tune.high]


def _within(tune: Tune, value: Any) -> bool:
    if tune.choices is not None:
        return value in tune.choices
    return isinstance(value, int | float) and tune.low <= value <= tune.high


def tune(project: Project, request: TuneRequest, reporter: Reporter,
         executor: ExecutorConfig | None = None) -> StudySummary:
    """Run `request.trials` trials (or until `request.timeout`) of the study; its summary."""
    optuna = _optuna()
    space = search_space(request, project.workspace.root)
    project.folds  # noqa: B018 - no folds, no study: refused before anything is written
    name, metric = request.study_name, project.config.cv.metric
    config = executor or project.config.executor

    def objective(trial) -> float:
        params = {**request.pinned, **{key: _suggest(trial, key, d) for key, d in space.items()}}
        run_id = f"{name}-t{trial.number}"
        trial.set_user_attr("run_id", run_id)
        reporter.log(f"trial {trial.number}: {shown(params)}")

        def on_fold(record, fold: int, score: float) -> str | None:
            trial.report(score, step=fold)
            if trial.should_prune():
                return f"pruned by study {name} ({request.pruner}) after fold {fold}"
            return None

        details = {"study": name, "trial": trial.number}
        record = start_run(project, RunRequest(request.model, params, name=run_id, run_id=run_id,
                                               details=details), reporter, config, on_fold)
        if record.status != "done":
            raise optuna.TrialPruned(record.error)
        return record.cv_score

    # Connected once, before the study is written (a cluster too small is refused first);
    # each trial's run joins this connection instead of starting a private Ray cluster.
    with open_executor(config, Processes()):
        first = {key: d.first for key, d in space.items()}
        study, sampler_seed = _open_study(project, request, metric, first)
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=5)
        study.pruner = _pruner(optuna, request.pruner)
        study.optimize(objective, n_trials=request.trials, timeout=request.timeout, catch=(CompError,),
                       callbacks=[_log_trial(reporter)])
    return summarize(project, name, request.storage)


def _optuna():
    try:
        import optuna
    except ImportError:
        raise CompError("comp tune needs Optuna: pip install 'comp[scale]'") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _storage(project: Project, name: str, url: str | None, create: bool):
    """The study's storage: the journal file under runs/studies, or the URL given."""
    if url is not None:
        if url.startswith("sqlite:"):
            path = Path(url.removeprefix("sqlite:///"))
            path = path if path.is_absolute() else Path.cwd() / path
            if not path.resolve().is_relative_to(project.workspace.root.resolve()):
                raise CompError(f"--storage {url}: a SQLite file must lie inside the workspace")
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = _journal(project, name)
    if not path.exists() and not create:
        raise CompError(f"no study {name!r} in {path.parent} (`comp tune MODEL --study {name}` makes it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))


def _journal(project: Project, name: str) -> Path:
    return project.store.studies / f"{plain_name(name, '--study')}.journal"


def _open_study(project: Project, request: TuneRequest, metric: str, first: dict[str, Any]):
    """The study, created with its model and metric on first use, and this process's sampler
    seed. The first process enqueues the defaults as trial 0; each process gets its own seed,
    so processes sharing the study do not propose the same parameters."""
    optuna = _optuna()
    name = request.study_name
    direction = "maximize" if METRICS[metric].greater_is_better else "minimize"
    storage = _storage(project, name, request.storage, create=True)
    guard = project.store.studies / f".{name}.lock"
    with atomic.locked(guard):
        study = optuna.create_study(study_name=name, storage=storage, direction=direction,
                                    load_if_exists=True)
        attrs = study.user_attrs
        if attrs and (attrs.get("model"), attrs.get("metric")) != (request.model, metric):
            raise CompError(f"study {name} tunes {attrs.get('model')} on {attrs.get('metric')}, not "
                            f"{request.model} on {metric}: choose another --study")
        if not attrs:
            study.set_user_attr("model", request.model)
            study.set_user_attr("metric", metric)
        if not study.trials:
            study.enqueue_trial(first, skip_if_exists=True)
        processes = int(attrs.get("processes", 0))
        study.set_user_attr("processes", processes + 1)
    return study, request.seed + processes


def _pruner(optuna, kind: str):
    if kind == "wilcoxon":
        return optuna.pruners.WilcoxonPruner(p_threshold=0.1, n_startup_steps=2)
    if kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def _suggest(trial, name: str, dimension: Dimension) -> Any:
    tune = dimension.tune
    if tune.choices is not None:
        return trial.suggest_categorical(name, list(tune.choices))
    if dimension.kind is int:
        step = int(tune.step or 1)
        return trial.suggest_int(name, int(tune.low), int(tune.high), step=step, log=tune.log)
    return trial.suggest_float(name, tune.low, tune.high, step=tune.step, log=tune.log)


def shown(params: dict[str, Any]) -> str:
    """Parameters on one line, floats to four significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _log_trial(reporter: Reporter):
    def log(study, trial) -> None:
        value = "" if trial.value is None else f" {trial.value:.4f}"
        best = ""
        try:
            best = f" (best: trial {study.best_trial.number}, {study.best_value:.4f})"
        except ValueError:  # no finished trial yet
            pass
        reporter.log(f"trial {trial.number}: {trial.state.name.lower()}{value}{best}")
    return log


def summarize(project: Project, name: str, storage_url: str | None = None) -> StudySummary:
    """The study's trials, best first available as `.best`, and its parameter importances."""
    optuna = _optuna()
    try:
        study = optuna.load_study(study_name=name, storage=_storage(project, name, storage_url, create=False))
    except KeyError:
        raise CompError(f"no study {name!r} in that storage") from None
    rows = [
        TrialRow(number=t.number, state=t.state.name, value=t.value, params=dict(t.params),
                 run_id=t.user_attrs.get("run_id"), folds=len(t.intermediate_values))
        for t in study.trials
    ]
    return StudySummary(name=name, model=study.user_attrs.get("model", "?"),
                        metric=study.user_attrs.get("metric", "?"),
                        direction=study.direction.name.lower(), trials=rows,
                        importances=_importances(optuna, study))


def _importances(optuna, study) -> dict[str, float]:
    """fANOVA importances once two finished trials vary a parameter; else none."""
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(complete) < 2 or not any(t.params for t in complete):
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):  # every finished trial has the same parameters
        return {}


def studies(project: Project) -> list[str]:
    """The studies kept in the workspace's journal files."""
    folder = project.store.studies
    return sorted(p.stem for p in folder.glob("*.journal")) if folder.exists() else []


def summary_json(summary: StudySummary) -> dict[str, Any]:
    best = summary.best
    return {**dataclasses.asdict(summary), "best": dataclasses.asdict(best) if best else None}
