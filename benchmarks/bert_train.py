"""Training throughput of comp's loop against a plain Hugging Face Trainer, same model.

Both train the offline default encoder (comp's EncoderClassifier) on fold 0 of the demo
competition for the same epochs, batch size and learning rate, evaluating the held-out
fold after each epoch. comp's loop pads each batch to its own longest row (random
batches by default; `length_buckets=true` also groups rows of similar length); the
Trainer baseline pads every row to max_len, as the usual notebook does.

    .venv/bin/python benchmarks/bert_train.py [--epochs 2] [--max-len 128]

Prints samples/s of each, their ratio and each held-out weighted F1.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from fold_timing import timed_fit

from comp.data.demo import DemoSpec
from comp.data.scaffold import init_demo
from comp.data.workspace import Workspace
from comp.metrics import METRICS
from comp.models._text import TextEncoder, build_encoder, load_tokenizer
from comp.models.bert import Bert, BertParams, EncoderClassifier
from comp.progress import Reporter
from comp.project import Project
from comp.runs.fold import seed_everything
from comp.runs.runner import fold_context


class WithLoss(torch.nn.Module):
    """comp's module with the (input_ids, attention_mask, labels) → loss signature Trainer wants."""

    def __init__(self, module: EncoderClassifier):
        super().__init__()
        self.module = module

    def forward(self, input_ids, attention_mask, labels=None):
        logits, _ = self.module({"input_ids": input_ids, "attention_mask": attention_mask})
        loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


class Padded(torch.utils.data.Dataset):
    def __init__(self, encoded, labels):
        self.encoded, self.labels = encoded, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": torch.tensor(self.encoded["input_ids"][i]),
                "attention_mask": torch.tensor(self.encoded["attention_mask"][i]),
                "labels": torch.tensor(int(self.labels[i]))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as folder:
        workspace = Workspace(Path(folder))
        init_demo(workspace, DemoSpec(image_size=None), force=False)
        project = Project(workspace)
        competition = project.competition
        folds, _ = project.make_folds(5, 42, force=False)
        train = competition.train.take(folds.training(0))
        valid = competition.train.take(folds.held_out(0))
        params = BertParams(epochs=args.epochs, max_len=args.max_len, batch_size=args.batch_size,
                            patience=0)
        with Reporter.open(quiet=True) as reporter:
            ctx = fold_context(project, fold=0, seed=42, workdir=workspace.root / "scratch",
                               run_workdir=workspace.root / "scratch", reporter=reporter)
            tokenizer = load_tokenizer(None, params.vocab_size, ctx)  # built once, outside both timings

            comp_results = {
                buckets: timed_fit(Bert(replace(params, length_buckets=buckets)), ctx, train, valid)
                for buckets in (False, True)
            }

        hf_seconds, hf_f1 = trainer_baseline(params, tokenizer, train, valid, competition.n_classes,
                                             Path(folder) / "hf")
    samples = args.epochs * len(train)
    hf_rate = samples / hf_seconds
    print(f"train rows {len(train)}, held-out rows {len(valid)}, epochs {args.epochs}, "
          f"batch {args.batch_size}, max_len {args.max_len}, threads {torch.get_num_threads()}")
    print(f"HF Trainer (pad to max_len):  {hf_rate:7.1f} samples/s  held-out f1_weighted {hf_f1:.4f}")
    for buckets, (seconds, f1) in comp_results.items():
        label = "comp, length buckets" if buckets else "comp (default)      "
        rate = samples / seconds
        print(f"{label}:          {rate:7.1f} samples/s  held-out f1_weighted {f1:.4f}  "
              f"ratio {rate / hf_rate:.2f}x")




def trainer_baseline(params, tokenizer, train, valid, n_classes, output_dir):
    from transformers import Trainer, TrainingArguments

    seed_everything(42)
    encoder, pretrained = build_encoder(None, params, tokenizer)
    model = WithLoss(EncoderClassifier(TextEncoder(encoder, "mean"), n_classes, params.dropout,
                                       params.emb_dim, pretrained))

    def padded(rows):
        encoded = tokenizer(list(rows.text), truncation=True, max_length=params.max_len,
                            padding="max_length")
        return Padded(encoded, rows.y)

    arguments = TrainingArguments(
        output_dir=str(output_dir), per_device_train_batch_size=params.batch_size,
        per_device_eval_batch_size=params.batch_size, num_train_epochs=params.epochs,
        learning_rate=params.lr, warmup_steps=params.warmup, weight_decay=params.weight_decay,
        max_grad_norm=params.clip_norm, eval_strategy="epoch", save_strategy="no",
        logging_strategy="no", report_to=[], use_cpu=True, seed=42, disable_tqdm=True,
    )
    trainer = Trainer(model=model, args=arguments, train_dataset=padded(train),
                      eval_dataset=padded(valid))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    logits = trainer.predict(padded(valid)).predictions
    logits = logits[0] if isinstance(logits, tuple) else logits
    return seconds, METRICS["f1_weighted"](valid.y, logits)


if __name__ == "__main__":
    main()
