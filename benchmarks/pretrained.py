"""Pretrained against from scratch on the English demo, as a user runs it: tfidf, bert from
scratch (the offline default), bert fine-tuned from all-MiniLM-L6-v2, frozen `embed`
(MiniLM + EfficientNet-Lite0) alone and with boost on it, and the default blend of them
all. Each is one whole `comp` command on the same five folds; the table gives its CV
(weighted F1 on all out-of-fold rows) with the fold spread, wall time and peak memory.

Then embedding throughput: comp's frozen text encoding (rows sorted by length, dynamic
padding) against a plain `transformers` forward loop (padding to the batch's longest, rows
in file order) over the same texts, in rows per second.

    .venv/bin/python benchmarks/pretrained.py [--workspace DIR] [--skip-runs]

A finished run of the same name in the workspace is kept with its recorded timing (delete
its folder under runs/, and the blend's, to measure it again).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COMP = [sys.executable, "-m", "comp"]
MINILM, LITE0 = "all-MiniLM-L6-v2", "tf_efficientnet_lite0"
# (name, what it is, the comp command after `comp --workspace W`)
RUNS = [
    ("tfidf", "tfidf + logistic regression", ["run", "tfidf"]),
    ("bert_scratch", "bert, offline default from scratch",
     ["run", "bert", "--set", "epochs=3", "--set", "length_buckets=true"]),
    ("bert_minilm", "bert fine-tuned from MiniLM",
     ["run", "bert", "--set", f"backbone={MINILM}", "--set", "epochs=4", "--set", "max_len=64",
      "--set", "body_lr=2e-4", "--set", "lr=3e-3", "--set", "freeze_layers=2",
      "--set", "length_buckets=true"]),
    ("embed", "embed: frozen MiniLM + Lite0, linear probe",
     ["run", "embed", "--set", f"text_backbone={MINILM}", "--set", f"image_backbone={LITE0}",
      "--set", "image_size=128"]),
    ("boost_embed", "boost (lightgbm) on embed", ["run", "boost", "--set", "from=embed"]),
    ("blend", "comp blend (default: caruana, nested)", ["blend"]),
]


def measured(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one whole command (its own process tree)."""
    probe = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
             "code = subprocess.run(sys.argv[1:]).returncode; "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
             "sys.exit(code)")
    result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    seconds, kib = result.stdout.split()[-2:]
    return float(seconds), int(kib) / 1024


def leaderboard(workspace: Path) -> list[dict]:
    return json.loads(subprocess.run([*COMP, "--workspace", str(workspace), "leaderboard", "--json"],
                                     capture_output=True, text=True, check=True).stdout)


def table(workspace: Path, timings: dict[str, tuple[float, float]]) -> None:
    board = {e["name"]: e for e in leaderboard(workspace)}
    print(f"\n{'run':<14} {'what':<45} {'CV':>7} {'fold std':>9} {'wall s':>8} {'peak MiB':>9}")
    for name, what, _ in RUNS:
        entry = board.get(name, {})
        seconds, mib = timings.get(name, (float("nan"), float("nan")))
        cv = entry.get("cv_score")
        print(f"{name:<14} {what:<45} {cv if cv is not None else float('nan'):>7.4f} "
              f"{entry.get('fold_std') or 0:>9.4f} {seconds:>8.0f} {mib:>9.0f}")


def throughput(workspace: Path, rows: int) -> None:
    import numpy as np
    import torch
    from transformers import AutoModel, AutoTokenizer

    from comp.models import create_model
    from comp.progress import Reporter
    from comp.project import Project
    from comp.runs.runner import fold_context

    project = Project.open(workspace)
    table_rows = project.competition.train.take(np.arange(rows))
    with tempfile.TemporaryDirectory() as scratch, Reporter.open(quiet=True) as reporter:
        ctx = fold_context(project, fold=0, seed=0, workdir=Path(scratch), run_workdir=Path(scratch),
                           reporter=reporter)
        model = create_model("embed", {"text_backbone": MINILM, "max_len": 128})
        model._ctx = ctx
        model._encode_text(table_rows.take(np.arange(64)))  # warm-up: weights loaded, threads started
        started = time.perf_counter()
        ours = model._encode_text(table_rows)
        comp_rate = rows / (time.perf_counter() - started)

        folder = project.weights.text_source(MINILM)
        tokenizer, encoder = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
        texts = list(table_rows.text)
        started = time.perf_counter()
        plain = []
        with torch.inference_mode():
            for start in range(0, rows, 64):
                batch = tokenizer(texts[start:start + 64], padding=True, truncation=True, max_length=128,
                                  return_tensors="pt")
                hidden = encoder(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).float()
                plain.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        plain_rate = rows / (time.perf_counter() - started)
    plain = np.concatenate(plain)
    agree = np.abs(ours - plain).max()
    print(f"\ntext embedding throughput, {rows} rows of the demo, MiniLM, batch 64, max_len 128, "
          f"{torch.get_num_threads()} threads:")
    print(f"  plain transformers loop  {plain_rate:8.1f} rows/s")
    print(f"  comp embed               {comp_rate:8.1f} rows/s   ratio {comp_rate / plain_rate:.2f}x "
          f"(largest difference between the two embeddings: {agree:.1e})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path,
                        default=Path(tempfile.gettempdir()) / "comp-bench-pretrained")
    parser.add_argument("--skip-runs", action="store_true", help="Only print the table and throughput.")
    parser.add_argument("--rows", type=int, default=1000, help="Rows for the throughput comparison.")
    args = parser.parse_args()
    workspace = args.workspace
    timings: dict[str, tuple[float, float]] = {}
    timings_file = workspace / "bench-timings.json"
    if not args.skip_runs:
        if not (workspace / "comp.toml").exists():
            subprocess.run([*COMP, "--workspace", str(workspace), "init", "--demo", "--language", "en"],
                           check=True, capture_output=True)
            subprocess.run([*COMP, "--workspace", str(workspace), "folds"], check=True, capture_output=True)
        if timings_file.exists():
            timings = {k: tuple(v) for k, v in json.loads(timings_file.read_text()).items()}
        done = {e["name"] for e in leaderboard(workspace) if e["status"] == "done"}
        for name, what, command in RUNS:
            if name in done and name in timings:
                continue
            timings[name] = measured([*COMP, "--workspace", str(workspace), *command, "--name", name])
            print(f"{what}: {timings[name][0]:.0f} s", flush=True)
            timings_file.write_text(json.dumps(timings))
    elif timings_file.exists():
        timings = {k: tuple(v) for k, v in json.loads(timings_file.read_text()).items()}
    table(workspace, timings)
    throughput(workspace, args.rows)


if __name__ == "__main__":
    main()
