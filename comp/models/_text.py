"""Text machinery shared by the families with a text encoder (bert, huse, embed): the
tokenizer, the encoder with its pooling, padding.

A pretrained encoder (`backbone=NAME`: a name from `comp weights`, a local Hugging Face
folder or a hub name) comes with its own tokenizer, its own maximum length (`max_len` is
capped by it) and the pooling it was trained with (`pooling=auto`: the sentence-transformers
pooling config when the folder has one, else `[CLS]`, the BERT convention).

Without a backbone, an offline default trains for real on any machine: a small BERT built
from a config in code, with a WordPiece tokenizer trained on the competition's own train
and test text and cached in the workspace (built once, reused by every fold and run on
the same data), mean-pooled.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

from comp.errors import CompError
from comp.models._base import FoldContext
from comp.models._training import freeze_layers, inference
from comp.typed import Params, param

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PRETRAINED_BODY_LR = 3e-5


@dataclass
class TextEncoderParams(Params):
    """Truncation, pooling, frozen layers, and the size of the offline default encoder
    (unused for a pretrained one); shared by every family with a text encoder."""

    max_len: int = param(128, ge=8)
    """Longest token sequence; a pretrained encoder's own limit caps it."""
    pooling: Literal["auto", "mean", "cls"] = "auto"
    """auto: the encoder's sentence-transformers pooling when it has one, else cls for a
    pretrained encoder and mean for the offline default."""
    freeze_layers: int = param(0, ge=0)
    """Freeze the embeddings and the first N transformer layers (0: train everything)."""
    from_scratch: bool = False
    """With a backbone: its architecture and tokenizer with random weights (the control
    that shows what the pretrained weights bring)."""
    vocab_size: int = param(8000, ge=100)
    hidden: int = param(128, ge=8)
    layers: int = param(2, ge=1)
    heads: int = param(2, ge=1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.hidden % self.heads:
            raise CompError(f"hidden must be a multiple of heads, got hidden={self.hidden} "
                            f"and heads={self.heads}")


class TextDataset(torch.utils.data.Dataset):
    def __init__(self, input_ids: list[list[int]], labels: np.ndarray | None):
        self.input_ids, self.labels = input_ids, labels

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int) -> tuple[list[int], int]:
        return self.input_ids[i], -1 if self.labels is None else int(self.labels[i])


class PadCollate:
    """Pads a batch to its own longest row, not to max_len (dynamic padding)."""

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, rows: list[tuple[list[int], int]]) -> dict[str, torch.Tensor]:
        return {**self.pad([ids for ids, _ in rows]), "labels": torch.tensor([label for _, label in rows])}

    def pad(self, rows: list[list[int]]) -> dict[str, torch.Tensor]:
        width = max(len(ids) for ids in rows)
        input_ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        for i, ids in enumerate(rows):
            input_ids[i, : len(ids)] = torch.tensor(ids)
        return {"input_ids": input_ids, "attention_mask": (input_ids != self.pad_id).long()}


class TextEncoder(nn.Module):
    """A Hugging Face encoder and its pooling: a batch of token ids → one vector per row."""

    def __init__(self, model: nn.Module, pooling: Literal["mean", "cls"]):
        super().__init__()
        self.model, self.pooling = model, pooling

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    def gradient_checkpointing_enable(self) -> None:
        self.model.gradient_checkpointing_enable()

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = batch["attention_mask"]
        hidden = self.model(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)  # the real (unpadded) tokens
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


@dataclass
class TextBackbone:
    tokenizer: object
    encoder: TextEncoder
    pretrained: bool
    max_len: int
    """`max_len` capped by the encoder's own limit."""
    source: str
    """Where the weights came from: a folder, a hub name, or "offline default"."""

    def encode(self, texts) -> list[list[int]]:
        return encode_texts(self.tokenizer, texts, self.max_len)

    def embed(self, texts, batch_size: int = 64, device: torch.device | None = None,
              track: Callable[[Iterable[int]], Iterable[int]] = iter) -> np.ndarray:
        """The pooled embedding of each text, in order, without gradients: batches of similar
        length (little padding), the encoder in eval mode meanwhile. `track` wraps the batch
        starts (a progress bar)."""
        device = device or torch.device("cpu")
        ids = self.encode(texts)
        order = np.argsort([len(i) for i in ids], kind="stable")
        pad = PadCollate(self.tokenizer.pad_token_id).pad
        out = np.empty((len(ids), self.encoder.hidden_size), dtype=np.float32)
        was_training = self.encoder.training
        self.encoder.to(device).eval()
        with inference(device):
            for start in track(range(0, len(ids), batch_size)):
                chunk = order[start:start + batch_size]
                batch = {k: v.to(device) for k, v in pad([ids[i] for i in chunk]).items()}
                out[chunk] = self.encoder(batch).float().cpu().numpy()
        self.encoder.train(was_training)
        return out


