"""Agent environments, one module each; importing this package registers the built-ins."""

from tunesafe.agents.environments import bank, files, inbox, memory, web  # noqa: F401  (registers them)
from tunesafe.agents.environments.base import (
    Environment,
    Tool,
    ToolError,
    World,
    all_tools,
    call_tool,
    load_world,
    registry,
    vectors,
)

__all__ = ["Environment", "Tool", "ToolError", "World", "all_tools", "call_tool", "load_world", "registry",
           "vectors"]
