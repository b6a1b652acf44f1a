"""The web: fetch one of the project's own pages by URL (no network)."""

from __future__ import annotations

from tunesafe.agents.environments.base import Environment, Tool, ToolError, World, add


def fetch_page(world: World, url: str) -> str:
    if url not in world.web:
        raise ToolError(f"404 not found: {url}")
    return world.web[url]


WEB = add(Environment("web", "Read-only web pages.", (
    Tool("fetch_page", "Fetch the text of a web page.", fetch_page, {"url": ("string", "the page URL")}),
)))
