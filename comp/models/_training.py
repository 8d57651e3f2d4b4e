"""The one training loop every neural family shares, built on accelerate.

A family supplies a module (batch dict → logits, pooled embedding, and whatever else its
loss needs), its datasets and collate function; this loop does the rest the way a
competitor would write it: AdamW with no decay on biases and norms, separate learning
rates for the pretrained body and the new layers, linear warmup then decay, gradient
accumulation and clipping, mixed precision where the device has it, optional gradient
checkpointing, early stopping on the fold's held-out weighted F1 with the best epoch
restored, and progress bars with the loss (and its terms) and F1. One process, one GPU
or many (`accelerate launch`) run the same code.
"""

from __future__ import annotations

import contextlib
import copy
import math
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from comp.data.competition import Table
from comp.errors import CompError
from comp.metrics import METRICS
from comp.models._base import FoldContext, Model
from comp.typed import Params, Tune, param


@dataclass
class TrainParams(Params):
    """Training settings shared by every neural family (each family's Params extends it)."""

    epochs: int = param(4, ge=1)
    batch_size: int = param(32, ge=1)
    lr: float = param(1e-3, gt=0, tune=Tune(1e-4, 1e-2, log=True))
    """Learning rate of the new layers (head, projections)."""
    body_lr: float | None = param(None, gt=0)
    """Learning rate of the body (encoder, backbone); default: the family's choice, low
    for pretrained weights, `lr` for a body trained from scratch."""
    llrd: float = param(1.0, gt=0, le=1)
    """Layer-wise learning-rate decay of the body: its top layer trains at `body_lr`, each
    layer below at `llrd` times the one above, the embeddings (stem) lowest; 1: off."""
    weight_decay: float = param(0.01, ge=0, tune=Tune(1e-4, 0.1, log=True))
    warmup: float = param(0.1, ge=0, lt=1, tune=Tune(0.0, 0.3))
    """Fraction of the optimiser steps spent warming the learning rate up."""
    grad_accum: int = param(1, ge=1)
    clip_norm: float = param(1.0, ge=0)
    """Largest gradient norm; 0 turns clipping off."""
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    """auto: bf16 on a GPU that has it, else full precision."""
    grad_checkpointing: bool = False
    patience: int = param(2, ge=0)
    """Epochs without a better held-out F1 before stopping; 0 trains every epoch."""
    workers: int = param(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    length_buckets: bool = False
    """Train on batches of similar length (faster: less padding). Off by default: batch
    composition then follows text length, which cost held-out F1 on the demo
    (benchmarks/bert_train.py prints both). Prediction always sorts by length."""

    def __post_init__(self) -> None:
        super().__post_init__()
        cuda = torch.cuda.is_available()
        if self.device == "cuda" and not cuda:
            raise CompError("device=cuda was asked for, but this machine has no CUDA GPU")
        if self.precision == "fp16" and (not cuda or self.device == "cpu"):
            raise CompError("precision=fp16 needs a CUDA GPU: use precision=no or bf16 on a CPU")


class FoldModule(nn.Module):
    """What a family trains: `forward(batch) -> (logits, embedding, *more)`; `body` holds
    the pretrained part that gets `body_lr`. Prediction uses logits and embedding; `loss`
    sees all of the outputs."""

    body: nn.Module
    pretrained: bool = False

    def default_body_lr(self, lr: float) -> float:
        return lr / 10 if self.pretrained else lr

    def body_learning_rates(self, lr: float, body_lr: float | None) -> list[tuple[nn.Module, float]]:
        """Bodies with their own learning rate; every other parameter trains at `lr`."""
        return [(self.body, body_lr if body_lr is not None else self.default_body_lr(lr))]

    def loss(self, outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]
             ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The training loss and its named terms (logged per epoch); cross-entropy here."""
        return nn.functional.cross_entropy(outputs[0].float(), batch["labels"]), {}

    def enable_gradient_checkpointing(self) -> None:
        raise CompError(f"{type(self).__name__} has no gradient checkpointing")


class NeuralModel(Model):
    """A neural family: probabilities and embedding come out of one forward pass."""

    def predict_proba(self, rows: Table) -> np.ndarray:
        return self.predict_with_embedding(rows)[0]

    def embed(self, rows: Table) -> np.ndarray:
        return self.predict_with_embedding(rows)[1]

    @abstractmethod
    def predict_with_embedding(self, rows: Table) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings of `rows`, in row order."""


class BucketBatches(torch.utils.data.Sampler[list[int]]):
    """Batches of similar length (dynamic padding pads little): shuffled pools of 50
    batches are sorted by length, cut into batches, and the batches shuffled. Seeded per
    epoch, so every process of a distributed run draws the same order."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int, shuffle: bool = True):
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.shuffle = batch_size, seed, shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            yield from (order[i:i + self.batch_size].tolist()
                        for i in range(0, len(order), self.batch_size))
            return
        rng = np.random.default_rng(self.seed + self.epoch)
        order = rng.permutation(len(self.lengths))
        pool = self.batch_size * 50
        batches = []
        for start in range(0, len(order), pool):
            chunk = order[start:start + pool]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches += [chunk[i:i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        yield from (batches[i] for i in rng.permutation(len(batches)))

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)


@dataclass
class FoldData:
    """A family's datasets for one fold; `lengths` (optional) turns on length bucketing."""

    train: Dataset
    valid: Dataset
    collate: Callable[[list[Any]], dict[str, torch.Tensor]]
    train_lengths: Sequence[int] | None = None
    valid_lengths: Sequence[int] | None = None


class Trainer:
    def __init__(self, params: TrainParams, ctx: FoldContext):
        self.params, self.ctx = params, ctx
        self.accelerator = make_accelerator(params)

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    def fit(self, module: FoldModule, data: FoldData, y_valid: np.ndarray) -> FoldModule:
        """Train with early stopping on held-out weighted F1; returns the best epoch's module."""
        p, accelerator = self.params, self.accelerator
        torch.manual_seed(self.ctx.seed)
        if p.grad_checkpointing:
            module.enable_gradient_checkpointing()
        train_loader = self._loader(data.train, data.collate, data.train_lengths, shuffle=True)
        # fused: one kernel for all parameters, 4x faster steps than the per-tensor loop on a CPU
        optimizer = torch.optim.AdamW(_param_groups(module, p), lr=p.lr, fused=True)
        steps = max(1, p.epochs * math.ceil(len(train_loader) / p.grad_accum))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _warmup_then_linear(steps, p.warmup))
        module, optimizer, train_loader, scheduler = accelerator.prepare(
            module, optimizer, train_loader, scheduler
        )
        # forward through the prepared module (DDP syncs gradients), the loss from the plain one
        loss_of = accelerator.unwrap_model(module).loss
        best_f1, best_state, stale, history = -1.0, None, 0, []
        term_history: dict[str, list[float]] = {}
        reporter = self.ctx.reporter
        for epoch in range(p.epochs):
            module.train()
            sampler = getattr(train_loader, "batch_sampler", None)
            if hasattr(getattr(sampler, "batch_sampler", sampler), "set_epoch"):
                getattr(sampler, "batch_sampler", sampler).set_epoch(epoch)
            task = reporter.task(f"fold {self.ctx.fold} epoch {epoch + 1}/{p.epochs}", len(train_loader))
            running: dict[str, float] = {}
            for step, batch in enumerate(train_loader, 1):
                with accelerator.accumulate(module):
                    loss, terms = loss_of(module(batch), batch)
                    accelerator.backward(loss)
                    if accelerator.sync_gradients and p.clip_norm > 0:
                        accelerator.clip_grad_norm_(module.parameters(), p.clip_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                for name, value in {"loss": loss, **terms}.items():
                    mean = running.get(name, 0.0)
                    running[name] = mean + (value.item() - mean) / step
                reporter.advance(task, _format_terms(running, 3))
            proba, _ = self.predict(module, data.valid, data.collate, data.valid_lengths)
            f1 = METRICS["f1_weighted"](y_valid, proba)
            reporter.log(f"fold {self.ctx.fold} epoch {epoch + 1}: {_format_terms(running, 4)}, "
                         f"held-out f1_weighted {f1:.4f}")
            if len(running) > 1:  # a loss with terms: keep each term's epoch means
                for name, value in running.items():
                    term_history.setdefault(name, []).append(round(value, 6))
            reporter.remove(task)
            history.append(f1)
            if f1 > best_f1:
                best_f1, stale = f1, 0
                best_state = copy.deepcopy(accelerator.unwrap_model(module).state_dict())
            else:
                stale += 1
                if p.patience and stale >= p.patience:
                    break
        best = accelerator.unwrap_model(module)
        best.load_state_dict(best_state)
        self.ctx.stats["epoch_f1"] = [round(f, 6) for f in history]
        if term_history:
            self.ctx.stats["epoch_loss_terms"] = term_history
        return best

    @torch.no_grad()
    def predict(
        self, module: nn.Module, dataset: Dataset, collate, lengths=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings in the dataset's row order (all processes gathered)."""
        loader = self._loader(dataset, collate, lengths, shuffle=False)
        bucketed = isinstance(loader.batch_sampler, BucketBatches)
        order = np.concatenate([np.asarray(b) for b in loader.batch_sampler]) if bucketed else None
        loader = self.accelerator.prepare(loader)
        module = module.to(self.accelerator.device)
        module.eval()
        probas, embeddings = [], []
        for batch in loader:
            with self.accelerator.autocast():
                logits, embedding = module(batch)[:2]
            logits, embedding = self.accelerator.gather_for_metrics((logits.float(), embedding.float()))
            probas.append(torch.softmax(logits, dim=1).cpu().numpy())
            embeddings.append(embedding.cpu().numpy())
        proba, embedding = np.concatenate(probas), np.concatenate(embeddings)
        if order is not None:  # bucketed batches: back to row order
            inverse = np.empty_like(order)
            inverse[order] = np.arange(len(order))
            proba, embedding = proba[inverse], embedding[inverse]
        return proba, embedding

    def _loader(self, dataset, collate, lengths, shuffle: bool) -> DataLoader:
        p = self.params
        common = {"collate_fn": collate, "num_workers": p.workers}
        if lengths is not None and (p.length_buckets or not shuffle):
            sampler = BucketBatches(lengths, p.batch_size, self.ctx.seed, shuffle=shuffle)
            return DataLoader(dataset, batch_sampler=sampler, **common)
        generator = torch.Generator().manual_seed(self.ctx.seed)
        # a last training batch of one row breaks batch norm; dropping it loses one row an epoch
        drop_last = shuffle and len(dataset) % p.batch_size == 1
        return DataLoader(dataset, batch_size=p.batch_size, shuffle=shuffle, generator=generator,
                          drop_last=drop_last, **common)


def make_accelerator(params: TrainParams):
    from accelerate import Accelerator

    on_gpu = torch.cuda.is_available() and params.device != "cpu"
    precision = params.precision
    if precision == "auto":
        precision = "bf16" if on_gpu and torch.cuda.is_bf16_supported() else "no"
    return Accelerator(cpu=not on_gpu, mixed_precision=precision,
                       gradient_accumulation_steps=params.grad_accum)


@contextlib.contextmanager
def inference(device: torch.device) -> Iterator[None]:
    """No gradients; bf16 on a GPU (outputs are returned as float32 by their callers)."""
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=device.type == "cuda"):
        yield


def layer_stack(body: nn.Module) -> tuple[str, nn.Sequential | nn.ModuleList] | None:
    """The body's stack of layers (a transformer's `encoder.layer`, timm's `blocks` or
    `stages`), outermost first, or None."""
    for name, child in body.named_modules():
        if (isinstance(child, nn.Sequential | nn.ModuleList) and len(child) >= 2
                and name.rsplit(".", 1)[-1] in {"layer", "layers", "blocks", "stages"}):
            return name, child
    return None


def layerwise_rates(body: nn.Module, top_lr: float, decay: float) -> dict[int, float]:
    """Learning rate per parameter (by id): layer i of n trains at top_lr * decay**(n-1-i),
    what comes before the stack (embeddings, stem) at top_lr * decay**n, the rest at top_lr."""
    rates = {id(weight): top_lr for weight in body.parameters()}
    found = layer_stack(body) if decay != 1 else None
    if found is None:
        return rates
    name, layers = found
    for i, layer in enumerate(layers):
        rates.update({id(weight): top_lr * decay ** (len(layers) - 1 - i) for weight in layer.parameters()})
    for weight_name, weight in body.named_parameters():
        if weight_name.startswith(f"{name}."):
            break
        rates[id(weight)] = top_lr * decay ** len(layers)
    return rates


def freeze_layers(body: nn.Module, n: int) -> list[str]:
    """Freeze what comes before the body's layer stack (embeddings) and its first `n` layers;
    the names frozen."""
    if n == 0:
        return []
    found = layer_stack(body)
    if found is None:
        raise CompError(f"freeze_layers needs a layer stack; {type(body).__name__} has none")
    name, layers = found
    if n > len(layers):
        raise CompError(f"freeze_layers={n}, but the encoder has {len(layers)} layers")
    frozen = []
    for weight_name, weight in body.named_parameters():
        if weight_name.startswith(f"{name}."):
            break
        weight.requires_grad = False
        frozen.append(weight_name.split(".")[0])
    for layer in layers[:n]:
        layer.requires_grad_(False)
    return [*dict.fromkeys(frozen), *(f"{name}.{i}" for i in range(n))]


def _param_groups(module: FoldModule, p: TrainParams) -> list[dict[str, Any]]:
    """Learning rates (bodies layer by layer, new layers) × decay or not (biases and norms
    get none)."""
    lr_of = {key: lr for part, top_lr in module.body_learning_rates(p.lr, p.body_lr)
             for key, lr in layerwise_rates(part, top_lr, p.llrd).items()}
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, weight in module.named_parameters():
        if not weight.requires_grad:
            continue
        no_decay = weight.ndim <= 1 or name.endswith(".bias")
        groups.setdefault((lr_of.get(id(weight), p.lr), no_decay), []).append(weight)
    return [
        {"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else p.weight_decay}
        for (lr, no_decay), params in groups.items()
    ]


def _format_terms(running: dict[str, float], digits: int) -> str:
    return ", ".join(f"{name} {value:.{digits}f}" for name, value in running.items())


def _warmup_then_linear(total_steps: int, warmup: float) -> Callable[[int], float]:
    warmup_steps = max(1, int(total_steps * warmup))

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return factor
