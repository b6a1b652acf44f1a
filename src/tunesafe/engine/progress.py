"""The run's progress bar on stderr (counts, ETA, error count, and "paused: endpoint failing, retry in
Ns" while an endpoint's breaker holds the run), so stdout stays clean for --json."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
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

# Rich shows one live display at a time, so runs that go on together (a gate's two sides) share one,
# a row each; a run's row is labelled with its side.
_SHARED: ContextVar[Progress | None] = ContextVar("tunesafe_progress_display", default=None)
_LABEL: ContextVar[str] = ContextVar("tunesafe_progress_label", default="eval")


def _display() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
        TextColumn("[red]{task.fields[errors]} errors[/]"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        TextColumn("[yellow]{task.fields[status]}[/]"),
        console=Console(stderr=True), transient=False)


@contextmanager
def shared_display(enabled: bool = True) -> Iterator[None]:
    """Within this block, the bars of runs started in this context are rows of one display."""
    if not enabled:
        yield
        return
    display = _display()
    token = _SHARED.set(display)
    try:
        with display:
            yield
    finally:
        _SHARED.reset(token)


@contextmanager
def run_label(label: str) -> Iterator[None]:
    """Within this block, the bars of runs started in this context are labelled `label`."""
    token = _LABEL.set(label)
    try:
        yield
    finally:
        _LABEL.reset(token)


class RunProgress:
    """A no-op when disabled (library use, tests), a Rich bar otherwise. Attempts already stored by an
    earlier session of a resumed run count as done from the start."""

    def __init__(self, total: int, done: int = 0, *, enabled: bool = True) -> None:
        self.errors = 0
        self.status = ""
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._owned = False
        if enabled:
            shared = _SHARED.get()
            self._owned = shared is None
            self._progress = shared or _display()
            self._task = self._progress.add_task(_LABEL.get(), total=total, completed=done, errors=0,
                                                 status="")

    def __enter__(self) -> RunProgress:
        if self._progress is not None and self._owned:
            self._progress.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None and self._owned:
            self._progress.stop()

    def paused(self, retry_in: float | None) -> None:
        """retry_in: seconds until the failing endpoint is tried again; None when it is not paused."""
        status = "" if retry_in is None else f"paused: endpoint failing, retry in {retry_in:.0f}s"
        if status != self.status:
            self.status = status
            if self._progress is not None and self._task is not None:
                self._progress.update(self._task, status=status)

    def advance(self, *, error: bool) -> None:
        self.errors += error
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, advance=1, errors=self.errors)
