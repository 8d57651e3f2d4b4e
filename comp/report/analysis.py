"""The numbers behind the report, from the run store, the labels and the submissions."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from comp.blend import DIVERSITY_SAMPLE_CELLS, diversity
from comp.blend.library import prepare
from comp.metrics import ClassCounts, label_counts
from comp.runs.store import RunRecord, RunStore


@dataclass(frozen=True)
class Labels:
    """The train labels a run's OOF predictions are judged against, with readable names."""

    y: np.ndarray
    classes: list[Any]
    names: list[str] | None

    def describe(self, index: int) -> str:
        """`id` or `id leaf-name` (the last part of a `A->B->leaf` category path)."""
        if self.names is None:
            return str(self.classes[index])
        return f"{self.classes[index]} {self.names[index].rsplit('->', 1)[-1].strip()}"


@dataclass(frozen=True)
class ClassQuality:
    counts: ClassCounts
    confused: list[tuple[int, int, int]]  # (true class, predicted class, rows), most first


def class_quality(store: RunStore, record: RunRecord, labels: Labels, top_pairs: int) -> ClassQuality:
    """Per-class F1 and the most frequent (true, predicted) mistakes of a run's OOF argmax."""
    n_classes = len(labels.classes)
    predicted = np.asarray(store.array(record.id, "oof", mmap=True).argmax(axis=1))
    pairs = np.bincount(labels.y * n_classes + predicted, minlength=n_classes * n_classes)
    pairs = pairs.reshape(n_classes, n_classes)
    np.fill_diagonal(pairs, 0)
    flat = np.argsort(-pairs, axis=None, kind="stable")[:top_pairs]
    confused = [(int(i // n_classes), int(i % n_classes), int(pairs.flat[i]))
                for i in flat if pairs.flat[i] > 0]
    return ClassQuality(label_counts(labels.y, predicted, n_classes), confused)


def oof_correlation(store: RunStore, records: list[RunRecord], labels: Labels, seed: int = 0) -> dict:
    """Blend's `diversity` (OOF correlation, top-class disagreement) on a sample of rows,
    so that it stays fast for many runs at the real scale."""
    n_rows, n_classes = len(labels.y), len(labels.classes)
    n_sample = min(n_rows, max(200, DIVERSITY_SAMPLE_CELLS // n_classes))
    rows = np.sort(np.random.default_rng(seed).choice(n_rows, n_sample, replace=False))
    y = labels.y[rows]
    samples = [np.asarray(store.array(r.id, "oof", mmap=True)[rows], dtype=np.float32) for r in records]
    return diversity([prepare(s, y, 1) for s in samples], samples, y)


def flatten_params(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as `a.b = value` strings (lists and other values as JSON)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_params(value, f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat
