"""Progress bars for long work: the harness shows folds, models add their epochs or steps."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def stderr_console() -> Console:
    return Console(stderr=True)


class Reporter:
    """A thin handle on one rich Progress display, passed to models through the fold context."""

    def __init__(self, progress: Progress, quiet: bool = False):
        self._progress, self._quiet = progress, quiet

    @classmethod
    @contextlib.contextmanager
    def open(cls, console: Console | None = None, quiet: bool = False) -> Iterator[Reporter]:
        """`quiet` for the non-main processes of a distributed run: one voice is enough."""
        progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"),
            console=console or stderr_console(),
            transient=False,
            disable=quiet,
        )
        with progress:
            yield cls(progress, quiet)

    def track(self, items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
        """Iterate over `items` with a bar; the bar is removed when the loop ends."""
        if total is None and hasattr(items, "__len__"):
            total = len(items)  # type: ignore[arg-type]
        task = self._progress.add_task(description, total=total, status="")
        try:
            for item in items:
                yield item
                self._progress.advance(task)
        finally:
            self._progress.remove_task(task)

    def task(self, description: str, total: int | None) -> int:
        return self._progress.add_task(description, total=total, status="")

    def advance(self, task: int, status: str = "") -> None:
        self._progress.update(task, advance=1, status=status)

    def remove(self, task: int) -> None:
        self._progress.remove_task(task)

    def log(self, message: str) -> None:
        if not self._quiet:
            self._progress.console.print(message)
