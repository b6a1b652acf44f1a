"""`tunesafe serve`: the dashboard over the store. Thin: resolve the token, refuse an exposed address
without one (tunesafe.web.auth.check_bind), build the app and run it with uvicorn."""

from __future__ import annotations

from pathlib import Path

import typer

from tunesafe.cli.common import console, db_url, err_console
from tunesafe.cli.groups import AUDIT
from tunesafe.errors import UserError


def serve(
    ctx: typer.Context,
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind. Any non-loopback address needs a token."
    ),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port."),
    token_file: Path = typer.Option(
        None,
        "--token-file",
        help="File holding the access token (else TUNESAFE_TOKEN). With a token every request must sign "
        "in, and incident updates and control attestations are allowed.",
    ),
) -> None:
    """Serve the dashboard: inventory, models, runs, gates with drill-down, incidents, evidence."""
    try:
        from tunesafe.web.app import create_app
        from tunesafe.web.auth import check_bind, read_token
    except ModuleNotFoundError as exc:
        raise UserError(f"the dashboard needs {exc.name}", fix="pip install 'tunesafe[web]'") from None
    import uvicorn

    from tunesafe.evidence.workspace import open_store

    access = check_bind(host, read_token(token_file))
    # a dashboard over a new empty store shows nothing; one without a token only reads, so it opens the
    # store read-only (an auditor's copy on a read-only mount) and never migrates it. With a token, a store
    # this process may not write is still served to read: the officer reviewing it needs no writable copy.
    store = open_store(db_url(ctx), must_exist=True, read_only=not access.writable,
                       read_only_where_unwritable=True)
    if store.write_blocked is not None:
        err_console.print(f"writing is off: {store.location}: {store.write_blocked}; pages are served "
                          "read-only and updates, attestations and sign-outs are refused", highlight=False,
                          soft_wrap=True)
    if not access.writable:
        mode = "read-only, no sign-in"
    else:
        mode = "sign-in required, " + ("writing off" if store.read_only else "writes allowed")
    shown = f"[{host}]" if ":" in host else host
    console.print(
        f"tunesafe dashboard on http://{shown}:{port} ({mode}); store {store.location}",
        highlight=False,
        soft_wrap=True,
    )
    try:
        uvicorn.run(create_app(store, access), host=host, port=port, log_level="warning", server_header=False)
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    app.command(rich_help_panel=AUDIT)(serve)
