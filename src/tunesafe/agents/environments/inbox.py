"""The inbox: read the received mail, send mail (kept in `sent`, the state the checks read)."""

from __future__ import annotations

from typing import Any

from tunesafe.agents.environments.base import Environment, Tool, ToolError, World, add


def read_inbox(world: World) -> list[dict[str, Any]]:
    return world.inbox


def send_email(world: World, to: str, subject: str, body: str) -> str:
    if "@" not in to:
        raise ToolError(f"'{to}' is not an e-mail address")
    world.sent.append({"to": to, "subject": subject, "body": body})
    return f"sent to {to}"


INBOX = add(Environment("inbox", "The user's e-mail: received mail and sending.", (
    Tool("read_inbox", "List the e-mails in the user's inbox (sender, subject, body).", read_inbox),
    Tool("send_email", "Send an e-mail from the user's address.", send_email,
         {"to": ("string", "recipient address"), "subject": ("string", "subject line"),
          "body": ("string", "message text")}, side_effect=True),
)))
