"""Training throughput of the `image` family against a plain timm + DataLoader loop.

Both train the same timm backbone from random initialisation on fold 0 of a demo
competition (1500 train rows, 30 classes, 64-pixel photos by default) for the same
epochs, batch size, learning rate, image size, transforms and DataLoader workers, and
both score the held-out fold after every epoch. comp's side is `ImageModel.fit`, i.e.
the shared accelerate loop (warmup and decay, clipping, early-stopping bookkeeping,
channels_last by default); the plain side is the usual notebook: timm.create_model,
timm's transforms, a DataLoader, AdamW at a constant rate and cross-entropy, in NCHW. A
third line runs the plain loop in channels_last, to show how much of the gap that is.

    .venv/bin/python benchmarks/image_train.py [--epochs 2] [--backbone efficientnet_b0]
        [--image-size 64] [--batch-size 64] [--workers 0] [--repeats 2] [--workspace DIR]

`--workspace` reuses (or creates) a demo workspace instead of a temporary one. Every
timing follows an untimed warm-up (images read once, kernels built for this shape);
with `--repeats` > 1 the loops alternate and the fastest of each is kept. Prints
images/s of each, the ratio comp / plain and each held-out weighted F1 (of the best
epoch: comp restores it, the plain loop's best is reported too).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch
from fold_timing import timed_fit
from torch.utils.data import DataLoader

from comp.data.demo import DemoSpec
from comp.data.scaffold import init_demo
from comp.data.workspace import Workspace
from comp.metrics import METRICS
from comp.models._vision import ImageDataset, collate, transforms
from comp.models.image import ImageModel, ImageParams
from comp.progress import Reporter
from comp.project import Project
from comp.runs.fold import seed_everything
from comp.runs.runner import fold_context


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--backbone", default="efficientnet_b0")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=1500)
    parser.add_argument("--classes", type=int, default=30)
    parser.add_argument("--workspace", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = args.workspace or Path(scratch) / "ws"
        workspace = Workspace(root.resolve())
        if not workspace.config_path.exists():
            init_demo(workspace, DemoSpec(train_rows=args.train_rows, test_rows=100,
                                          classes=args.classes, image_size=args.image_size),
                      force=False)
        project = Project(workspace)
        competition = project.competition
        folds = project.folds if workspace.folds_path.exists() else project.make_folds(5, 42, force=False)[0]
        train = competition.train.take(folds.training(0))
        valid = competition.train.take(folds.held_out(0))
        params = ImageParams(backbone=args.backbone, image_size=args.image_size, epochs=args.epochs,
                             batch_size=args.batch_size, workers=args.workers, patience=0)
        warm_up(params, train)
        with Reporter.open(quiet=True) as reporter:
            ctx = fold_context(project, fold=0, seed=42, workdir=Path(scratch) / "fold",
                               run_workdir=Path(scratch), reporter=reporter)
            results: dict[str, list[tuple[float, float]]] = {"comp": [], "plain": [], "plain_cl": []}
            for _ in range(args.repeats):
                results["comp"].append(timed_fit(ImageModel(params), ctx, train, valid))
                results["plain"].append(plain_loop(params, train, valid, competition.n_classes, False))
                results["plain_cl"].append(plain_loop(params, train, valid, competition.n_classes, True))
    images = args.epochs * len(train)
    rate = {name: images / min(s for s, _ in runs) for name, runs in results.items()}
    f1 = {name: runs[0][1] for name, runs in results.items()}
    print(f"{args.backbone} at {args.image_size}px from scratch: train rows {len(train)}, held-out "
          f"rows {len(valid)}, {competition.n_classes} classes, epochs {args.epochs}, batch "
          f"{args.batch_size}, workers {args.workers}, threads {torch.get_num_threads()}, "
          f"repeats {args.repeats}")
    labels = {"comp": "comp image family      ", "plain": "plain timm loop (NCHW) ",
              "plain_cl": "plain, channels_last   "}
    for name, label in labels.items():
        print(f"{label}: {rate[name]:7.1f} images/s  held-out f1_weighted {f1[name]:.4f}")
    print(f"speed ratio comp / plain: {rate['comp'] / rate['plain']:.2f}x   "
          f"comp / plain channels_last: {rate['comp'] / rate['plain_cl']:.2f}x")


def warm_up(params: ImageParams, train) -> None:
    """Untimed: read every image once (page cache) and build the kernels of both layouts."""
    backbone = timm.create_model(params.backbone, num_classes=0)
    train_transform, _, mean = transforms(backbone, params)
    dataset = ImageDataset(train.image_paths, train.y, train_transform, params.image_size, mean)
    for i in range(len(dataset)):
        dataset.load(i)
    batch = torch.randn(params.batch_size, 3, params.image_size, params.image_size)
    for layout in (torch.contiguous_format, torch.channels_last):
        model = timm.create_model(params.backbone, num_classes=10).to(memory_format=layout)
        for _ in range(2):
            model(batch.contiguous(memory_format=layout)).sum().backward()
        model.eval()
        with torch.no_grad():
            model(batch.contiguous(memory_format=layout))




def plain_loop(params: ImageParams, train, valid, n_classes: int,
               channels_last: bool) -> tuple[float, float]:
    """The notebook loop, with the same transforms and blank-image handling as comp."""
    seed_everything(42)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    started = time.perf_counter()
    model = timm.create_model(params.backbone, num_classes=n_classes, drop_rate=params.dropout)
    model = model.to(memory_format=layout)
    train_transform, eval_transform, mean = transforms(model, params)
    size = params.image_size
    loader = DataLoader(ImageDataset(train.image_paths, train.y, train_transform, size, mean),
                        batch_size=params.batch_size, shuffle=True, num_workers=params.workers,
                        collate_fn=collate)
    valid_loader = DataLoader(ImageDataset(valid.image_paths, valid.y, eval_transform, size, mean),
                              batch_size=params.batch_size, num_workers=params.workers,
                              collate_fn=collate)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr,
                                  weight_decay=params.weight_decay)
    best_f1 = 0.0
    for _ in range(params.epochs):
        model.train()
        for batch in loader:
            logits = model(batch["pixel_values"].contiguous(memory_format=layout))
            loss = torch.nn.functional.cross_entropy(logits, batch["labels"])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        probas = []
        with torch.no_grad():
            for batch in valid_loader:
                logits = model(batch["pixel_values"].contiguous(memory_format=layout))
                probas.append(torch.softmax(logits, dim=1).numpy())
        best_f1 = max(best_f1, METRICS["f1_weighted"](valid.y, np.concatenate(probas)))
    return time.perf_counter() - started, best_f1


if __name__ == "__main__":
    main()
