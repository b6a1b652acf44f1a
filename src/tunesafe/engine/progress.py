"""The run's progress bar on stderr (counts, ETA, error count), so stdout stays clean for --json."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class RunProgress:
    """A no-op when disabled (library use, tests), a Rich bar otherwise. Attempts already stored by an
    earlier session of a resumed run count as done from the start."""

    def __init__(self, total: int, done: int = 0, *, enabled: bool = True) -> None:
        self.errors = 0
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]eval[/]"), BarColumn(), MofNCompleteColumn(),
                TextColumn("[red]{task.fields[errors]} errors[/]"),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=Console(stderr=True), transient=False)
            self._task = self._progress.add_task("eval", total=total, completed=done, errors=0)

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, *, error: bool) -> None:
        self.errors += error
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, errors=self.errors)
