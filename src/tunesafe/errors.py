"""User-facing errors. Anything a user can fix (bad input, missing file, unreachable server) raises
UserError; the CLI prints its one-line message and exits 2, never a traceback."""

from __future__ import annotations

from collections.abc import Callable


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


class EndpointUnavailable(UserError):
    """A model endpoint failed every request for longer than a run may pause. The run stops resumably;
    exit 3 (inconclusive: nothing was decided), not 2 (nothing the user typed was wrong)."""

    exit_code = 3
