"""Runs `nemoguardrails server ARGS...` bound to 127.0.0.1 instead of the 0.0.0.0 its CLI hard-codes (it
has no --host option), so a test or walk-through server is never reachable from the network.

Executed by the NeMo venv's own python (`python nemo_loopback.py server --config ...`), which does not
have tunesafe installed: this file imports nothing from tunesafe."""

from __future__ import annotations

import sys
from typing import Any


def main(argv: list[str]) -> None:
    import uvicorn
    from nemoguardrails.cli import app

    serve = uvicorn.run

    def loopback_run(application: Any, *args: Any, **options: Any) -> None:
        options["host"] = "127.0.0.1"
        serve(application, *args, **options)

    # the CLI looks up uvicorn.run when it starts the server, so the replacement is what it calls
    uvicorn.run = loopback_run  # type: ignore[assignment]
    app(args=argv, prog_name="nemoguardrails")


if __name__ == "__main__":
    main(sys.argv[1:])
