"""YAML a person wrote (policies, inventories), read so that nothing they wrote is silently dropped."""

from __future__ import annotations

from typing import Any

import yaml

from tunesafe.errors import UserError


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: PyYAML keeps the last value, so a repeated
    section, threshold or inventory field would silently replace the first (a `<<:` merge may still be
    overridden)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"duplicate key '{key}'",
                    key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def yaml_user_error(exc: yaml.YAMLError, source: str, text: str,
                    fix: str = "fix the YAML syntax") -> UserError:
    """One line naming source:line for what PyYAML refused: its own text runs over several lines, and a
    reader error (a control character such as NUL) carries a character position instead of a mark."""
    mark = getattr(exc, "problem_mark", None)
    if mark is not None:
        line: int | None = mark.line + 1
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
    else:
        line = None
    problem = str(getattr(exc, "problem", None) or exc).splitlines()[0]
    if problem.startswith("duplicate key"):
        fix = "write the key once"
    elif isinstance(exc, yaml.reader.ReaderError):
        fix = f"{fix} (control characters such as NUL are not allowed)"
    return UserError(f"invalid YAML: {problem}", where=f"{source}:{line}" if line else source, fix=fix)
