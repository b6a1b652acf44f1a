"""Every command line users can copy from README.md, docs/*.md, CHANGELOG.md and BENCHMARKS.md exists as
written: `tunesafe ...` lines name real subcommands, options that exist where they are written and an
acceptable number of arguments; `make X` names a Makefile target; `python benchmarks/X.py --opt` names a
script and options its parser defines. Nothing is executed: commands are parsed with shlex and checked
against the Typer command tree and the scripts' source."""

from __future__ import annotations

import ast
import difflib
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer

from tunesafe.cli.app import app

ROOT = Path(__file__).parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "CHANGELOG.md",
        ROOT / "BENCHMARKS.md"]
FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
# A code span: a run of backticks, its text, the same run again; it may wrap lines but not paragraphs.
SPAN = re.compile(r"(?<!`)(`+)(?!`)(.+?)(?<!`)\1(?!`)", re.DOTALL)
SEPARATORS = {"|", "||", "&&", ";", "&"}
REDIRECT = re.compile(r"^(\d*>>?|&>|<|\d*>&\d+)(.*)$")
PLACEHOLDERS = {"...", "…"}


@dataclass(frozen=True)
class Snippet:
    where: str  # file:line
    text: str
    inline: bool  # a code span in prose: may name a command without its arguments


@dataclass(frozen=True)
class Command:
    where: str
    text: str
    inline: bool
    words: tuple[str, ...]  # after the program name, brackets and placeholders taken out
    open_ended: bool  # a `...` stands for more arguments


def snippets(path: Path) -> Iterator[Snippet]:
    """Each logical line of a fenced or indented code block (backslash continuations joined) and each
    code span of the prose."""
    lines = path.read_text(encoding="utf-8").splitlines()
    name = path.relative_to(ROOT).as_posix()
    prose: list[str] = []
    fence: str | None = None
    indented = False
    pending: tuple[int, str] | None = None  # a code line that ends in a backslash, and where it began
    for number, line in enumerate(lines, 1):
        marker = FENCE.match(line)
        if fence is None and marker:
            fence, pending, indented = marker.group(1), None, False
        elif fence is not None and set(line.strip()) == {fence[0]} and len(line.strip()) >= len(fence):
            fence = None
        else:
            # an indented code block: four spaces after a blank line, or after another of its lines
            indented = fence is None and line.startswith("    ") and (
                number == 1 or indented or not lines[number - 2].strip())
            if fence is not None or indented:
                start, text = pending or (number, "")
                if line.endswith("\\"):
                    pending = (start, text + line[:-1] + " ")
                else:
                    pending = None
                    yield Snippet(f"{name}:{start}", (text + line).strip(), inline=False)
        prose.append(line if fence is None and not marker else "")
    text = "\n".join(prose)
    for match in SPAN.finditer(text):
        body = match.group(2)
        if "\n\n" in body:
            continue
        number = text.count("\n", 0, match.start()) + 1
        # In a table a code span writes its pipe as \|.
        yield Snippet(f"{name}:{number}", body.replace("\\|", "|").replace("\n", " ").strip(), inline=True)


def commands(paths: list[Path], is_program: Any) -> Iterator[Command]:
    """The shell commands of every snippet whose program `is_program(words)` accepts, one per segment of a
    pipeline or `&&` chain; redirections, a `$ ` prompt and leading VAR=value assignments left out."""
    for path in paths:
        for snippet in snippets(path):
            text = snippet.text.removeprefix("$ ")
            if not re.search(r"(^|[\s/;&|(])(tunesafe|make|python3?)\s", text):
                continue
            try:
                lexer = shlex.shlex(text, posix=True)
                lexer.whitespace_split, lexer.commenters = True, "#"
                tokens = list(lexer)
            except ValueError as exc:
                # a span of prose with an apostrophe is no command line; one that starts like one is
                assert not re.match(r"(\S*/)?(tunesafe|make|python3?)\s", text), f"{snippet.where}: {exc}"
                continue
            for segment in _segments(tokens):
                while segment and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", segment[0]):
                    segment = segment[1:]
                if segment and (words := is_program(segment)) is not None:
                    cleaned, open_ended = _without_placeholders(words)
                    yield Command(snippet.where, " ".join(segment), snippet.inline, cleaned, open_ended)


