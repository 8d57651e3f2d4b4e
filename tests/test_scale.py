"""Folds on a Ray cluster, and the queue of runs: the same arrays as a local run, a dead
worker retried, a killed driver resumed, GPUs and threads assigned; plans run in order,
skip what is done and report a failure while independent runs finish."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest

from comp.data.config import ExecutorConfig
from comp.errors import CompError
from comp.progress import Reporter
from comp.project import Project
from comp.queue import load_plan, run_plan
from comp.runs.runner import RunRequest, start_run
from tests.conftest import comp, one_clear_error, start_comp

RAY = ExecutorConfig(kind="ray", cpus_per_fold=1)
# A fold of about a second on the tiny demo: long enough to be killed midway.
SLOW_TFIDF = {"word_ngrams": "3", "char_min": "1", "char_max": "6", "min_df": "1", "C": "100",
              "max_iter": "3000"}


def train(workspace: Path, params: dict, executor: ExecutorConfig | None = None, **request):
    with Reporter.open() as reporter:
        return start_run(Project.open(workspace), RunRequest("tfidf", params, **request), reporter, executor)


def arrays(workspace: Path, run_id: str) -> dict[str, bytes]:
    """Every array a run stored, by path: compared byte for byte."""
    run = workspace / "runs" / run_id
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*.npy"))}


def test_ray_run_equals_local_byte_for_byte_and_caps_threads(tiny, ray_cluster):
    local = train(tiny, {"C": "4"})
    on_ray = train(tiny, {"C": "4"}, RAY)
    assert on_ray.status == "done" and on_ray.cv_score == local.cv_score
    assert arrays(tiny, on_ray.id) == arrays(tiny, local.id)
    assert len(arrays(tiny, local.id)) == 2 + 2 * 5  # oof, test and each fold's valid, test
    for k in range(5):
        fold = tiny / "runs" / on_ray.id / "folds" / str(k)
        placement = json.loads((fold / "fold.json").read_text())["placement"]
        assert placement["executor"] == "ray" and placement["pid"] != os.getpid()
        assert placement["threads"]["blas"] == 1  # capped to its one CPU while it trained


def test_folds_get_logical_gpus_and_an_impossible_request_is_refused(tiny, ray_cluster):
    record = train(tiny, {"C": "4"}, ExecutorConfig(kind="ray", gpus_per_fold=1))
    gpus = [json.loads((tiny / "runs" / record.id / "folds" / str(k) / "fold.json").read_text())
            ["placement"]["gpus"] for k in range(5)]
    assert all(len(ids) == 1 and ids[0] in {"0", "1"} for ids in gpus), gpus
    before = sorted(p.name for p in (tiny / "runs").iterdir())
    with pytest.raises(CompError, match="asks for more than the Ray cluster has"):
        train(tiny, {"C": "4"}, ExecutorConfig(kind="ray", gpus_per_fold=3))
    assert sorted(p.name for p in (tiny / "runs").iterdir()) == before


def _kill_first_fold_task(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray worker seen training a fold (its process title names the task)."""
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            try:
                title = (entry / "cmdline").read_bytes()
            except (OSError, ValueError):
                continue
            if title.startswith(b"ray::_train_fold_task"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
                return
        time.sleep(0.005)


@pytest.fixture(scope="module")
def slow_local(tiny_template, tmp_path_factory) -> dict[str, bytes]:
    """The arrays of SLOW_TFIDF trained locally on the tiny demo: what Ray runs must equal."""
    workspace = tmp_path_factory.mktemp("slow") / "ws"
    shutil.copytree(tiny_template, workspace)
    return arrays(workspace, train(workspace, SLOW_TFIDF).id)


def test_a_worker_killed_mid_fold_is_retried_and_the_run_ends_equal(tiny, ray_cluster, slow_local):
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_first_fold_task, args=(killed, stop))
    killer.start()
    try:
        on_ray = train(tiny, SLOW_TFIDF, RAY)
    finally:
        stop.set()
        killer.join()
    assert killed, "no fold task was seen running"
    assert on_ray.status == "done" and on_ray.stats["worker_retries"] == 1
    assert arrays(tiny, on_ray.id) == slow_local


