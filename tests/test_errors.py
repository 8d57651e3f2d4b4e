"""Every mistake a user can make ends in one sentence and exit code 2, never a traceback."""

import json

import pandas as pd
import pytest

from tests.conftest import comp, one_clear_error


def _edit_config(ws, old, new):
    path = ws / "comp.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_no_config(tmp_path):
    one_clear_error(comp("folds", workspace=tmp_path, check=False), "comp init")


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ("[cv]", "[cv]\nn_fold = 3", ["unknown key 'n_fold'", "n_folds"]),
        ("n_folds = 5", "n_folds = \"five\"", ["n_folds must be an integer"]),
        ('metric = "f1_weighted"', 'metric = "auc"', ["unknown metric 'auc'"]),
        ('train = "data/train.parquet"', 'train = "data/nope.parquet"', ["does not exist"]),
        ('numeric = ["rating", "sale"]', 'numeric = ["rating", "price"]', ["no column 'price'"]),
        ("[data]", "[data", ["not valid TOML"]),
    ],
)
def test_config_errors(tiny, old, new, fragments):
    _edit_config(tiny, old, new)
    one_clear_error(comp("run", "tfidf", workspace=tiny, check=False), *fragments)


def test_target_in_test_file(tiny):
    test = pd.read_parquet(tiny / "data/test.parquet")
    test["category_id"] = 1
    test.to_parquet(tiny / "data/test.parquet")
    one_clear_error(comp("folds", workspace=tiny, check=False), "target column", "leak")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["run", "nosuchmodel"], ["unknown model 'nosuchmodel'", "tfidf"]),
        (["run", "tfidf", "--set", "C"], ["key=value"]),
        (["run", "tfidf", "--set", "Cx=1"], ["unknown key 'Cx'"]),
        (["run", "tfidf", "--set", "C=big"], ["C must be a finite number"]),
        (["run", "tfidf", "--set", "classifier=svm"], ["must be one of logreg, sgd"]),
        (["run", "tfidf", "--fold", "7"], ["out of range"]),
        (["run", "--resume", "nope"], ["unknown run 'nope'"]),
        (["submit", "nope"], ["unknown run 'nope'"]),
        (["submit"], ["no finished run"]),
        (["run", "tfidf", "--fold", "x"], ["--fold must be 'all' or a fold number, got 'x'"]),
        (["run", "tfidf", "--resume", "r"], ["--resume takes the model"]),
        (["blend", "nope", "other"], ["unknown run 'nope'"]),
        (["blend"], ["at least two finished runs, found 0"]),
        (["blend", "--method", "magic"], ["--method must be one of"]),
        (["import", "nowhere", "--name", "x"], ["nowhere is not a folder"]),
    ],
)
def test_cli_misuse(tiny, args, fragments):
    one_clear_error(comp(*args, workspace=tiny, check=False), *fragments)


def test_a_run_on_other_folds_is_refused_and_shown_stale(tiny):
    fast = ["run", "tfidf", "--set", "char_max=0", "--run-id", "r"]
    comp(*fast, "--fold", "0", workspace=tiny)
    comp("folds", "--force", "--seed", "9", workspace=tiny)
    one_clear_error(comp(*fast, "--fold", "1", workspace=tiny, check=False), "run r was made on other folds")
    board = json.loads(comp("leaderboard", "--json", workspace=tiny).stdout)
    assert [(e["id"], e["state"]) for e in board] == [("r", "stale")]


def test_folds_missing(tiny):
    (tiny / "runs/folds.parquet").unlink()
    one_clear_error(comp("run", "tfidf", workspace=tiny, check=False), "comp folds")


def _commands(group, prefix=()):
    """Every command of the CLI as the words that call it, sub-commands included."""
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield (*prefix, name)


def test_every_command_has_help_with_an_example(tiny):
    import typer

    from comp.cli import app

    commands = list(_commands(typer.main.get_command(app)))
    assert len(commands) >= 14 and ("export", "mlflow") in commands
    for words in commands:
        result = comp(*words, "--help", workspace=tiny)
        text = " ".join(result.stdout.split())
        # after the usage line: the docstring's own example, not the usage's program name
        _, found, examples = text.partition("Example")
        assert found and "comp " + " ".join(words) in examples, words
