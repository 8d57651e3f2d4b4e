"""The one text builder every text model reuses: a product's fields as one string.

Title first, then description (HTML stripped), attributes, characteristics, then the plain
text columns (shop title). Lists become comma-separated, dicts `name: values` lines joined
by semicolons; empty parts are dropped. Bad input is data: a JSON value that does not parse
is kept as plain text, undecodable bytes are replaced, NaN and None are empty.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

_TAG = re.compile(r"<[^>]*>")


def strip_html(text: str) -> str:
    """Tags become spaces, entities characters, runs of whitespace one space."""
    if "<" in text or "&" in text:
        text = html.unescape(_TAG.sub(" ", text))
    # str.split() and the regex \s agree on what is whitespace; split is 3x faster
    return " ".join(text.split())


def flatten(value: Any) -> str:
    """Text of one field: strings lose their HTML, lists and dicts become readable lines."""
    if isinstance(value, str):  # first: nearly every call is a string
        return strip_html(value)
    if value is None:
        return ""
    if isinstance(value, dict):
        parts = ((flatten(k), flatten(v)) for k, v in value.items())
        return "; ".join([f"{k}: {v}" for k, v in parts if v])
    if isinstance(value, list | tuple | np.ndarray):
        return ", ".join([p for p in map(flatten, value) if p])
    if isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bytes):  # a binary column: undecodable bytes must not end a run
        return strip_html(value.decode("utf-8", errors="replace"))
    return str(value)


def build_text(json_value: Any, plain_values: Sequence[Any], json_keys: Sequence[str]) -> str:
    """One product's text: the JSON fields (in `json_keys` order) then the plain columns.

    A JSON value that does not parse is kept as plain text: bad input is data, not a crash.
    A parquet struct column arrives already parsed, as a dict.
    """
    fields = json_value
    if isinstance(json_value, str):
        try:
            fields = json.loads(json_value)
        except json.JSONDecodeError:
            pass
    if isinstance(fields, dict):
        parts = [flatten(fields.get(key)) for key in (json_keys or list(fields))]
    else:
        parts = [flatten(fields)]
    parts += [flatten(v) for v in plain_values]
    return "\n".join([p for p in parts if p])


def build_texts(json_values: Sequence[Any] | None, plain_columns: Sequence[Sequence[Any]],
                json_keys: Sequence[str], n_rows: int) -> list[str]:
    """`build_text` over columns: the JSON column (or None) and the plain text columns."""
    json_values = json_values if json_values is not None else [None] * n_rows
    rows = zip(*plain_columns, strict=True) if plain_columns else ((),) * n_rows
    return [build_text(j, plain, json_keys) for j, plain in zip(json_values, rows, strict=True)]
