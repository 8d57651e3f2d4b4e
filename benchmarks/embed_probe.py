"""Which linear probe on frozen embeddings: fold 0 weighted F1 of a plain LogisticRegression(),
of standardised features at several C, and of the L2-normalised modalities side by side
(what `embed` fits) at several C, on the embeddings an `embed` run cached in the workspace.

    comp -w WS run embed --fold 0 --set text_backbone=all-MiniLM-L6-v2 \
        --set image_backbone=tf_efficientnet_lite0 --set image_size=128
    .venv/bin/python benchmarks/embed_probe.py WS
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.preprocessing import StandardScaler

from comp.project import Project


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workspace", type=Path)
    args = parser.parse_args()
    project = Project.open(args.workspace)
    y, folds = project.competition.y, project.folds
    blocks = []
    for path in sorted(project.workspace.cache.glob(f"embed-{project.competition.data_hash}-*-train.npz")):
        with np.load(path) as cached:
            by_row = np.empty_like(cached["matrix"])
            by_row[cached["index"]] = cached["matrix"]  # rows L2-normalised, as embed stores them
            blocks.append(by_row)
    if not blocks:
        raise SystemExit("no cached embed matrices for this data: run `comp run embed` first")
    x = np.hstack(blocks)
    valid = folds.held_out(0)
    train = np.setdiff1d(np.arange(len(y)), valid)

    def score(features, C) -> float:
        probe = LogisticRegression(C=C, max_iter=500).fit(features[train], y[train])
        return f1_score(y[valid], probe.predict(features[valid]), average="weighted")

    print(f"fold 0, {x.shape[1]} dimensions from {len(blocks)} cached modalities")
    print(f"plain LogisticRegression() (C=1, L2-normalised blocks): {score(x, 1.0):.4f}")
    standard = StandardScaler().fit(x[train]).transform(x)
    print("standardised:   " + ", ".join(f"C={C:g} {score(standard, C):.4f}" for C in (0.01, 0.1, 0.3, 1.0)))
    print("L2 blocks (embed): " + ", ".join(f"C={C:g} {score(x, C):.4f}" for C in (10, 30, 100, 300, 1000)))


if __name__ == "__main__":
    main()