def _segments(tokens: list[str]) -> Iterator[list[str]]:
    segment: list[str] = []
    skip_target = False
    for token in tokens:
        if skip_target:
            skip_target = False
        elif token in SEPARATORS:
            yield segment
            segment = []
        elif redirect := REDIRECT.match(token):
            skip_target = not redirect.group(2)
        else:
            segment.append(token)
    yield segment


def _without_placeholders(words: list[str]) -> tuple[tuple[str, ...], bool]:
    """`[--follow]` and `[--sample RATE]` are optional parts: their words are checked like any other. A
    `...` stays, as an option's value or as more arguments."""
    kept: list[str] = []
    open_ended = False
    for word in words:
        if word.startswith("[") and not word.startswith("[]"):
            word = word[1:]
        word = word.rstrip("]") if word.endswith("]") and "[" not in word else word
        if not word:
            continue
        open_ended = open_ended or word.endswith(("...", "…"))
        kept.append(word)
    return tuple(kept), open_ended


# --- the tunesafe command tree -------------------------------------------------------------------------

def _tunesafe_words(segment: list[str]) -> list[str] | None:
    if segment[0] == "tunesafe" or segment[0].endswith("/tunesafe"):
        return segment[1:]
    if segment[0].split("/")[-1].startswith("python") and segment[1:3] == ["-m", "tunesafe"]:
        return segment[3:]
    return None


def _options(command: Any) -> dict[str, Any]:
    found = {"--help": None}
    for param in command.params:
        if param.param_type_name == "option":
            for name in (*param.opts, *param.secondary_opts):
                found[name] = param
    return found


def _arguments(command: Any) -> tuple[int, float]:
    """The fewest and most positional words `command` accepts."""
    low, high = 0, 0.0
    for param in command.params:
        if param.param_type_name == "argument":
            many = param.nargs == -1
            low += (1 if many else param.nargs) if param.required else 0
            high += float("inf") if many else param.nargs
    return low, high


def _takes_value(param: Any, following: str | None) -> int:
    """How many of the following words an option consumes."""
    if param is None or param.is_flag and not getattr(param, "_flag_needs_value", False) or param.count:
        return 0
    if getattr(param, "_flag_needs_value", False):  # an optional value: taken when one follows
        return 0 if following is None or following.startswith("-") else 1
    return max(param.nargs, 1)


def _default_command(group: Any, words: tuple[str, ...]) -> str | None:
    """The sub-command a group picks itself when the first word names none (`tunesafe judge FILE.jsonl`
    runs `judge pairs`), asked of the group's own parser without running anything."""
    context = group.make_context(group.name, list(words), resilient_parsing=True)
    first = [*getattr(context, "_protected_args", []), *context.args][:1]
    return first[0] if first and first[0] in group.commands and first[0] != words[0] else None


@cache
def root_command() -> Any:
    return typer.main.get_command(app)  # builds the whole click tree: once


def check_tunesafe(command: Command) -> list[str]:
    return _walk(root_command(), command.words, ("tunesafe",), [], command)


