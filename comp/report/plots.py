"""Matplotlib figures for the report, each returned as an inline PNG data URI.

Figures are made with `matplotlib.figure.Figure` directly, not pyplot: no global figure
registry, no GUI backend, nothing left open between calls.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

WIDTH = 9.0  # inches; at DPI 100 a figure fills the page's 900-odd pixels
DPI = 100


def data_uri(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def fold_spread(labels: Sequence[str], fold_scores: Sequence[Sequence[float | None]],
                cv_scores: Sequence[float | None], metric: str) -> Figure:
    """One row per run, best at the top: its fold scores as dots, its CV score as a bar."""
    figure = Figure(layout="constrained", figsize=(WIDTH, max(2.4, 1.2 + 0.28 * len(labels))))
    axes = figure.subplots()
    rows = np.arange(len(labels))[::-1]
    for row, scores in zip(rows, fold_scores, strict=True):
        values = [s for s in scores if s is not None]
        axes.plot(values, [row] * len(values), "o", color="tab:blue", alpha=0.6, markersize=5)
        if len(values) > 1:
            axes.hlines(row, min(values), max(values), color="tab:blue", alpha=0.3)
    known = [(row, cv) for row, cv in zip(rows, cv_scores, strict=True) if cv is not None]
    if known:
        axes.plot([cv for _, cv in known], [row for row, _ in known], "|", color="tab:red",
                  markersize=14, markeredgewidth=2, label="CV (all OOF rows)")
        axes.legend(loc="best", fontsize=8)
    axes.set_yticks(rows, labels, fontsize=8)
    axes.set_xlabel(f"{metric} per fold")
    axes.grid(axis="x", alpha=0.3)
    return figure


def cv_against_folds(cv_scores: Sequence[float], fold_scores: Sequence[Sequence[float | None]],
                     metric: str) -> Figure:
    """Each fold's score against the run's CV score: a fold below the diagonal everywhere
    is a hard fold, a run far from it has unstable folds."""
    figure = Figure(layout="constrained", figsize=(WIDTH * 0.6, WIDTH * 0.5))
    axes = figure.subplots()
    n_folds = max(len(scores) for scores in fold_scores)
    for k in range(n_folds):
        points = [(cv, scores[k]) for cv, scores in zip(cv_scores, fold_scores, strict=True)
                  if k < len(scores) and scores[k] is not None]
        axes.scatter([p[0] for p in points], [p[1] for p in points], s=18, alpha=0.8, label=f"fold {k}")
    low, high = axes.get_xlim()
    axes.plot([low, high], [low, high], color="grey", linewidth=1, linestyle="--")
    axes.set_xlabel(f"CV {metric}")
    axes.set_ylabel(f"fold {metric}")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    return figure


def class_f1(support: np.ndarray, f1: np.ndarray) -> Figure:
    """Per-class F1 against class size (log scale): where the long tail loses."""
    figure = Figure(layout="constrained", figsize=(WIDTH * 0.7, WIDTH * 0.4))
    axes = figure.subplots()
    present = support > 0
    axes.scatter(support[present], f1[present], s=12, alpha=0.6)
    axes.set_xscale("log")
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel("train rows of the class (log scale)")
    axes.set_ylabel("OOF F1 of the class")
    axes.grid(alpha=0.3)
    return figure


def correlation(labels: Sequence[str], matrix: np.ndarray) -> Figure:
    side = max(4.0, 0.45 * len(labels) + 2.0)
    figure = Figure(layout="constrained", figsize=(side + 1.0, side))
    axes = figure.subplots()
    shown = axes.imshow(matrix, cmap="viridis", vmin=min(0.0, float(matrix.min())), vmax=1.0)
    ticks = np.arange(len(labels))
    axes.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(ticks, labels, fontsize=8)
    if len(labels) <= 15:
        for i, j in np.ndindex(matrix.shape):
            axes.text(j, i, f"{matrix[i, j]:.2f}", ha="center", va="center", fontsize=7,
                      color="white" if matrix[i, j] < 0.7 else "black")
    figure.colorbar(shown, ax=axes, shrink=0.8)
    return figure


def blend(labels: Sequence[str], weights: Sequence[float], trajectory: Sequence[float] | None,
          metric: str) -> Figure:
    """A blend's parent weights and, where the method has one, its selection trajectory."""
    panels = 2 if trajectory else 1
    figure = Figure(layout="constrained", figsize=(WIDTH, 0.8 + max(2.2, 0.3 * len(labels))))
    axes = figure.subplots(1, panels, squeeze=False)[0]
    rows = np.arange(len(labels))[::-1]
    axes[0].barh(rows, weights, color="tab:green")
    axes[0].set_yticks(rows, labels, fontsize=8)
    axes[0].set_xlabel("weight")
    if trajectory:
        axes[1].plot(np.arange(1, len(trajectory) + 1), trajectory, marker=".")
        axes[1].set_xlabel("selection step")
        axes[1].set_ylabel(f"in-sample {metric}")
        axes[1].ticklabel_format(axis="y", useOffset=False)
        axes[1].grid(alpha=0.3)
    return figure


