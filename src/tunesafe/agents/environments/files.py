"""The file store: list, read, write and delete text files by path."""

from __future__ import annotations

from tunesafe.agents.environments.base import Environment, Tool, ToolError, World, add


def list_files(world: World) -> list[str]:
    return sorted(world.files)


def read_file(world: World, path: str) -> str:
    if path not in world.files:
        raise ToolError(f"no file '{path}'")
    return world.files[path]


def write_file(world: World, path: str, content: str) -> str:
    world.files[path] = content
    return f"wrote {len(content)} characters to {path}"


def delete_file(world: World, path: str) -> str:
    if world.files.pop(path, None) is None:
        raise ToolError(f"no file '{path}'")
    return f"deleted {path}"


_PATH = {"path": ("string", "file path, e.g. notes/meeting.txt")}
FILES = add(Environment("files", "The user's documents.", (
    Tool("list_files", "List the paths of the user's files.", list_files),
    Tool("read_file", "Read a text file.", read_file, _PATH),
    Tool("write_file", "Write (create or replace) a text file.", write_file,
         {**_PATH, "content": ("string", "the new content")}, side_effect=True),
    Tool("delete_file", "Delete a file.", delete_file, _PATH, side_effect=True),
)))