def load_text_backbone(backbone: str | None, p: TextEncoderParams, ctx: FoldContext) -> TextBackbone:
    """The tokenizer and encoder of `backbone` (None: the offline default), with its pooling,
    its first `p.freeze_layers` layers frozen, and the length it can take."""
    source = ctx.weights.text_source(backbone) if backbone else None
    tokenizer = load_tokenizer(source, p.vocab_size, ctx)
    model, pretrained = build_encoder(source, p, tokenizer)
    limits = [p.max_len, getattr(model.config, "max_position_embeddings", p.max_len)]
    limits += [n for n in (getattr(tokenizer, "model_max_length", None),
                           _sentence_config(source).get("max_seq_length")) if n and n < 1_000_000]
    pooling = p.pooling
    if pooling == "auto":
        pooling = _sentence_pooling(source) or ("cls" if pretrained else "mean")
    encoder = TextEncoder(model, pooling)
    ctx.stats["text_weights"] = source if pretrained else "none"
    frozen = freeze_layers(model, p.freeze_layers)
    if frozen:
        ctx.reporter.log(f"fold {ctx.fold}: froze {', '.join(frozen)}")
    return TextBackbone(tokenizer, encoder, pretrained, min(limits), source or "offline default")


def _sentence_config(source: str | None, name: str = "sentence_bert_config.json") -> dict:
    path = Path(source or "") / name
    return json.loads(path.read_text()) if source and path.is_file() else {}


def _sentence_pooling(source: str | None) -> Literal["mean", "cls"] | None:
    config = _sentence_config(source, "1_Pooling/config.json")
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    return None


def encode_texts(tokenizer, texts, max_len: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_len)["input_ids"]


def load_tokenizer(source: str | None, vocab_size: int, ctx: FoldContext):
    """The tokenizer of `source` (a folder or hub name), or the offline default's, trained
    on the competition's text and cached per data and vocabulary size."""
    from transformers import AutoTokenizer

    if source:
        try:
            return AutoTokenizer.from_pretrained(source)
        except (OSError, ValueError) as error:
            raise ctx.weights.unavailable(source, "text", _first_line(error)) from None
    folder = ctx.cache / f"tokenizer-{ctx.data_hash}-{vocab_size}"
    if not (folder / "tokenizer.json").exists():
        _train_tokenizer(folder, ctx.corpus, vocab_size)
    return AutoTokenizer.from_pretrained(folder)


def _train_tokenizer(folder: Path, corpus: np.ndarray, vocab_size: int) -> None:
    """WordPiece on every train and test text (no labels), written atomically as a folder."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        (str(t) for t in corpus),
        trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS),
    )
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]",
    )
    staging = folder.with_name(f".{folder.name}.{os.getpid()}")
    wrapped.save_pretrained(staging)
    try:
        staging.rename(folder)
    except OSError:  # another process built it meanwhile: theirs is the same
        shutil.rmtree(staging, ignore_errors=True)


def build_encoder(source: str | None, p: TextEncoderParams, tokenizer) -> tuple[nn.Module, bool]:
    """The pretrained encoder at `source` (a folder or hub name), or the offline default's
    small BERT, and whether it is pretrained."""
    from transformers import AutoConfig, AutoModel, BertConfig, BertModel
    from transformers.utils import logging

    if source:
        logging.disable_progress_bar()  # a bar per load, per fold, in the run's log
        try:
            if p.from_scratch:
                return AutoModel.from_config(AutoConfig.from_pretrained(source)), False
            return AutoModel.from_pretrained(source), True
        except (OSError, ValueError) as error:
            raise CompError(f"cannot load the encoder {source!r}: {_first_line(error)}") from None
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=p.hidden, num_hidden_layers=p.layers,
        num_attention_heads=p.heads, intermediate_size=4 * p.hidden,
        max_position_embeddings=max(p.max_len, 16), pad_token_id=tokenizer.pad_token_id,
    )
    return BertModel(config, add_pooling_layer=False), False


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split("\n")[0].split())[:200]
