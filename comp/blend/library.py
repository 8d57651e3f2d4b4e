"""A library of parent runs' probabilities, laid out for fast blending.

Parents' oof.npy files are memory-mapped, never copied whole: at the real scale (91,120
rows × 874 classes) one run is 318 MB and twenty would not fit in RAM as copies. What
blending needs most often is precomputed once per run in a streamed pass:
- `true_proba`: each row's probability of its true class (log loss of any mixture), and
- `top_index` / `top_value` / `kth_value`: each row's K largest probabilities, which make
  the argmax of a running sum plus one run exact without touching all classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 4096


@dataclass
class RunProbabilities:
    dense: np.ndarray  # [n, C] float32, usually a read-only memory map
    true_proba: np.ndarray  # [n] float32
    top_index: np.ndarray  # [n, K] int32, descending by value
    top_value: np.ndarray  # [n, K] float32
    kth_value: np.ndarray  # [n] float32: no class outside the top K is above this


def top_k(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-row K largest values and their column indices, descending, chunked over rows."""
    n, n_classes = matrix.shape
    k = min(k, n_classes)
    index = np.empty((n, k), dtype=np.int32)
    value = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, CHUNK_ROWS):
        block = np.asarray(matrix[start:start + CHUNK_ROWS], dtype=np.float32)
        if k < n_classes:
            part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        else:
            part = np.broadcast_to(np.arange(n_classes), block.shape)
        part_values = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_values, axis=1, kind="stable")
        index[start:start + len(block)] = np.take_along_axis(part, order, axis=1)
        value[start:start + len(block)] = np.take_along_axis(part_values, order, axis=1)
    return index, value


def prepare(dense: np.ndarray, y: np.ndarray, k: int) -> RunProbabilities:
    dense = np.asarray(dense)  # a plain view of a memory map: indexing it skips np.memmap's Python
    index, value = top_k(dense, k)
    true_proba = np.empty(len(y), dtype=np.float32)
    for start in range(0, len(y), CHUNK_ROWS):
        rows = slice(start, start + CHUNK_ROWS)
        true_proba[rows] = np.take_along_axis(
            np.asarray(dense[rows]), y[rows, None], axis=1
        )[:, 0]
    kth = value[:, -1] if index.shape[1] < dense.shape[1] else np.full(len(y), -np.inf, np.float32)
    return RunProbabilities(dense, true_proba, index, value, kth.astype(np.float32))
