"""The competitor's side of submissions: leaderboard scores, the list, the final pick and
byte-for-byte reproduction, all from the provenance files `comp submit` writes.

A submission is submissions/<name>.<csv|parquet> with submissions/<name>.json beside it;
`comp public` adds the leaderboard scores to that JSON (keys `public_score`,
`private_score`, `public_recorded_at`), which `comp report` plots against CV.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from comp import atomic
from comp.clock import now
from comp.data.competition import read_frame
from comp.data.workspace import Workspace
from comp.errors import CompError
from comp.metrics import METRICS
from comp.names import is_plain, plain_name
from comp.project import Project
from comp.submissions.submit import encoder_versions, predictions_sha256, render, sha256

DEFAULT_TOLERANCE = 0.005


def list_submissions(project: Project) -> list[dict[str, Any]]:
    """Every submission whose file exists, oldest first, with its CV-public gap."""
    workspace = project.workspace
    listed = []
    for path in sorted(workspace.submissions.glob("*.json")):
        provenance = _read_provenance(path)
        if provenance is None or not (workspace.submissions / str(provenance.get("file"))).is_file():
            continue  # not a submission, or `comp submit` killed before the file was written
        cv, public = provenance.get("cv_score"), provenance.get("public_score")
        listed.append({
            "name": provenance.get("name", path.stem),
            "file": provenance.get("file"),
            "run_id": provenance.get("run_id"),
            "run_name": provenance.get("run_name"),
            "model": provenance.get("model"),
            "metric": provenance.get("metric"),
            "cv_score": cv,
            "public_score": public,
            "private_score": provenance.get("private_score"),
            "gap": None if cv is None or public is None else public - cv,
            "created_at": provenance.get("created_at"),
            "public_recorded_at": provenance.get("public_recorded_at"),
        })
    return sorted(listed, key=lambda s: str(s["created_at"]))


def record_scores(project: Project, name: str, public: str, private: str | None) -> dict[str, Any]:
    """Store a submission's public (and private) leaderboard scores in its provenance."""
    workspace = project.workspace
    load_provenance(workspace, name)  # an unknown or unsafe name fails before the lock file exists
    with atomic.locked(workspace.submissions / ".lock"):
        path, provenance = load_provenance(workspace, name)
        metric = provenance.get("metric", "")
        provenance["public_score"] = parse_score(public, metric, "public")
        if private is not None:
            provenance["private_score"] = parse_score(private, metric, "private")
        provenance["public_recorded_at"] = now()
        atomic.write_json(path, provenance)
    return provenance


def parse_score(text: str, metric: str, which: str) -> float:
    try:
        score = float(text)
    except ValueError:
        raise CompError(f"the {which} score must be a number, got {text!r}") from None
    # The metrics where greater is better (F1, accuracy) live in [0, 1]; log loss in [0, inf).
    upper = 1.0 if metric not in METRICS or METRICS[metric].greater_is_better else math.inf
    if not 0.0 <= score <= upper:
        raise CompError(f"the {which} score {text} is outside [0, {upper:g}] for {metric or 'the metric'}")
    return score


def load_provenance(workspace: Workspace, name: str) -> tuple[Path, dict[str, Any]]:
    """A submission's provenance; what it names (its file, its run) is checked to be a plain
    name too, so an edited provenance file cannot point comp outside the workspace."""
    plain_name(name, "a submission name")
    path = workspace.submissions / f"{name}.json"
    provenance = _read_provenance(path) if path.is_file() else None
    if provenance is None:
        raise CompError(f"unknown submission {name!r}: `comp submissions` lists them")
    for key in ("file", "run_id"):
        if not is_plain(provenance.get(key)):
            raise CompError(f"{path.name} is not a valid provenance file: its {key!r} is not a plain name")
    return path, provenance


def _read_provenance(path: Path) -> dict[str, Any] | None:
    try:
        provenance = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, OSError, UnicodeDecodeError):
        return None
    return provenance if isinstance(provenance, dict) and "run_id" in provenance else None


@dataclass(frozen=True)
class Pick:
    """The two final submissions: the best by CV and the most different strong one."""

    first: dict[str, Any]
    second: dict[str, Any] | None
    agreement: float | None  # share of test rows where the two predict the same class
    second_within_tolerance: bool
    tolerance: float
    candidates: list[dict[str, Any]]  # other runs' submissions, with their agreement
    reasons: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"first": self.first, "second": self.second, "agreement": self.agreement,
                "second_within_tolerance": self.second_within_tolerance,
                "tolerance": self.tolerance, "candidates": self.candidates, "reasons": self.reasons}