def cv_against_public(cv: np.ndarray, public: np.ndarray, labels: Sequence[str], metric: str) -> Figure:
    """Submissions' public scores against their CV, with a least-squares line: how far CV
    can be trusted to rank submissions."""
    figure = Figure(layout="constrained", figsize=(WIDTH * 0.6, WIDTH * 0.45))
    axes = figure.subplots()
    axes.scatter(cv, public, s=25)
    for x, y, label in zip(cv, public, labels, strict=True):
        axes.annotate(label, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if len(np.unique(cv)) > 1:
        slope, intercept = np.polyfit(cv, public, 1)
        line = np.array([cv.min(), cv.max()])
        axes.plot(line, slope * line + intercept, color="tab:red",
                  label=f"public = {slope:.2f} × CV + {intercept:.3f}")
        axes.legend(fontsize=8)
    axes.set_xlabel(f"CV {metric}")
    axes.set_ylabel("public score")
    axes.grid(alpha=0.3)
    return figure


def fold_bars(fold_scores: Sequence[float | None], cv_score: float | None, metric: str) -> Figure:
    """One run's score per fold, with its CV score as a line."""
    figure = Figure(layout="constrained", figsize=(WIDTH * 0.5, WIDTH * 0.3))
    axes = figure.subplots()
    folds = np.arange(len(fold_scores))
    axes.bar(folds, [np.nan if s is None else s for s in fold_scores], color="tab:blue")
    if cv_score is not None:
        axes.axhline(cv_score, color="tab:red", label=f"CV {cv_score:.4f}")
        axes.legend(fontsize=8, loc="lower right")
    axes.set_xticks(folds)
    axes.set_xlabel("fold")
    axes.set_ylabel(metric)
    return figure


def study_history(numbers: Sequence[int], values: Sequence[float | None], pruned: Sequence[bool],
                  metric: str, maximize: bool) -> Figure:
    """A tuning study's trials in order: finished ones as dots with the best so far as a
    line, pruned ones as crosses at their last reported fold score."""
    figure = Figure(layout="constrained", figsize=(WIDTH * 0.6, WIDTH * 0.35))
    axes = figure.subplots()
    finished = [(n, v) for n, v, p in zip(numbers, values, pruned, strict=True) if v is not None and not p]
    stopped = [(n, v) for n, v, p in zip(numbers, values, pruned, strict=True) if v is not None and p]
    if finished:
        xs, ys = zip(*finished, strict=True)
        axes.plot(xs, ys, "o", color="tab:blue", label="finished")
        best = np.maximum.accumulate(ys) if maximize else np.minimum.accumulate(ys)
        axes.step(xs, best, where="post", color="tab:red", label="best so far")
    if stopped:
        xs, ys = zip(*stopped, strict=True)
        axes.plot(xs, ys, "x", color="tab:gray", label="pruned (last fold)")
    axes.set_xlabel("trial")
    axes.set_ylabel(f"CV {metric}")
    axes.grid(alpha=0.3)
    if finished or stopped:
        axes.legend(fontsize=8)
    return figure


def importances(names: Sequence[str], values: Sequence[float]) -> Figure:
    """fANOVA parameter importances of a study, largest at the top."""
    figure = Figure(layout="constrained", figsize=(WIDTH * 0.5, 0.8 + max(1.4, 0.3 * len(names))))
    axes = figure.subplots()
    rows = np.arange(len(names))[::-1]
    axes.barh(rows, values, color="tab:purple")
    axes.set_yticks(rows, names, fontsize=8)
    axes.set_xlabel("importance (fANOVA)")
    return figure
