"""User-facing errors. Anything a user can fix (bad input, missing file, unreachable server) raises
UserError; the CLI prints its one-line message and exits 2, never a traceback."""

from __future__ import annotations


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

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        return f"{text} (fix: {self.fix})" if self.fix else text


class EndpointUnavailable(UserError):
    """A model endpoint failed every request for longer than a run may pause. The run stops resumably;
    exit 3 (inconclusive: nothing was decided), not 2 (nothing the user typed was wrong)."""

    exit_code = 3