def pick(project: Project, tolerance: float = DEFAULT_TOLERANCE) -> Pick:
    """Propose the best submission by CV, and beside it the submission of another run,
    within `tolerance` of that CV, that agrees least with it on the test rows: two final
    submissions that fail differently hedge against a leaderboard shake-up."""
    if not tolerance >= 0:
        raise CompError(f"--tolerance must be a non-negative number, got {tolerance}")
    workspace = project.workspace
    scored = [s for s in list_submissions(project) if s["cv_score"] is not None]
    if not scored:
        raise CompError("no submission to pick from: `comp submit RUN` first")
    metric = METRICS[scored[0]["metric"]]
    sign = 1.0 if metric.greater_is_better else -1.0
    # best CV first; ties go to the better public score, then (a stable sort) to the newest
    ranked = sorted(scored, key=lambda s: str(s["created_at"]), reverse=True)
    ranked.sort(key=lambda s: (
        -sign * s["cv_score"],
        -sign * s["public_score"] if s["public_score"] is not None else math.inf,
    ))
    first = ranked[0]
    reasons = [_describe("first", first, "the best cross-validated score")]
    others = [s for s in ranked if s["run_id"] != first["run_id"]]
    if not others:
        reasons.append(f"no submission of another run than {first['run_id']}: "
                       "submit a different run to have a second pick")
        return Pick(first, None, None, False, tolerance, [], reasons)
    first_labels = _labels(workspace, first)
    candidates = [{**s, "agreement": _agreement(first_labels, _labels(workspace, s)),
                   "cv_behind": sign * (first["cv_score"] - s["cv_score"])} for s in others]
    strong = [c for c in candidates if c["cv_behind"] <= tolerance + 1e-12]
    if strong:
        second = min(strong, key=lambda c: (c["agreement"], c["cv_behind"]))
        reasons.append(_describe(
            "second", second,
            f"{second['cv_behind']:.4f} behind on CV (within {tolerance}) and the least agreement "
            f"with the first among {len(strong)} such submission(s): {second['agreement']:.1%} of "
            "test rows predicted alike"))
    else:
        second = candidates[0]
        reasons.append(_describe(
            "second", second,
            f"no other run is within {tolerance} of the best CV; this is the next best, "
            f"{second['cv_behind']:.4f} behind, agreeing on {second['agreement']:.1%} of test rows"))
    return Pick(first, second, second["agreement"], bool(strong), tolerance, candidates, reasons)


def _describe(which: str, submission: dict[str, Any], why: str) -> str:
    public = submission["public_score"]
    public_text = "no public score" if public is None else f"public {public:.4f}"
    return (f"{which}: {submission['name']} (run {submission['run_id']}, {submission['model']}, "
            f"cv {submission['cv_score']:.4f}, {public_text}): {why}")


def _labels(workspace: Workspace, submission: dict[str, Any]) -> dict[str, str]:
    """The submitted class of each test id, as text (CSV and parquet read alike)."""
    frame = read_frame(workspace.submissions / submission["file"], f"submission {submission['name']}")
    ids, predicted = frame.columns[0], frame.columns[-1]
    return dict(zip(frame[ids].cast(pl.String).to_list(), frame[predicted].cast(pl.String).to_list(),
                    strict=True))


def _agreement(a: dict[str, str], b: dict[str, str]) -> float:
    if a.keys() != b.keys():
        raise CompError("two submissions cover different test ids: were they made on other data?")
    return sum(a[key] == b[key] for key in a) / max(len(a), 1)


@dataclass(frozen=True)
class Reproduction:
    path: Path
    sha256: str
    restored: bool  # the file was missing and has been written again


def reproduce(project: Project, name: str) -> Reproduction:
    """Rebuild a submission from its run's stored test predictions, through the code path of
    `comp submit`, and check it is byte-identical to the recorded file; a missing file is
    written again. Every mismatch names what changed."""
    workspace, store = project.workspace, project.store
    _, provenance = load_provenance(workspace, name)
    run_id = provenance["run_id"]
    if not store.exists(run_id):
        raise CompError(f"submission {name} was made from run {run_id}, which is no longer in the store")
    competition = project.competition
    if competition.data_hash != provenance.get("data_hash"):
        raise CompError(f"the data files changed since submission {name} was made")
    recorded_predictions = provenance.get("test_sha256")
    if recorded_predictions and predictions_sha256(store, run_id) != recorded_predictions:
        raise CompError(f"run {run_id}'s test.npy changed since submission {name} was made")
    content, _ = render(competition, store, run_id, provenance.get("format", "csv"))
    digest = sha256(content)
    if digest != provenance["sha256"]:
        raise CompError(
            f"the rebuilt {name} differs from the recorded file (sha256 {digest[:12]} instead of "
            f"{provenance['sha256'][:12]}); encoded then with {provenance.get('versions')}, "
            f"now with {encoder_versions()}"
        )
    path = workspace.submissions / provenance["file"]
    if not path.exists():
        atomic.write_bytes(path, content)
        return Reproduction(path, digest, restored=True)
    if sha256(path.read_bytes()) != digest:
        raise CompError(
            f"{path} was changed after it was made: the rebuilt file matches its provenance, "
            f"the file on disk does not (delete it and `comp reproduce {name}` writes it again)"
        )
    return Reproduction(path, digest, restored=False)
