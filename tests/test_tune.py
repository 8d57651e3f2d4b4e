"""`comp tune` on the fast tfidf family: the defaults come first, a bad start is beaten,
a hopeless trial is pruned before its last fold and says so, processes share a study
without repeating a trial, and `--show` and the report name the best."""

from __future__ import annotations

import json
import re

import pytest

from comp.errors import CompError
from comp.models import available_models, model_class
from comp.progress import Reporter
from comp.project import Project
from comp.report import build_report
from comp.tune import TuneRequest, tune
from comp.typed import build, tuning_space
from tests.conftest import comp, one_clear_error, start_comp

WORDS_ONLY = ("--set", "char_max=0")  # a faster tfidf: no character n-grams


def show(workspace, study: str) -> dict:
    return json.loads(comp("tune", "--show", study, "--json", workspace=workspace).stdout)


def test_a_bad_first_trial_is_beaten_and_every_trial_is_a_run(tiny):
    (tiny / "space.toml").write_text("[C]\nlow = 0.001\nhigh = 100\nlog = true\ndefault = 0.001\n")
    comp("tune", "tfidf", "--trials", "4", "--space", "space.toml", *WORDS_ONLY, "--pruner", "none",
         workspace=tiny)
    study = show(tiny, "tfidf")
    first = study["trials"][0]
    assert first["params"]["C"] == pytest.approx(0.001)  # the given default is trial 0
    assert [t["state"] for t in study["trials"]] == ["COMPLETE"] * 4
    assert study["best"]["number"] != 0 and study["best"]["value"] > first["value"] + 0.05
    board = {e["id"]: e for e in json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)}
    for trial in study["trials"]:
        entry = board[trial["run_id"]]
        assert entry["state"] == "done" and entry["cv_score"] == pytest.approx(trial["value"])
    record = Project.open(tiny).store.load(study["best"]["run_id"])
    assert record.details == {"study": "tfidf", "trial": study["best"]["number"]}
    assert record.params["char_max"] == 0  # pinned with --set


def test_a_hopeless_trial_is_pruned_before_its_last_fold_and_marked_so(tiny):
    comp("tune", "tfidf", "--trials", "1", *WORDS_ONLY, workspace=tiny)  # trial 0: the defaults
    comp("tune", "tfidf", "--trials", "1", *WORDS_ONLY, "--set", "C=0.0001", workspace=tiny)
    study = show(tiny, "tfidf")
    hopeless = study["trials"][1]
    assert hopeless["state"] == "PRUNED" and 2 <= hopeless["folds"] < 5
    board = {e["id"]: e for e in json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)}
    entry = board[hopeless["run_id"]]
    assert entry["state"] == f"pruned {hopeless['folds']}/5" and entry["cv_score"] is None
    assert entry["status"] == "failed"  # never "done": blend and submit refuse it
    record = Project.open(tiny).store.load(hopeless["run_id"])
    assert "pruned by study tfidf (wilcoxon)" in record.details["pruned"]
    blend = comp("blend", study["trials"][0]["run_id"], hopeless["run_id"], workspace=tiny,
                 check=False)
    one_clear_error(blend, "is not finished")


def test_two_processes_share_a_study_and_never_run_the_same_trial(tiny):
    args = ("--threads", "1", "tune", "tfidf", "--study", "shared", "--trials", "3", *WORDS_ONLY,
            "--pruner", "none")
    processes = [start_comp(*args, workspace=tiny, capture=True) for _ in range(2)]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    trials = show(tiny, "shared")["trials"]
    assert sorted(t["number"] for t in trials) == list(range(6))
    assert len({t["run_id"] for t in trials}) == 6
    assert len({json.dumps(t["params"], sort_keys=True) for t in trials}) == 6  # own seeds: no repeats
    defaults = {"word_ngrams": 2, "min_df": 2, "C": 10.0}
    assert sum(t["params"] == defaults for t in trials) == 1  # the defaults are enqueued once
    store = Project.open(tiny).store
    for trial in trials:
        record = store.load(trial["run_id"])
        assert record.status == "done" and record.folds_done == list(range(5))


