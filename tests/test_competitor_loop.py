"""The competitor's loop through the CLI: public scores, the submissions list, the final
pick, drop-one contributions, calibration before blending and byte-for-byte reproduction."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from comp.blend.calibration import Rank, Temperature
from comp.project import Project
from comp.submissions.tracking import list_submissions
from tests.conftest import comp, one_clear_error
from tests.test_compare import import_run, predictions

SUBMISSION_KEYS = {"name", "file", "run_id", "run_name", "model", "cv_score", "public_score",
                   "private_score", "gap", "created_at"}


def right_on(share: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=400) < share


def run_details(workspace: Path, name: str) -> dict:
    rows = json.loads(comp("leaderboard", "--json", workspace=workspace).stdout)
    run_id = next(row["id"] for row in rows if row["name"] == name)
    return json.loads((workspace / "runs" / run_id / "run.json").read_text())


def submissions(workspace: Path) -> dict[str, dict]:
    listed = json.loads(comp("submissions", "--json", workspace=workspace).stdout)
    return {s["name"]: s for s in listed}


def test_public_scores_are_recorded_and_listed_with_the_gap(tiny):
    import_run(tiny, "strong", *predictions(tiny, right_on(0.9, 0), seed=1))
    import_run(tiny, "weak", *predictions(tiny, right_on(0.6, 1), seed=2))
    comp("submit", "strong", "--name", "s01", workspace=tiny)
    comp("submit", "weak", "--name", "s02", "--format", "parquet", workspace=tiny)
    recorded = comp("public", "s01", "0.8731", workspace=tiny).stdout
    comp("public", "s02", "0.61", "--private", "0.605", workspace=tiny)

    listed = submissions(tiny)
    assert set(listed) == {"s01", "s02"} and all(SUBMISSION_KEYS <= set(s) for s in listed.values())
    s01, s02 = listed["s01"], listed["s02"]
    assert s01["public_score"] == 0.8731 and s01["private_score"] is None
    assert s01["gap"] == s01["public_score"] - s01["cv_score"]
    assert f"gap public − CV {s01['gap']:+.4f}" in recorded
    assert (s02["public_score"], s02["private_score"], s02["file"]) == (0.61, 0.605, "s02.parquet")
    provenance = json.loads((tiny / "submissions" / "s02.json").read_text())
    assert provenance["public_score"] == 0.61 and provenance["public_recorded_at"]
    assert list_submissions(Project.open(tiny)) == list(listed.values())  # what `comp report` reads
    table = comp("submissions", workspace=tiny).stdout
    assert "0.8731" in table and f"{s02['gap']:+.4f}" in table

    for args in (("s01", "abc"), ("s01", "1.5"), ("s01", "--", "-0.1"), ("s01", "0.8", "--private", "x"),
                 ("nope", "0.8")):
        one_clear_error(comp("public", *args, workspace=tiny, check=False))
    assert submissions(tiny)["s01"]["public_score"] == 0.8731  # refused scores change nothing


@pytest.mark.slow  # in `make test-all`: six imports and submissions
def test_pick_never_proposes_one_run_twice_and_prefers_the_least_agreeing_strong_run(tiny):
    best_oof, best_test = predictions(tiny, right_on(0.9, 0), seed=1)
    import_run(tiny, "best", best_oof, best_test)
    comp("submit", "best", "--name", "best1", workspace=tiny)
    comp("submit", "best", "--name", "best2", workspace=tiny)
    comp("public", "best1", "0.9", workspace=tiny)
    alone = json.loads(comp("pick", "--json", workspace=tiny).stdout)
    assert alone["first"]["name"] == "best1" and alone["second"] is None
    assert "submit a different run" in comp("pick", workspace=tiny).stdout

    import_run(tiny, "far", *predictions(tiny, right_on(0.5, 3), seed=4))
    comp("submit", "far", workspace=tiny)
    fallback = json.loads(comp("pick", "--json", workspace=tiny).stdout)
    assert fallback["second"]["run_name"] == "far" and not fallback["second_within_tolerance"]
    assert "no other run is within 0.005" in comp("pick", workspace=tiny).stdout

    # the same CV as `best`: a twin with the same test predictions, a rebel with other ones
    rebel_test = np.roll(best_test, 1, axis=1)
    import_run(tiny, "twin", best_oof, best_test)
    import_run(tiny, "rebel", best_oof, rebel_test)
    comp("submit", "twin", workspace=tiny)
    comp("submit", "rebel", workspace=tiny)
    chosen = json.loads(comp("pick", "--json", workspace=tiny).stdout)
    first, second = chosen["first"], chosen["second"]
    assert first["name"] == "best1"  # equal CV: the recorded public score breaks the tie
    assert second["run_name"] == "rebel" and chosen["second_within_tolerance"]
    assert first["run_id"] != second["run_id"]
    agreement = {c["run_name"]: c["agreement"] for c in chosen["candidates"]}
    assert agreement["twin"] == 1.0 and agreement["rebel"] == chosen["agreement"] < 0.5
    assert "best1" not in {c["name"] for c in chosen["candidates"]} | {second["name"]}
    text = comp("pick", workspace=tiny).stdout
    assert "least agreement" in text and f"{chosen['agreement']:.1%}" in text
    one_clear_error(comp("pick", "--tolerance", "-1", workspace=tiny, check=False))


def test_pick_without_submissions_is_a_clear_error(tiny):
    one_clear_error(comp("pick", workspace=tiny, check=False))


def test_drop_one_shows_a_useless_parent_adds_nothing(tiny):
    import_run(tiny, "strong", *predictions(tiny, right_on(0.85, 0), seed=1))
    import_run(tiny, "medium", *predictions(tiny, right_on(0.7, 1), seed=2))
    n_classes = len(run_details(tiny, "strong")["classes"])
    import_run(tiny, "useless", np.ones((400, n_classes)), np.ones((80, n_classes)))
    shown = comp("blend", "strong", "medium", "useless", "--method", "optimize", "--explain",
                 "--name", "mix", workspace=tiny).stdout
    assert "drop-one loss" in shown
    record = run_details(tiny, "mix")
    drop_one = {p["name"]: p["drop_one"] for p in record["details"]["parents"]}
    assert abs(drop_one["useless"]["loss"]) < 0.005
    assert drop_one["strong"]["loss"] > 0.02
    for name, parent in drop_one.items():
        assert np.isclose(parent["loss"], record["cv_score"] - parent["score_without"]), name

    comp("blend", "strong", "medium", "--name", "plain", workspace=tiny)
    assert all("drop_one" not in p for p in run_details(tiny, "plain")["details"]["parents"])


def test_calibration_is_fitted_per_parent_and_its_effect_reported(tiny):
    oof, test = predictions(tiny, right_on(0.85, 0), seed=1)
    sharp = softmax(8 * np.log(oof / oof.sum(axis=1, keepdims=True)), axis=1)
    import_run(tiny, "sharp", sharp, test)
    import_run(tiny, "medium", *predictions(tiny, right_on(0.7, 1), seed=2))
    shown = comp("blend", "sharp", "medium", "--method", "optimize", "--calibrate", "temperature",
                 "--name", "tempered", workspace=tiny).stdout
    details = run_details(tiny, "tempered")["details"]
    assert details["calibrate"] == "temperature"
    assert f"without temperature calibration: {details['nested_without_calibration']:.4f}" in shown
    temperatures = {p["name"]: p["calibration"]["temperature"] for p in details["parents"]}
    assert temperatures["sharp"] > 2.0  # an over-confident parent is softened

    comp("blend", "sharp", "medium", "--calibrate", "rank", "--name", "ranked", workspace=tiny)
    assert run_details(tiny, "ranked")["details"]["nested_without_calibration"] is not None
    one_clear_error(comp("blend", "sharp", "medium", "--calibrate", "platt", workspace=tiny, check=False))


def test_calibration_of_each_fold_is_fitted_without_its_rows(tiny):
    """One parent at weight 1: the blend's OOF is the parent calibrated, fold by fold, by a
    rank reference made of the other folds' rows only; its test rows use all rows."""
    oof, test = predictions(tiny, right_on(0.8, 0), seed=1)
    import_run(tiny, "solo", oof, test)
    comp("blend", "solo", "--weights", "solo=1", "--calibrate", "rank", "--name", "ranked",
         workspace=tiny)
    record = run_details(tiny, "ranked")
    blended_oof = np.load(tiny / "runs" / record["id"] / "oof.npy")
    competition = Project.open(tiny).competition
    folds = Project.open(tiny).folds
    stored = np.load(tiny / "made" / "solo" / "oof.npy")
    stored = stored / stored.sum(axis=1, keepdims=True)
    for k in range(folds.n_folds):
        expected = Rank().fit(stored, competition.y, folds.training(k)).apply(stored)
        held_out = folds.held_out(k)
        np.testing.assert_allclose(blended_oof[held_out], expected[held_out], rtol=1e-4)
    everything = np.arange(len(competition.y))
    stored_test = np.load(tiny / "made" / "solo" / "test.npy")
    expected_test = Rank().fit(stored, competition.y, everything).apply(
        stored_test / stored_test.sum(axis=1, keepdims=True))
    np.testing.assert_allclose(np.load(tiny / "runs" / record["id"] / "test.npy"), expected_test, rtol=1e-4)


