"""`comp report`: one self-contained HTML page about the runs, blends and submissions.

It reads the run store, the submissions' provenance and the train labels, and writes
reports/index.html (or reports/<run_id>.html for one run in depth) atomically. Figures are
inline PNGs, so the file opens offline and can be mailed as it is. Everything that grows
with the number of runs is capped (`ReportLimits`), so 500 runs render in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from comp import atomic
from comp.clock import now
from comp.errors import CompError
from comp.names import inside
from comp.project import Project
from comp.report import plots
from comp.report.analysis import (
    ClassQuality,
    Labels,
    class_quality,
    flatten_params,
    oof_correlation,
)
from comp.report.html import Section, fmt, heading, image, is_number, note, page, table
from comp.runs.leaderboard import Entry, leaderboard
from comp.runs.store import RunRecord
from comp.submissions.tracking import list_submissions


@dataclass(frozen=True)
class ReportLimits:
    spread_runs: int = 30  # runs in the fold-spread chart and the per-fold table
    correlation_runs: int = 12  # best runs in the OOF correlation matrix
    confused_pairs: int = 15
    blends: int = 10  # best blends shown in depth


def build_report(project: Project, run: str | None = None, out: Path | None = None,
                 limits: ReportLimits | None = None) -> Path:
    """Write the report (the whole workspace, or one run by id or name); return its path."""
    workspace = project.workspace
    record = project.store.resolve(run) if run is not None else None  # a bad --run fails first
    default = "index.html" if record is None else f"{record.id}.html"
    path = inside(workspace.root, out, "--out") if out else workspace.root / "reports" / default
    if path.is_dir():
        raise CompError(f"--out {path} is a folder: give a file name such as {path / default}")
    report = _Report(project, limits or ReportLimits())
    if record is None:
        title, sections = f"comp report: {report.name}", report.index()
    else:
        title, sections = f"run {record.id}", report.run_page(record)
    subtitle = f"workspace {workspace.root}, generated {now()}"
    atomic.write_text(path, page(title, subtitle, sections))
    return path


class _Report:
    def __init__(self, project: Project, limits: ReportLimits):
        self.project = project
        self.limits = limits
        self.name = project.config.name
        self.store = project.store
        self.entries = leaderboard(project)
        self.labels, self.labels_problem = _load_labels(project)

    # ---- the index page -------------------------------------------------------------
    def index(self) -> list[Section]:
        done = [e.record for e in self.entries if e.state == "done"]
        class_f1, confusion = self._class_sections(done[0] if done else None, "done")
        return [
            Section("leaderboard", "Leaderboard", self._leaderboard()),
            Section("folds", "CV and per-fold scores", self._folds(done)),
            Section("classes", "Per-class F1 of the best run", class_f1),
            Section("confusion", "Most confused categories", confusion),
            Section("correlation", "Correlation of OOF predictions", self._correlation(done)),
            Section("blends", "Blends", self._blends(done)),
            Section("submissions", "Submissions", self._submissions()),
            Section("studies", "Tuning studies", self._studies()),
        ]

    def _studies(self) -> str:
        from comp.tune import studies

        names = studies(self.project)
        if not names:
            return note("No tuning study yet: `comp tune MODEL --trials N` starts one.")
        from comp.tune import summarize

        body = ""
        for name in names:
            summary = summarize(self.project, name)
            best = summary.best
            counts = {s: sum(t.state == s for t in summary.trials) for s in ("COMPLETE", "PRUNED", "FAIL")}
            body += heading(f"{name} ({summary.model}, {summary.direction} {summary.metric})")
            found = f"trial {best.number} ({fmt(best.value)}, run {best.run_id})" if best else "none yet"
            body += note(f"{len(summary.trials)} trials: {counts['COMPLETE']} finished, "
                         f"{counts['PRUNED']} pruned, {counts['FAIL']} failed; best: {found}")
            # a pruned trial's value is its last fold's score (Optuna keeps the last report)
            trials = summary.trials
            figure = plots.study_history([t.number for t in trials], [t.value for t in trials],
                                         [t.state == "PRUNED" for t in trials], summary.metric,
                                         summary.direction == "maximize")
            body += image(plots.data_uri(figure), f"trials of study {name}")
            if summary.importances:
                figure = plots.importances(list(summary.importances), list(summary.importances.values()))
                body += image(plots.data_uri(figure), f"parameter importances of study {name}")
            if best:
                body += table(("parameter", "best value"), sorted(best.params.items()))
        return body

    def _leaderboard(self) -> str:
        if not self.entries:
            return note("No runs yet: `comp run MODEL` trains the first one.")
        rows = [
            (rank, r.id, r.name, r.model, r.cv_score, r.fold_mean, r.fold_std,
             f"{r.duration_s:.1f}", e.state, _parents_text(r.parents))
            for rank, (e, r) in enumerate(((e, e.record) for e in self.entries), 1)
        ]
        metric = self.entries[0].record.metric
        body = table(("#", "run", "name", "model", f"cv {metric}", "fold mean", "fold std",
                      "time (s)", "state", "parents"), rows, (e.state.split()[0] for e in self.entries))
        scored = [e for e in self.entries if any(s is not None for s in e.record.fold_scores)]
        shown = scored[: self.limits.spread_runs]
        if shown:
            figure = plots.fold_spread([_label(e.record) for e in shown],
                                       [e.record.fold_scores for e in shown],
                                       [e.record.cv_score for e in shown], metric)
            body += heading("Fold spread") + image(plots.data_uri(figure), "fold spread per run")
            body += _capped_note(len(scored), len(shown), "runs with fold scores")
        return body

    def _folds(self, done: list[RunRecord]) -> str:
        if not done:
            return note("No finished run on the current folds and data yet.")
        shown = done[: self.limits.spread_runs]
        n_folds = max(len(r.fold_scores) for r in shown)
        rows = [(r.id, r.cv_score, *(r.fold_scores + [None] * (n_folds - len(r.fold_scores))))
                for r in shown]
        figure = plots.cv_against_folds([r.cv_score for r in shown], [r.fold_scores for r in shown],
                                        shown[0].metric)
        return (table(("run", "cv", *(f"fold {k}" for k in range(n_folds))), rows)
                + image(plots.data_uri(figure), "fold scores against CV")
                + _capped_note(len(done), len(shown), "finished runs"))

    def _correlation(self, done: list[RunRecord]) -> str:
        if self.labels is None:
            return note(self.labels_problem)
        # Blends are left out, as `comp blend` leaves them out of its default inputs.
        models = [r for r in done if r.model != "blend"]
        shown = models[: self.limits.correlation_runs]
        if len(shown) < 2:
            return note("Needs at least two finished model runs (not blends) on the current folds and data.")
        found = oof_correlation(self.store, shown, self.labels)
        correlation = np.array(found["correlation"])
        disagreement = np.array(found["disagreement"])
        others = ~np.eye(len(shown), dtype=bool)
        rows = [(r.id, r.model, r.cv_score, float(correlation[m][others[m]].mean()),
                 float(disagreement[m][others[m]].mean())) for m, r in enumerate(shown)]
        figure = plots.correlation([_label(r) for r in shown], correlation)
        return (note("Runs with a good score and low correlation to the others are the ones "
                     "worth blending (Pearson correlation of OOF probabilities on a row sample).")
                + image(plots.data_uri(figure), "correlation of OOF predictions")
                + table(("run", "model", "cv", "mean correlation", "top-class disagreement"), rows)
                + _capped_note(len(models), len(shown), "finished model runs"))

    def _blends(self, done: list[RunRecord]) -> str:
        blends = [r for r in done if r.model == "blend"]
        if not blends:
            return note("No blends yet: `comp blend` makes one.")
        shown = blends[: self.limits.blends]
        parts = [heading(f"{r.id} ({r.details.get('method', '')})") + _blend_body(r) for r in shown]
        return "".join(parts) + _capped_note(len(blends), len(shown), "blends")

    def _submissions(self) -> str:
        found = list_submissions(self.project)
        if not found:
            return note("No submissions yet: `comp submit` writes one.")
        rows = [(s["created_at"], s["name"], s["run_id"], s["model"], s["cv_score"], s["public_score"],
                 s["private_score"]) for s in found]
        body = table(("created", "name", "run", "model", "cv", "public", "private"), rows)
        scored = [s for s in found if is_number(s["public_score"]) and is_number(s["cv_score"])]
        if len(scored) >= 2:
            figure = plots.cv_against_public(
                np.array([s["cv_score"] for s in scored]), np.array([s["public_score"] for s in scored]),
                [str(s["name"]) for s in scored], str(scored[0]["metric"] or ""))
            body += image(plots.data_uri(figure), "public score against CV")
        else:
            body += note("CV against public score appears once two submissions have a public score.")
        return body

    # ---- one run in depth -----------------------------------------------------------
    def run_page(self, record: RunRecord) -> list[Section]:
        entry = next((e for e in self.entries if e.record.id == record.id), Entry(record, record.status))
        class_f1, confusion = self._class_sections(record, entry.state)
        sections = [
            Section("run", "Run", self._overview(entry)),
            Section("params", "Parameters", _key_values(flatten_params(record.params), "parameters")),
            Section("folds", "Folds", self._fold_details(record)),
            Section("stats", "Statistics", _key_values(flatten_params(record.stats), "statistics")),
            Section("classes", "Per-class F1", class_f1),
            Section("confusion", "Most confused categories", confusion),
            Section("parents", "Parents", self._parents(record)),
        ]
        if record.model == "blend" and record.details:
            sections.append(Section("blend", "Blend", _blend_body(record)))
        return sections

    def _overview(self, entry: Entry) -> str:
        r = entry.record
        facts = {
            "id": r.id, "name": r.name, "model": r.model, "state": entry.state, "metric": r.metric,
            "cv score": fmt(r.cv_score), "fold mean ± std": f"{fmt(r.fold_mean)} ± {fmt(r.fold_std)}",
            **{f"cv {name}": fmt(value) for name, value in r.scores.items()},
            "duration (s)": fmt(r.duration_s, 1), "created": r.created_at, "finished": r.finished_at,
            "folds hash": r.folds_hash, "data hash": r.data_hash, "seed": r.seed,
            "comp version": r.version, "git commit": r.git_commit, "error": r.error,
        }
        return _key_values({k: fmt(v) for k, v in facts.items() if v not in (None, "")}, "facts")

    def _fold_details(self, record: RunRecord) -> str:
        rows = []
        for k in range(record.n_folds or len(record.fold_scores)):
            if not self.store.fold_done(record.id, k):
                rows.append((k, "in progress" if self.store.fold_in_progress(record.id, k) else "missing"))
                continue
            meta = self.store.fold_meta(record.id, k)
            rows.append((k, "done", meta.get("score"), meta.get("duration_s"), meta.get("n_train"),
                         meta.get("n_valid"), meta.get("world_size"), meta.get("finished_at")))
        body = table(("fold", "state", record.metric, "time (s)", "train rows", "held-out rows",
                      "processes", "finished"), rows)
        if any(s is not None for s in record.fold_scores):
            figure = plots.fold_bars(record.fold_scores, record.cv_score, record.metric)
            body += image(plots.data_uri(figure), "score per fold")
        return body

    def _parents(self, record: RunRecord) -> str:
        if not record.parents:
            return note("This run has no parents: it was trained, not blended.")
        rows = []
        for parent in record.parents:
            found = self.store.exists(parent)
            known = self.store.load(parent) if found else None
            rows.append((parent, known.model if known else "(deleted)",
                         known.cv_score if known else None, known.status if known else ""))
        return table(("run", "model", "cv", "status"), rows)

    # ---- sections about one run's OOF predictions -----------------------------------
    def _class_sections(self, record: RunRecord | None, state: str) -> tuple[str, str]:
        """The per-class F1 and the confusion sections, from one pass over the OOF argmax."""
        if self.labels is None:
            return note(self.labels_problem), note(self.labels_problem)
        if record is None or state != "done":
            why = (f"The run is {state}: only a finished run on the current folds and data has "
                   "OOF predictions to judge." if record else
                   "No finished run on the current folds and data yet.")
            return note(why), note(why)
        quality = class_quality(self.store, record, self.labels, self.limits.confused_pairs)
        return self._class_f1(record, quality), self._confused(record, quality)

    def _class_f1(self, record: RunRecord, quality: ClassQuality) -> str:
        f1 = quality.counts.f1()
        support = quality.counts.support
        present = support > 0
        figure = plots.class_f1(support, f1)
        return (note(f"Run {record.id}: {int((f1[present] == 0).sum())} of {int(present.sum())} "
                     f"classes never predicted right; median class F1 {np.median(f1[present]):.3f}.")
                + image(plots.data_uri(figure), "per-class F1 against class size"))

    def _confused(self, record: RunRecord, quality: ClassQuality) -> str:
        if not quality.confused:
            return note(f"Run {record.id} makes no mistakes on its OOF rows.")
        support = quality.counts.support
        rows = [(self.labels.describe(t), self.labels.describe(p), count, count / support[t])
                for t, p, count in quality.confused]
        return (note(f"Run {record.id}: OOF rows of a true class predicted as another.")
                + table(("true category", "predicted as", "rows", "share of the true class"), rows))


def _load_labels(project: Project) -> tuple[Labels | None, str]:
    """The labels, or why there are none: the report still shows what needs no labels."""
    try:
        competition = project.competition
    except CompError as error:
        return None, f"Needs the train labels, which could not be read: {error}"
    return Labels(competition.y, competition.classes, competition.class_names), ""


def _blend_body(record: RunRecord) -> str:
    details = record.details
    parents: list[dict[str, Any]] = details.get("parents", [])
    has_drop_one = any("drop_one" in p for p in parents)
    rows = [(p.get("id"), p.get("model"), p.get("cv_score"), p.get("weight"),
             *((p.get("drop_one"),) if has_drop_one else ())) for p in parents]
    headers = ("parent", "model", "solo cv", "weight", *(("cv without it",) if has_drop_one else ()))
    body = note(f"Nested {record.metric} {fmt(record.cv_score)}, in-sample "
                f"{fmt(details.get('in_sample_score'))}, objective {details.get('objective', '')}.")
    body += table(headers, rows)
    weighted = [p for p in parents if is_number(p.get("weight"))]
    trajectory = details.get("full_fit", {}).get("trajectory")
    if weighted:
        figure = plots.blend([str(p.get("id")) for p in weighted],
                             [p["weight"] for p in weighted], trajectory, details.get("objective", ""))
        body += image(plots.data_uri(figure), f"weights of {record.id}")
    return body


def _key_values(values: dict[str, str], what: str) -> str:
    if not values:
        return note(f"No {what} recorded.")
    return table(("key", "value"), values.items())


def _label(record: RunRecord) -> str:
    return record.id if record.name in record.id else f"{record.name} ({record.id})"


def _parents_text(parents: list[str]) -> str:
    return ", ".join(parents) if len(parents) <= 3 else f"{', '.join(parents[:3])} … ({len(parents)})"


def _capped_note(total: int, shown: int, what: str) -> str:
    return note(f"Showing the best {shown} of {total} {what}.") if total > shown else ""