def test_show_and_the_report_name_the_best_trial_and_gc_keeps_the_study(tiny):
    comp("tune", "tfidf", "--trials", "3", *WORDS_ONLY, "--pruner", "none", workspace=tiny)
    study = show(tiny, "tfidf")
    complete = [t for t in study["trials"] if t["state"] == "COMPLETE"]
    best = max(complete, key=lambda t: t["value"])
    assert study["best"]["number"] == best["number"]
    assert set(study["importances"]) == {"word_ngrams", "min_df", "C"}
    text = comp("tune", "--show", "tfidf", workspace=tiny).stdout
    assert f"best: trial {best['number']}, f1_weighted {best['value']:.4f}, run {best['run_id']}" in text
    page = build_report(Project.open(tiny)).read_text()
    assert "Tuning studies" in page and "trials of study tfidf" in page
    assert "parameter importances of study tfidf" in page
    comp("gc", "--yes", "--stale", workspace=tiny)  # a study is never a leftover
    assert len(show(tiny, "tfidf")["trials"]) == 3
    one_clear_error(comp("run", "tfidf", "--run-id", "studies", workspace=tiny, check=False),
                    "where comp tune keeps its studies")


BAD_REQUESTS = [
    ("[nope]\nlow = 1\nhigh = 2\n", {}, "tfidf has no parameter 'nope'"),
    ("[C]\nlow = 5\nhigh = 1\n", {}, "--space C: low (5) must be below high (1)"),
    ("[C]\nlow = -1\nhigh = 1\n", {}, "C must be above 0"),
    ("[C]\nlow = 1\nhigh = 2\ndefault = 9\n", {}, "outside the range"),
    ("[C]\nlow = 1\nhigh = 2\nspread = 3\n", {}, "the keys are low, high, log, step, choices and default"),
    ("", {"pinned": {"C": "x"}}, "C must be a finite number"),
    ("", {"pruner": "hyperband"}, "pruner must be one of wilcoxon, median, none"),
    ("", {"study": "../x"}, "--study"),
    ("", {"storage": "sqlite:////tmp/elsewhere.db"}, "must lie inside the workspace"),
]


@pytest.mark.parametrize(("space", "options", "fragment"), BAD_REQUESTS)
def test_a_bad_tuning_request_is_refused_before_anything_is_written(tiny, space, options, fragment):
    (tiny / "space.toml").write_text(space)
    values = {"model": "tfidf", **({"space": "space.toml"} if space else {}), **options}
    with pytest.raises(CompError, match=re.escape(fragment)), Reporter.open() as reporter:
        tune(Project.open(tiny), build(TuneRequest, values, "comp tune"), reporter)
    assert not [p for p in (tiny / "runs").iterdir() if p.is_dir()]


def test_the_cli_refuses_a_bad_tuning_request_in_one_sentence(tiny):
    (tiny / "space.toml").write_text(BAD_REQUESTS[1][0])
    one_clear_error(comp("tune", "tfidf", "--space", "space.toml", workspace=tiny, check=False),
                    BAD_REQUESTS[1][2])
    one_clear_error(comp("tune", "tfidf", "--pruner", "hyperband", workspace=tiny, check=False),
                    "pruner must be one of wilcoxon, median, none")
    assert not [p for p in (tiny / "runs").iterdir() if p.is_dir()]


def test_show_of_an_unknown_study_is_one_sentence(tiny):
    one_clear_error(comp("tune", "--show", "nothing", workspace=tiny, check=False), "no study 'nothing'")


REQUIRED = {"embed": {"text_backbone": "all-MiniLM-L6-v2"}}  # a family with no usable default


@pytest.mark.parametrize("family", available_models())
def test_every_family_declares_a_search_space_its_params_accept(family):
    """Like scikit-learn's check_estimator for tuning: each family declares ranges, and
    their bounds, choices and the defaults (the first trial) all build valid Params."""
    params = model_class(family).Params
    space = tuning_space(params)
    assert space, f"{family} declares no tuning ranges"
    required = REQUIRED.get(family, {})
    defaults = build(params, required, family)
    for name, searched in space.items():
        assert searched.problem() is None, (name, searched)
        corners = list(searched.choices) if searched.choices is not None else [searched.low, searched.high]
        for value in corners:
            build(params, {**required, name: value}, family)
        default = getattr(defaults, name)
        if searched.choices is not None:
            inside = default in searched.choices
        else:
            inside = searched.low <= default <= searched.high
        assert inside, f"{family} {name}: the default {default!r} is outside its tuning range"
