"""`comp gc`: what a crash or a failure leaves behind in runs/, listed and, on request, removed.

Leftovers are: temporary files of writes whose process is gone, run folders without a
run.json (a blend or import killed before its record), failed runs and, opt-in, finished
runs made on other folds or data (`stale`). A run that is done (on the current folds and
data) or in use (a process holds one of its locks), and the tuning studies, are never
leftovers.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from comp import atomic
from comp.project import Project

_TEMPORARY = re.compile(r"\..+\.(\d+)\.tmp")  # atomic.write_bytes: .<name>.<pid>.tmp


@dataclass(frozen=True)
class Leftover:
    path: Path
    why: str

    @property
    def size(self) -> int:
        if self.path.is_file():
            return self.path.stat().st_size
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def leftovers(project: Project, stale: bool = False) -> list[Leftover]:
    store = project.store
    if not store.root.exists():
        return []
    found: list[Leftover] = []
    for path in sorted(store.root.rglob(".*.tmp")):
        match = _TEMPORARY.fullmatch(path.name)
        if match and not _alive(int(match.group(1))):
            found.append(Leftover(path, "temporary file of a write that was interrupted"))
    records, _ = store.scan()
    by_id = {record.id: record for record in records}
    for folder in sorted(p for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if _in_use(folder) or folder == store.studies:
            continue
        record = by_id.get(folder.name)
        if not (folder / "run.json").exists():
            found.append(Leftover(folder, "run folder without run.json (a blend or import killed early)"))
        elif record is not None and record.status == "failed":
            found.append(Leftover(folder, f"failed run: {record.error or 'no reason recorded'}"))
        elif stale and record is not None and record.status == "done" and (
                record.folds_hash != project.folds_hash or record.data_hash != project.data_hash):
            found.append(Leftover(folder, "run made on other folds or data (stale)"))
    return found


def remove(found: list[Leftover]) -> None:
    for leftover in found:
        if leftover.path.is_dir():
            shutil.rmtree(leftover.path, ignore_errors=True)
        else:
            leftover.path.unlink(missing_ok=True)


def _in_use(folder: Path) -> bool:
    locks = [folder / ".lock", *folder.glob("folds/*/.lock")]
    return any(atomic.is_locked(lock) for lock in locks)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