def test_a_killed_driver_leaves_its_folds_and_resume_finishes_equal(tiny, ray_cluster, slow_local):
    sets = [f"--set={k}={v}" for k, v in SLOW_TFIDF.items()]
    driver = start_comp("run", "tfidf", *sets, "--run-id", "killed", "--executor", "ray",
                        "--address", ray_cluster, workspace=tiny)
    folds = tiny / "runs" / "killed" / "folds"
    deadline = time.monotonic() + 300
    while len(list(folds.glob("*/fold.json"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    landed = len(list(folds.glob("*/fold.json")))
    assert 2 <= landed < 5, f"{landed} folds had landed when the driver was killed"
    board = {e["id"]: e for e in json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)}
    assert board["killed"]["state"] == f"partial {landed}/5"
    comp("run", "--resume", "killed", "--executor", "ray", "--address", ray_cluster, workspace=tiny)
    assert arrays(tiny, "killed") == slow_local


def test_cli_executor_options_are_checked_before_anything_is_written(tiny):
    one_clear_error(comp("run", "tfidf", "--gpus-per-fold", "1", workspace=tiny, check=False),
                    "need --executor ray")
    one_clear_error(comp("run", "tfidf", "--executor", "slurm", workspace=tiny, check=False),
                    "must be one of local, ray")
    one_clear_error(comp("run", "tfidf", "--executor", "ray", "--cpus-per-fold", "0", workspace=tiny,
                         check=False), "cpus_per_fold must be at least 1")
    assert not [p for p in (tiny / "runs").iterdir() if p.is_dir()]


PLAN = """
[[run]]
name = "words"
model = "tfidf"
set = { C = 4, char_max = 0 }

[[run]]
name = "broken"
model = "tfidf"
set = { min_df = 100000, char_max = 0 }

[[run]]
name = "ft"
model = "fasttext"
set = { epoch = 5 }

[[run]]
name = "stack"
model = "boost"
set = { from = "words,ft", use = "proba", rounds = 10 }

[[run]]
name = "on_broken"
model = "boost"
set = { from = "words,broken", use = "proba", rounds = 10 }

[blend]
runs = ["words", "ft", "stack"]
name = "plan_blend"
"""


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_a_plan_runs_parents_first_reports_a_failure_and_skips_what_is_done(tiny, executor, request):
    address = ["--address", request.getfixturevalue("ray_cluster")] if executor == "ray" else []
    (tiny / "plan.toml").write_text(PLAN)
    first = comp("queue", "plan.toml", "--json", "--executor", executor, *address, workspace=tiny,
                 check=False)
    assert first.returncode == 1, first.stderr  # a run failed: the queue says so
    outcomes = {o["name"]: o for o in json.loads(first.stdout)}
    assert {n: o["state"] for n, o in outcomes.items()} == {
        "words": "done", "broken": "failed", "ft": "done", "stack": "done", "on_broken": "not run",
        "plan_blend": "done"}
    assert "ValueError: max_df corresponds to < documents than min_df" in outcomes["broken"]["message"]
    store = Project.open(tiny).store
    stack = store.load(outcomes["stack"]["run_id"])
    parents = [store.load(outcomes[n]["run_id"]) for n in ("words", "ft")]
    assert stack.parents == [p.id for p in parents]
    assert all(p.finished_at <= stack.created_at for p in parents)  # children start after parents
    blended = store.load(outcomes["plan_blend"]["run_id"]).parents
    assert blended == [outcomes[n]["run_id"] for n in ("words", "ft", "stack")]

    runs_before = sorted(p.name for p in (tiny / "runs").iterdir())
    again = json.loads(comp("queue", "plan.toml", "--json", workspace=tiny, check=False).stdout)
    states = {o["name"]: o["state"] for o in again}
    assert states["words"] == states["ft"] == states["stack"] == states["plan_blend"] == "skipped"
    assert {o["name"]: o["run_id"] for o in again if o["state"] == "skipped"} == {
        n: outcomes[n]["run_id"] for n in ("words", "ft", "stack", "plan_blend")}
    assert states["broken"] == "failed" and states["on_broken"] == "not run"
    broken = next(o for o in again if o["name"] == "broken")
    assert broken["run_id"] == outcomes["broken"]["run_id"]  # the failed run is tried again, not copied
    assert sorted(p.name for p in (tiny / "runs").iterdir()) == runs_before


def test_a_plan_resumes_an_unfinished_run_and_dry_run_trains_nothing(tiny):
    comp("run", "tfidf", "--set", "C=4", "--set", "char_max=0", "--fold", "0", "--run-id", "half",
         "--name", "words", workspace=tiny)
    (tiny / "plan.toml").write_text(PLAN.split("[[run]]\nname = \"broken\"")[0])
    digest = sorted(p.name for p in (tiny / "runs" / "half" / "folds").iterdir())
    dry = json.loads(comp("queue", "plan.toml", "--dry-run", "--json", workspace=tiny).stdout)
    assert dry[0]["would"] == "resume (1 folds done)" and dry[0]["run_id"] == "half"
    assert sorted(p.name for p in (tiny / "runs" / "half" / "folds").iterdir()) == digest
    with Reporter.open() as reporter:
        project = Project.open(tiny)
        (outcome,) = run_plan(project, load_plan("plan.toml", tiny), reporter)
    assert (outcome.state, outcome.run_id) == ("resumed", "half")
    assert Project.open(tiny).store.load("half").status == "done"


BAD_PLANS = [
    ('[[run]]\nname = "a"\nmodel = "tfidf"\nafter = ["b"]\n', "not an earlier run of the plan"),
    ('[[run]]\nname = "a"\nmodel = "nope"\n', "unknown model 'nope'"),
    ('[[run]]\nname = "a"\nmodel = "tfidf"\nset = { C = -1 }\n', "C must be above 0"),
    ('[[run]]\nname = "a"\nmodel = "tfidf"\n[[run]]\nname = "a"\nmodel = "tfidf"\n', "used twice"),
    ('[[run]]\nname = "../a"\nmodel = "tfidf"\n', "name"),
    ('[[run]]\nname = "a"\nmodel = "tfidf"\n[blend]\nruns = ["zz"]\n', "must name runs of the plan"),
    ('[[runs]]\nname = "a"\n', "unknown table 'runs'"),
]


@pytest.mark.parametrize(("plan", "fragment"), BAD_PLANS)
def test_a_bad_plan_is_refused_in_one_sentence(tiny, plan, fragment):
    (tiny / "plan.toml").write_text(plan)
    with pytest.raises(CompError, match=re.escape(fragment)):
        load_plan("plan.toml", tiny)


@pytest.mark.parametrize(("plan", "fragment"), BAD_PLANS[:2])
def test_the_cli_refuses_a_bad_plan_before_anything_is_written(tiny, plan, fragment):
    (tiny / "plan.toml").write_text(plan)
    one_clear_error(comp("queue", "plan.toml", workspace=tiny, check=False), fragment)
    assert not [p for p in (tiny / "runs").iterdir() if p.is_dir()]
