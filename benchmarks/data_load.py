"""Loading the competition at the real scale: comp's polars data layer against the pandas
path it replaced, in one run, with the built tables checked identical.

Builds the real-scale demo (`comp init --demo --train-rows 91120 --test-rows 16860
--classes 874 --no-images`, or uses --workspace), then times, best of --repeats, in this
process:

- before: pandas reads both parquet files whole, then per row: json.loads, the regex HTML
  stripper on every field, `pd.to_numeric` and `astype("string")` for the tabular columns
  (the loader comp had until the data layer moved to polars);
- after: `Competition(...)` and its train and test tables, as every `comp run` loads them.

Prints both times, the ratio, and whether text, categorical and numeric columns are
identical.

    .venv/bin/python benchmarks/data_load.py [--workspace DIR] [--repeats 3]
"""

from __future__ import annotations

import argparse
import html
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from comp.data.competition import Competition
from comp.data.workspace import Workspace

_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def _strip_html(text: str) -> str:
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", text))).strip()


def _flatten(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return _strip_html(value)
    if isinstance(value, dict):
        parts = (f"{_flatten(k)}: {_flatten(v)}" for k, v in value.items())
        return "; ".join(p for p in parts if not p.endswith(": "))
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join(p for p in map(_flatten, value) if p)
    return str(value)


def _build_text(json_value, plain_values, json_keys) -> str:
    parts, fields = [], json_value
    if isinstance(json_value, str):
        try:
            fields = json.loads(json_value)
        except json.JSONDecodeError:
            pass
    if isinstance(fields, dict):
        parts += [_flatten(fields.get(key)) for key in (json_keys or list(fields))]
    else:
        parts.append(_flatten(fields))
    parts += [_flatten(v) for v in plain_values]
    return "\n".join(p for p in parts if p)


def pandas_tables(workspace: Workspace) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The former loader: (text, categorical, numeric) of train and test."""
    data = workspace.config().data
    tables = []
    for relative in (data.train, data.test):
        frame = pd.read_parquet(workspace.path(relative))
        json_values = frame[data.text_json].tolist()
        plain = [frame[c].tolist() for c in data.text]
        text = np.array([_build_text(json_values[i], [column[i] for column in plain], data.text_json_keys)
                         for i in range(len(frame))], dtype=object)
        categorical = np.column_stack([frame[c].astype("string").fillna("").astype(str).to_numpy()
                                       for c in data.categorical])
        numeric = np.column_stack([pd.to_numeric(frame[c], errors="coerce").astype("float32")
                                   for c in data.numeric])
        tables.append((text, categorical, numeric))
    return tables


def polars_tables(workspace: Workspace) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    competition = Competition(workspace, workspace.config())
    return [(t.text, t.categorical, t.numeric) for t in (competition.train, competition.test)]


def best(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, help="an existing workspace (default: the real scale)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="comp-load-") as temporary:
        root = args.workspace or Path(temporary)
        if args.workspace is None:
            subprocess.run([sys.executable, "-m", "comp", "--workspace", str(root), "init", "--demo",
                            "--train-rows", "91120", "--test-rows", "16860", "--classes", "874",
                            "--no-images"], check=True, capture_output=True)
        workspace = Workspace(root.resolve())
        before, old = best(lambda: pandas_tables(workspace), args.repeats)
        after, new = best(lambda: polars_tables(workspace), args.repeats)
    pairs = list(zip(old, new, strict=True))
    same = {part: all(np.array_equal(o[i], n[i], equal_nan=part == "numeric") for o, n in pairs)
            for i, part in enumerate(("text", "categorical", "numeric"))}
    rows = sum(len(t[0]) for t in new)
    print(f"{rows:,} rows (train and test), best of {args.repeats}")
    print("| loader | seconds | ratio |\n| --- | ---: | ---: |")
    print(f"| before: pandas, row by row | {before:.2f} | 1.00 |")
    print(f"| after: comp.data on polars | {after:.2f} | {before / after:.2f}× faster |")
    print("identical: " + ", ".join(f"{part} {'yes' if ok else 'NO'}" for part, ok in same.items()))


if __name__ == "__main__":
    main()
