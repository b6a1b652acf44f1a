"""Reading a policy file: YAML -> validated Policy, or one UserError naming the file, line and key path
with the fix (never a traceback)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError

from tunesafe.errors import UserError, read_user_text
from tunesafe.policy.model import Policy
from tunesafe.yaml_input import UniqueKeyLoader

INIT_HINT = "the commented example from `tunesafe policy init` lists every key"


def default_policy_text() -> str:
    """The commented default policy that `tunesafe policy init` writes and `gate` uses without --policy."""
    return files("tunesafe.policy").joinpath("default_policy.yaml").read_text(encoding="utf-8")


def default_policy() -> Policy:
    return parse_policy(default_policy_text(), "built-in default policy")


def load_policy(path: str | Path) -> Policy:
    path = Path(path)
    if not path.exists():
        raise UserError("policy file not found", where=str(path),
                        fix="check the path, or create one with `tunesafe policy init`")
    text = read_user_text(path, "policy file", fix="pass a readable UTF-8 YAML file")
    return parse_policy(text, str(path))


def parse_policy(text: str, source: str) -> Policy:
    try:
        data = yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no arbitrary objects
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        fix = ("write the key once (put everything under one `name:`)" if problem.startswith("duplicate key")
               else "check indentation and quoting (a key is `name: value`)")
        raise UserError(f"invalid YAML: {problem}", where=where, fix=fix) from None
    if not isinstance(data, dict):
        raise UserError("a policy must be a YAML mapping of keys to values", where=source,
                        fix="start from the file `tunesafe policy init` writes")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        raise _user_error(exc, source, tree) from None


def _user_error(exc: ValidationError, source: str, tree: yaml.Node | None) -> UserError:
    errors = exc.errors(include_url=False)
    problems = [f"{_path(e['loc'])}: {_message(e)}" for e in errors]
    first = errors[0]
    line = _line_of(tree, first["loc"])
    return UserError("; ".join(problems), where=f"{source}:{line}" if line else source, fix=_fix(first))


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def _message(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        return "unknown key"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _fix(error: Any) -> str:
    if error["type"] == "extra_forbidden":
        allowed = _allowed_keys(error["loc"][:-1])
        known = f"; allowed here: {', '.join(allowed)}" if allowed else ""
        return f"remove the key or correct its spelling{known}"
    return f"set a valid value; {INIT_HINT}"


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    model: Any = Policy
    for part in parent:
        if not _is_model(model) or str(part) not in model.model_fields:
            return []
        model = _model_in(model.model_fields[str(part)].annotation)
    return list(model.model_fields) if _is_model(model) else []


def _model_in(annotation: Any) -> Any:
    """The model inside an optional section (`TrainingPolicy | None`), else the annotation itself."""
    return next((arg for arg in get_args(annotation) if _is_model(arg)), annotation)


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at loc in the composed YAML, or of its nearest ancestor that exists."""
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if str(k.value) == str(part)), None)
        if match is None:
            break
        line = match[0].start_mark.line + 1
        node = match[1]
    return line
