"""What each HUSE loss adds: the same run with all losses, without L_sem, without L_gap and
with classification alone, next to the workspace's best `bert` and `image` runs.

Runs `comp run huse --fold all` four times through the real CLI in a demo workspace
(created with `comp init --demo [--language L]` and `comp folds` if it does not exist yet),
with the same `--set` settings for each, and prints each CV weighted F1, fold spread and
time, then `comp compare`'s verdict of each ablation against all losses.
Runs are named `<prefix>_<setting>`; a finished one is reused (delete it, or pick another
`--prefix`, after changing settings).

    .venv/bin/python benchmarks/huse_ablation.py demo --set epochs=3 --set length_buckets=true \
        --set image_size=24 --set max_len=64

With both towers pretrained, on the English demo:

    .venv/bin/python benchmarks/huse_ablation.py demo-en --language en --prefix pretrained \
        --set text_backbone=all-MiniLM-L6-v2 --set image_backbone=tf_efficientnet_lite0 \
        --set image_pretrained=true --set sem_encoder=backbone --set w_gap=0.3 ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ABLATIONS = {
    "all_losses": [],
    "no_sem": ["w_sem=0"],
    "no_gap": ["w_gap=0"],
    "class_only": ["w_sem=0", "w_gap=0"],
}


def comp(workspace: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "comp", "--workspace", str(workspace), *args],
                            stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"comp {' '.join(args)} failed (exit {result.returncode})")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", type=Path)
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="huse parameter for every run (repeatable)")
    parser.add_argument("--prefix", default="huse_ablation")
    parser.add_argument("--language", default="ru", help="the demo's vocabulary when it is created")
    args = parser.parse_args()
    if not (args.workspace / "comp.toml").exists():
        comp(args.workspace, "init", "--demo", "--language", args.language)
        comp(args.workspace, "folds")

    for setting, overrides in ABLATIONS.items():
        sets = [item for key_value in [*args.settings, *overrides] for item in ("--set", key_value)]
        comp(args.workspace, "run", "huse", "--fold", "all", "--run-id", f"{args.prefix}_{setting}", *sets)

    board = json.loads(comp(args.workspace, "leaderboard", "--json"))
    done = {entry["id"]: entry for entry in board if entry["status"] == "done"}
    rows = [(f"huse {setting}", done[f"{args.prefix}_{setting}"]) for setting in ABLATIONS]
    for family in ("bert", "image"):
        runs = [entry for entry in done.values() if entry["model"] == family]
        if runs:
            best = max(runs, key=lambda entry: entry["cv_score"])
            rows.append((f"{family} (best run: {best['id']})", best))
    print(f"settings: {' '.join(args.settings) or 'huse defaults'}")
    print(f"{'run':<40} {'CV score':>14} {'folds mean ± std':>18} {'time':>8}")
    for label, entry in rows:
        spread = f"{entry['fold_mean']:.4f} ± {entry['fold_std']:.4f}"
        print(f"{label:<40} {entry['cv_score']:>14.4f} {spread:>18} {entry['duration_s']:>7.0f}s")
    reference = f"{args.prefix}_all_losses"
    for setting in list(ABLATIONS)[1:]:
        verdict = json.loads(comp(args.workspace, "compare", reference, f"{args.prefix}_{setting}", "--json"))
        print(f"comp compare {reference} {args.prefix}_{setting}: {verdict['verdict']}")


if __name__ == "__main__":
    main()
