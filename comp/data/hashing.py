"""Content hashes of the data and folds files, cached by (path, size, mtime) in the
workspace's cache, so that the leaderboard can tell stale runs without parsing any file
(or importing the libraries that would parse it)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

from comp import atomic
from comp.data.config import CompConfig
from comp.data.workspace import Workspace
from comp.errors import CompError

CACHE_FILE = "file_hashes.json"


def data_hash(workspace: Workspace, config: CompConfig) -> str:
    """Content hash of both data files and of the column mapping: runs on other data differ."""
    data = config.data
    digest = hashlib.sha256()
    for relative in (data.train, data.test):
        path = workspace.path(relative)
        if not path.exists():
            raise CompError(f"the data file {path} does not exist")
        digest.update(cached_digest(path, workspace.cache, "", _sha256).encode())
    mapping = {k: v for k, v in vars(data).items() if k not in {"train", "test"}}
    digest.update(json.dumps(mapping, sort_keys=True).encode())
    return digest.hexdigest()[:16]


def stored_folds_hash(workspace: Workspace) -> str | None:
    """The hash of runs/folds.parquet as stored (no check against the train file), read
    from the cache while the file is unchanged (None before `comp folds`)."""
    if not workspace.folds_path.exists():
        return None

    def compute(path: Path) -> str:
        from comp.data.folds import hash_of_file  # polars: only when the file changed

        return hash_of_file(path)

    return cached_digest(workspace.folds_path, workspace.cache, "folds:", compute)


def cached_digest(path: Path, cache_dir: Path, kind: str, compute: Callable[[Path], str]) -> str:
    """`compute(path)`, remembered under `kind` for this file's path, size and mtime."""
    stat = path.stat()
    key = f"{kind}{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    cache_path = cache_dir / CACHE_FILE
    cache: dict[str, str] = {}
    if cache_path.exists():
        try:
            cache = json.loads(cache_path.read_text())
        except (json.JSONDecodeError, OSError):
            cache = {}
    if key not in cache:
        cache[key] = compute(path)
        if cache_dir.parent.exists():
            atomic.write_json(cache_path, cache)
    return cache[key]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
