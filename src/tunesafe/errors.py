"""User-facing errors. Anything a user can fix (bad input, missing file, unreachable server) raises
UserError; the CLI prints its one-line message and exits 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


class TunesafeError(Exception):
    exit_code = 1


class UserError(TunesafeError):
    """A mistake the user can fix. `where` names the file/line/key/URL; `fix` says what to do."""

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.message = message
        self.where = where
        self.fix = fix
        super().__init__(self.render())

    def render(self, redact: Callable[[str], str] = str) -> str:
        """The one-line message; `redact` masks credentials in the parts that may quote user input (the
        fix is our own text, and its placeholders such as postgresql://USER@HOST must stay readable)."""
        text = f"{redact(self.where)}: {redact(self.message)}" if self.where else redact(self.message)
        return f"{text} (fix: {self.fix})" if self.fix else text


class StoreUnavailable(UserError):
    """The store's database failed (a file deleted, corrupted or locked, a server gone). Still exit 2 on the
    command line; the dashboard answers 503 for it, since the request was not the thing at fault."""


class EndpointUnavailable(UserError):
    """A model endpoint failed every request for longer than a run may pause. The run stops resumably;
    exit 3 (inconclusive: nothing was decided), not 2 (nothing the user typed was wrong)."""

    exit_code = 3


class ReplicasDisagree(EndpointUnavailable):
    """The replicas of one model answered as different models (their replies name different model ids):
    the run stops like for an outage, but it is marked failed, not interrupted: the answers it holds may
    mix the two, and a resume would keep them."""


def read_user_text(path: str | Path, what: str, fix: str) -> str:
    """The text of a file the user named, or a UserError naming it: a missing file, a folder and bytes
    that are not UTF-8 (a ValueError, which `except OSError` lets through as a traceback) alike; bad bytes
    are named by line. A leading BOM, as Windows editors write one, is dropped: it is not part of the
    first key, record or token."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read the {what}: {exc.strerror or exc}", where=str(path), fix=fix) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(f"the {what} is not valid UTF-8 text (byte 0x{data[exc.start]:02x})",
                        where=f"{path}:{line}",
                        fix="save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)") from None