def test_temperature_undoes_a_known_sharpening_and_rank_follows_its_definition():
    rng = np.random.default_rng(0)
    calibrated = softmax(rng.normal(size=(4000, 6)) * 1.5, axis=1)
    y = np.array([rng.choice(6, p=p) for p in calibrated])  # labels drawn from the probabilities
    sharpened = softmax(3.0 * np.log(calibrated), axis=1)
    rows = np.arange(len(y))
    fitted = Temperature().fit(sharpened, y, rows)
    assert abs(fitted.temperature - 3.0) < 0.3
    np.testing.assert_allclose(fitted.apply(sharpened), calibrated, atol=0.03)

    reference = calibrated[:2000]
    ranked = Rank().fit(calibrated, y, rows[:2000]).apply(calibrated)
    # the definition: each class's (rank among the reference rows + 1) / (n + 1), per row summing to 1
    percentile = np.column_stack([
        ((reference[None, :, c] <= calibrated[:, c, None]).sum(axis=1) + 1) / (len(reference) + 1)
        for c in range(6)
    ])
    np.testing.assert_allclose(ranked, percentile / percentile.sum(axis=1, keepdims=True), rtol=1e-5)


def test_reproduce_rebuilds_every_submission_byte_for_byte(tiny):
    import_run(tiny, "strong", *predictions(tiny, right_on(0.85, 0), seed=1))
    import_run(tiny, "medium", *predictions(tiny, right_on(0.7, 1), seed=2))
    comp("blend", "strong", "medium", "--name", "mix", workspace=tiny)
    comp("submit", "strong", "--name", "s01", workspace=tiny)
    comp("submit", "medium", "--name", "s02", "--format", "parquet", workspace=tiny)
    comp("submit", "mix", "--name", "s03", workspace=tiny)
    folder = tiny / "submissions"
    for name, file in (("s01", "s01.csv"), ("s02", "s02.parquet"), ("s03", "s03.csv")):
        provenance = json.loads((folder / f"{name}.json").read_text())
        assert provenance["sha256"] == hashlib.sha256((folder / file).read_bytes()).hexdigest()
        assert "byte-identical" in comp("reproduce", name, workspace=tiny).stdout

    tree = json.loads((folder / "s03.json").read_text())["run"]
    assert tree["model"] == "blend" and tree["recipe"]["method"] == "caruana"
    assert [p["name"] for p in tree["parents"]] == ["strong", "medium"]
    assert all(p["parents"] == [] and p["folds_hash"] == tree["folds_hash"] for p in tree["parents"])

    original = (folder / "s01.csv").read_bytes()
    (folder / "s01.csv").unlink()
    assert "restored" in comp("reproduce", "s01", workspace=tiny).stdout
    assert (folder / "s01.csv").read_bytes() == original

    (folder / "s02.parquet").write_bytes(b"edited by hand")
    edited = comp("reproduce", "s02", workspace=tiny, check=False)
    one_clear_error(edited)
    assert "was changed after it was made" in edited.stderr

    strong_id = tree["parents"][0]["id"]
    test_path = tiny / "runs" / strong_id / "test.npy"
    np.save(test_path, np.roll(np.load(test_path), 1, axis=1))
    changed = comp("reproduce", "s01", workspace=tiny, check=False)
    one_clear_error(changed)
    assert f"run {strong_id}'s test.npy changed" in changed.stderr
    one_clear_error(comp("reproduce", "nope", workspace=tiny, check=False))
