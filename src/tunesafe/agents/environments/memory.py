"""Notes that outlive an episode: the agent saves and searches them; the memory family carries them from
one episode to the next."""

from __future__ import annotations

from tunesafe.agents.environments.base import Environment, Tool, World, add


def save_memory(world: World, text: str) -> str:
    world.memory.append(text)
    return "saved"


def search_memory(world: World, query: str) -> list[str]:
    words = [w for w in query.lower().split() if w]
    return [note for note in world.memory if not words or any(w in note.lower() for w in words)]


MEMORY = add(Environment("memory", "The user's persistent notes.", (
    Tool("save_memory", "Save a note to the user's persistent notes.", save_memory,
         {"text": ("string", "the note")}, side_effect=True),
    Tool("search_memory", "Search the user's notes (words of the query; empty query: all notes).",
         search_memory, {"query": ("string", "search words")}),
)))