def _walk(current: Any, words: tuple[str, ...], path: tuple[str, ...], outer: list[tuple[str, Any]],
          command: Command) -> list[str]:
    """The mistakes in `words` given to the command at `path`; `outer` are the groups above it, whose
    options click would refuse here."""
    i, positional, errors = 0, 0, []
    while i < len(words):
        word = words[i]
        if word == "--":
            positional += len(words) - i - 1
            break
        if word.startswith("-") and len(word) > 1 and not re.fullmatch(r"-[\d.]+", word):
            name = word.split("=", 1)[0]
            options = _options(current)
            if name not in options:
                owner = next((" ".join(p) for p, c in reversed(outer) if name in _options(c)), None)
                if owner:
                    errors.append(f"{name} is an option of `{owner}`: it goes before `{path[-1]}`")
                else:
                    close = difflib.get_close_matches(name, [o for o in options if o != "--help"], 1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    errors.append(f"`{' '.join(path)}` has no option {name}{hint}")
                # its value, if it has one, is no argument: one mistake, one message
                i += 2 if "=" not in word and i + 1 < len(words) and not words[i + 1].startswith("-") else 1
                continue
            following = words[i + 1] if i + 1 < len(words) else None
            need = 0 if "=" in word else _takes_value(options[name], following)
            if len(words) - i - 1 < need and not command.inline:
                errors.append(f"{name} needs a value")
            i += 1 + need
            continue
        if hasattr(current, "commands") and positional == 0:
            if word not in current.commands and (default := _default_command(current, words[i:])):
                words, word = (*words[:i], default, *words[i:]), default
            # `incidents open/due` and `policy init|validate` name several sub-commands
            names = [word] if word in current.commands else re.split(r"[/|]", word)
            missing = [n for n in names if n not in current.commands]
            if missing:
                close = difflib.get_close_matches(missing[0], list(current.commands), 1)
                hint = f" (did you mean `{' '.join(path)} {close[0]}`?)" if close else ""
                errors.append(f"`{' '.join(path)}` has no command {missing[0]!r}{hint}")
                return errors
            rest = words[i + 1:]
            nested = [(path, current), *outer]
            for name in names:
                errors += _walk(current.commands[name], rest, (*path, name), nested, command)
            return errors
        positional += word not in PLACEHOLDERS
        i += 1
    if hasattr(current, "commands"):
        return errors  # a group named on its own: `tunesafe models`
    low, high = _arguments(current)
    named_only = command.inline and not words  # prose naming a command: `tunesafe policy init|validate`
    if positional > high:
        errors.append(f"`{' '.join(path)}` takes at most {int(high)} argument(s), given {positional}")
    elif positional < low and not command.open_ended and not named_only:
        errors.append(f"`{' '.join(path)}` needs {low} argument(s), given {positional}")
    return errors


@pytest.mark.parametrize(("line", "mistake"), [
    ("gate --bse B --candidate C", "`tunesafe gate` has no option --bse (did you mean --base?)"),
    ("eval MODEL --db x.db", "--db is an option of `tunesafe`: it goes before `eval`"),
    ("model list", "`tunesafe` has no command 'model' (did you mean `tunesafe models`?)"),
    ("incidents open/nope", "`tunesafe incidents` has no command 'nope'"),
    ("runs rejudge", "`tunesafe runs rejudge` needs 1 argument(s), given 0"),
    ("models list --json extra", "`tunesafe models list` takes at most 0 argument(s), given 1"),
    ("judge FILE.jsonl --nope", "`tunesafe judge pairs` has no option --nope"),
    ("scan-data a.jsonl --fix", "--fix needs a value"),
])
def test_the_check_finds_each_kind_of_mistake(line: str, mistake: str) -> None:
    command = Command("x.md:1", line, inline=False, words=tuple(shlex.split(line)), open_ended=False)
    assert mistake in " ".join(check_tunesafe(command))


def test_the_check_passes_what_the_cli_accepts() -> None:
    lines = ["--db x.db eval M --suite smoke", "judge FILE.jsonl --judge default", "policy init",
             "monitor ingest - --model m --follow", "eval --resume RUN --retry-errors", "--version"]
    assert {line: check_tunesafe(Command("x.md:1", line, False, tuple(shlex.split(line)), False))
            for line in lines} == dict.fromkeys(lines, [])


def report(failures: list[str]) -> str:
    return f"{len(failures)} documented command(s) do not match:\n" + "\n".join(failures)


def test_every_documented_tunesafe_command_exists_as_written() -> None:
    checked = list(commands(DOCS, _tunesafe_words))
    assert len(checked) > 100  # the extraction itself still finds the docs' commands
    failures = [f"{c.where}: `{c.text}`: {'; '.join(errors)}" for c in checked
                if (errors := check_tunesafe(c))]
    assert not failures, report(failures)


# --- make targets --------------------------------------------------------------------------------------

def _make_words(segment: list[str]) -> list[str] | None:
    return segment[1:] if segment[0] == "make" else None


def make_targets(text: str) -> set[str]:
    rules = re.findall(r"^([A-Za-z0-9_.$()/ -]+?)\s*:(?![=:])", text, re.MULTILINE)
    return {target for rule in rules for target in rule.split()}


def test_every_documented_make_target_exists() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = make_targets(makefile)
    failures = []
    for command in commands(DOCS, _make_words):
        goals = [w for w in command.words if not w.startswith("-") and "=" not in w]
        failures += [f"{command.where}: `{command.text}`: the Makefile has no target {goal!r}"
                     for goal in goals if goal not in targets]
        settings = [w.split("=", 1)[0] for w in command.words if "=" in w and not w.startswith("-")]
        failures += [f"{command.where}: `{command.text}`: the Makefile reads no variable {name}"
                     for name in settings if f"$({name})" not in makefile]
    assert not failures, report(failures)


# --- benchmark scripts ---------------------------------------------------------------------------------

def _benchmark_words(segment: list[str]) -> list[str] | None:
    if segment[0].split("/")[-1].startswith("python") and len(segment) > 1 \
            and segment[1].startswith("benchmarks/"):
        return segment[1:]
    return None


@cache
def script_options(path: Path) -> frozenset[str]:
    """The options a benchmark script's command line defines, read from its source: the names given to
    `add_argument`, those it looks for in sys.argv itself, and those of a sibling script whose main() it
    hands the command line to."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {"-h", "--help"}
    siblings = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names
                if (path.parent / f"{alias.name}.py").is_file()}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "add_argument":
                found |= {a.value for a in node.args
                          if isinstance(a, ast.Constant) and str(a.value).startswith("-")}
            elif node.func.attr == "main" and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id in siblings:
                found |= script_options(path.parent / f"{node.func.value.id}.py")
        elif isinstance(node, ast.Compare) and "sys.argv" in ast.unparse(node):
            found |= {c.value for c in ast.walk(node) if isinstance(c, ast.Constant)
                      and str(c.value).startswith("--")}
    return frozenset(found)


def test_every_documented_benchmark_command_exists() -> None:
    failures = []
    for command in commands(DOCS, _benchmark_words):
        script, *rest = command.words
        path = ROOT / script
        if not path.is_file():
            failures.append(f"{command.where}: `{command.text}`: no script {script}")
            continue
        options = script_options(path)
        for word in rest:
            name = word.split("=", 1)[0]
            if name.startswith("-") and len(name) > 1 and not re.fullmatch(r"-[\d.,]+", name) \
                    and name not in options:
                close = difflib.get_close_matches(name, sorted(options), 1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                failures.append(f"{command.where}: `{command.text}`: {script} has no option {name}{hint}")
    assert not failures, report(failures)


def test_script_options_follow_a_hand_parsed_flag_and_a_delegated_parser() -> None:
    # judge_variants.py reads --stored from sys.argv itself and hands the rest to judges.py's main()
    options = script_options(ROOT / "benchmarks" / "judge_variants.py")
    assert {"--stored", "--judge", "--styles"} <= options
    assert "--style" not in options


def test_make_targets_are_the_rules_not_the_variables() -> None:
    targets = make_targets("X := 1\nY ?= 2\nall: $(STAMP)\n\t$(X)\ndemo production-demo: all\n")
    assert targets == {"all", "demo", "production-demo"}
