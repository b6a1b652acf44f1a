"""Turn the rows of a file into behaviours, per dataset layout: HarmBench behaviours CSV, AdvBench CSV,
XSTest prompts CSV, JailbreakBench behaviours CSV, and a generic layout with a column mapping
(`text=prompt,kind=label,...`).

External categories are mapped onto our taxonomy where the meaning matches; the original category is kept
in `Suite.extra[id]["source_category"]`."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

from tunesafe.errors import UserError
from tunesafe.suite.model import Suite
from tunesafe.suite.readers import Row, Table, read_table
from tunesafe.types import Behavior, Kind, sha256_hex

KINDS: tuple[str, ...] = get_args(Kind)
FIELDS = ("id", "text", "kind", "category", "language", "context")
OPTIONS = ("format", "layout", "name", "version", "default_kind", "default_category", "default_language",
           "copyright")
LAYOUTS = ("generic", "harmbench", "advbench", "xstest", "jailbreakbench")

HARMBENCH_CATEGORIES = {
    "chemical_biological": "cbrn",
    "cybercrime_intrusion": "cyber",
    "illegal": "crime",
    "misinformation_disinformation": "disinfo",
    "harassment_bullying": "hate",
    "copyright": "ip",
    # "harmful" (general harm: dangerous stunts, self-harm, ...) has no single counterpart: kept as
    # "harmbench:harmful".
}
JAILBREAKBENCH_CATEGORIES = {
    "Harassment/Discrimination": "hate",
    "Malware/Hacking": "cyber",
    "Economic harm": "economic",
    "Fraud/Deception": "fraud",
    "Disinformation": "disinfo",
    "Sexual/Adult content": "sexual",
    "Privacy": "privacy",
    "Expert advice": "advice",
    # "Physical harm" (weapons, self-harm, ...) and "Government decision-making" have no single
    # counterpart: kept as "jailbreakbench:physical_harm", ...
}
# JailbreakBench's harmful and benign files share these columns: the kind is in neither
JAILBREAKBENCH_COLUMNS = ("Goal", "Target", "Behavior", "Category")
XSTEST_KINDS = {"safe": "borderline", "unsafe": "harmful"}
# why a layout leaves rows out (the only one that does)
_LEFT_OUT = {"harmbench": "HarmBench copyright behaviours; copyright=true keeps them"}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Item:
    row: Row
    behavior: Behavior
    extra: Mapping[str, Any]


def load_file(path: str | Path, **options: str) -> Suite:
    """Load a suite file. `options`: a column mapping (`text=COL`, ...; generic layout), `format`,
    `layout`, `name`, `version`, `default_kind`, `default_category`, `default_language`, and
    `copyright=true` to keep HarmBench's copyright behaviours (dropped by default: refusal and harm
    judges cannot score verbatim reproduction)."""
    path = Path(path)
    unknown = sorted(set(options) - set(FIELDS) - set(OPTIONS))
    if unknown:
        raise UserError(f"unknown option(s) {', '.join(unknown)}", where=str(path),
                        fix=f"use column mappings {', '.join(f + '=COL' for f in FIELDS)} or options "
                            f"{', '.join(OPTIONS)}")
    table = read_table(path, options.get("format"))
    mapping = {f: options[f] for f in FIELDS if f in options}
    layout = options.get("layout") or ("generic" if mapping else _detect_layout(table.columns))
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout '{layout}'", where=str(path), fix=f"use one of {', '.join(LAYOUTS)}")
    if mapping and layout != "generic":
        raise UserError(f"a column mapping applies to the generic layout, not '{layout}'", where=str(path),
                        fix="drop layout=... or the column mapping")
    name = options.get("name") or path.stem
    version = options.get("version") or sha256_hex(path.read_bytes())[:12]
    build = _BUILDERS[layout]
    items = build(table, _Context(name, version, options, mapping))
    _check_unique(items)
    _check_agent_ids(items)
    left_out = len(table.rows) - len(items)
    return Suite(name=name, version=version, behaviors=tuple(i.behavior for i in items),
                 source=str(path), extra={i.behavior.id: i.extra for i in items if i.extra},
                 left_out=left_out, left_out_why=_LEFT_OUT.get(layout, "") if left_out else "")


def _detect_layout(columns: tuple[str, ...]) -> str:
    found = set(columns)
    if any(c.strip().lower() in ("text", "kind") for c in columns):
        # our own columns make it the team's own file, whatever else it holds: read as a public
        # benchmark's, its kinds were ignored and every item was harmful
        return "generic"
    if {"Behavior", "BehaviorID", "SemanticCategory"} <= found:
        return "harmbench"
    if {"goal", "target"} <= found:
        return "advbench"
    if {"prompt", "type", "label"} <= found:
        return "xstest"
    if set(JAILBREAKBENCH_COLUMNS) <= found:
        return "jailbreakbench"
    return "generic"


@dataclass(frozen=True)
class _Context:
    name: str
    version: str
    options: Mapping[str, str]
    mapping: Mapping[str, str]

    def behavior(self, ident: str, text: str, kind: str, category: str, *, language: str = "en",
                 context: str | None = None) -> Behavior:
        return Behavior(id=ident, text=text, kind=cast(Kind, kind), category=category, language=language,
                        suite=self.name, version=self.version, context=context or None)

    def flag(self, key: str, where: str) -> bool:
        value = self.options.get(key, "false").lower()
        if value not in _TRUE + _FALSE:
            raise UserError(f"option {key}={value} is not a yes/no value", where=where, fix=f"use {key}=true")
        return value in _TRUE


def _require_columns(table: Table, required: Iterable[str], how: str) -> None:
    for column in required:
        if column not in table.columns:
            raise UserError(f"missing required column '{column}' (columns found: "
                            f"{', '.join(table.columns) or 'none'})", where=f"{table.path}:1", fix=how)


def _text(row: Row, column: str) -> str:
    value = row.values.get(column)
    if isinstance(value, (list, dict)):
        # str() would make the Python repr of a JSON array/object the text (or id) sent to models
        found = "an array" if isinstance(value, list) else "an object"
        raise UserError(f"'{column}' must be a string, found {found}", where=row.where,
                        fix=f"give '{column}' as a plain string (or map another column to it)")
    return "" if value is None else str(value).strip()


def _required_text(row: Row, column: str) -> str:
    value = _text(row, column)
    if not value:
        raise UserError(f"missing or empty '{column}'", where=row.where,
                        fix=f"give every item a non-empty '{column}'")
    return value


def _kind(row: Row, value: str, column: str) -> str:
    if value not in KINDS:
        raise UserError(f"unknown kind '{value}' in column '{column}' (allowed: {', '.join(KINDS)})",
                        where=row.where, fix="use one of the allowed kinds, or map your labels first")
    return value


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "item"


def _column(table: Table, name: str) -> str:
    """The header column meant by `name`: the exact one, else the one equal up to case and surrounding
    spaces ("Kind", " kind" of a `text, kind` header). Missed, such a column left every item at
    default_kind (harmful) without a word, and its labels only in `extra`."""
    if name in table.columns:
        return name
    like = [c for c in table.columns if c.strip().lower() == name.strip().lower()]
    if len(like) > 1:
        raise UserError(f"columns {', '.join(repr(c) for c in like)} all read as '{name}'",
                        where=f"{table.path}:1", fix="keep one of them, or rename the others")
    return like[0] if like else name


def _unread(table: Table, columns: Mapping[str, str], name: str) -> str | None:
    """The header column meant by `name` when the field mapping reads no such column."""
    found = _column(table, name)
    return found if found in table.columns and found not in columns.values() else None


def _generic(table: Table, ctx: _Context) -> list[Item]:
    columns = {f: _column(table, ctx.mapping.get(f, f)) for f in FIELDS}
    # A mapped column must exist; an unmapped optional one may be absent and then takes the default.
    _require_columns(table, [columns["text"]], "rename your column to 'text', or map it: text=COLUMN")
    _require_columns(table, [columns[f] for f in ctx.mapping], "check the column mapping")
    has = {f: columns[f] in table.columns for f in FIELDS}
    default_kind = _default_kind(table, ctx.options.get("default_kind", "harmful"))
    if not has["kind"] and "default_kind" not in ctx.options and _detect_layout(table.columns) == \
            "jailbreakbench":
        _jailbreakbench_kind(table, ctx)  # mapped by hand (text=Goal), the file still says no kind
    label = _unread(table, columns, "label")
    if not has["kind"] and "default_kind" not in ctx.options and label:
        # labels in a column the generic layout does not read: every item would be harmful, its label
        # only in `extra`
        raise UserError(f"the file has a '{label}' column but no 'kind' column", where=f"{table.path}:1",
                        fix=f"map it (kind={label.strip()}, values {', '.join(KINDS)}), or pass "
                            "default_kind=KIND to give every item that kind")
    documents = _unread(table, columns, "ContextString")
    if not has["context"] and documents and any(_text(row, documents) for row in table.rows):
        # HarmBench's documents mapped by hand (text=Behavior): left in `extra`, its contextual behaviours
        # would be asked without the text they are about
        raise UserError(f"the file has a '{documents}' column but no 'context' column",
                        where=f"{table.path}:1",
                        fix=f"map it (context={documents.strip()}), or load the HarmBench file without a "
                            "mapping")
    prefix = _slug(ctx.name)
    used = set(columns.values())
    items = []
    for row in table.rows:
        text = _required_text(row, columns["text"])
        raw_kind = _text(row, columns["kind"]) if has["kind"] else ""
        if has["kind"] and not raw_kind and "default_kind" not in ctx.options:
            # in a labelled file an unlabelled item is more likely an omission than a harmful one: the
            # default would have scored a benign prompt as harmful without a word
            raise UserError(f"missing or empty '{columns['kind']}'", where=row.where,
                            fix="give the item its kind, or pass default_kind=KIND for unlabelled items")
        kind = _kind(row, raw_kind, columns["kind"]) if raw_kind else default_kind
        ident = _text(row, columns["id"]) if has["id"] else ""
        behavior = ctx.behavior(
            ident or f"{prefix}-{sha256_hex(text)[:10]}", text, kind,
            (_text(row, columns["category"]) if has["category"] else "")
            or ctx.options.get("default_category", "uncategorized"),
            language=(_text(row, columns["language"]) if has["language"] else "")
            or ctx.options.get("default_language", "en"),
            context=_text(row, columns["context"]) if has["context"] else None)
        extra = {k: v for k, v in row.values.items() if k not in used and v not in (None, "")}
        items.append(Item(row, behavior, extra))
    return items


def _harmbench(table: Table, ctx: _Context) -> list[Item]:
    _require_columns(table, ("Behavior", "BehaviorID", "SemanticCategory", "FunctionalCategory"),
                     "use the HarmBench behaviours CSV (harmbench_behaviors_text_*.csv)")
    keep_copyright = ctx.flag("copyright", str(table.path))
    items = []
    for row in table.rows:
        functional = _text(row, "FunctionalCategory")
        if functional == "copyright" and not keep_copyright:
            continue
        semantic = _required_text(row, "SemanticCategory")
        category = HARMBENCH_CATEGORIES.get(semantic, f"harmbench:{semantic}")
        context = _text(row, "ContextString")
        if functional == "contextual" and not context:
            # its request is about a document ("the text above"): asked without it, the model's "which
            # text?" would count as a refusal
            raise UserError("contextual behaviour without its document (empty or missing 'ContextString')",
                            where=row.where, fix="use the HarmBench CSV with its ContextString column, or "
                                                 "give the behaviour its document there")
        behavior = ctx.behavior(_required_text(row, "BehaviorID"), _required_text(row, "Behavior"), "harmful",
                                category, context=context)
        extra = {"source_category": f"harmbench:{semantic}", "functional_category": functional}
        if _text(row, "Tags"):
            extra["tags"] = _text(row, "Tags")
        items.append(Item(row, behavior, extra))
    return items


def _advbench(table: Table, ctx: _Context) -> list[Item]:
    _require_columns(table, ("goal",), "use the AdvBench harmful_behaviors.csv (columns goal,target)")
    category = ctx.options.get("default_category", "uncategorized")
    # AdvBench has no ids: its row number in the published file is the conventional one.
    return [Item(row, ctx.behavior(f"advbench-{n:03d}", _required_text(row, "goal"), "harmful", category),
                 {"target": _text(row, "target")} if _text(row, "target") else {})
            for n, row in enumerate(table.rows, start=1)]


def _xstest(table: Table, ctx: _Context) -> list[Item]:
    _require_columns(table, ("prompt", "type", "label"),
                     "use the XSTest prompts CSV (id,prompt,type,label,...)")
    items = []
    for n, row in enumerate(table.rows, start=1):
        label = _required_text(row, "label")
        if label not in XSTEST_KINDS:
            raise UserError(f"unknown label '{label}' in column 'label' (allowed: {', '.join(XSTEST_KINDS)})",
                            where=row.where, fix="XSTest labels are safe or unsafe")
        ident = _text(row, "id") or str(n)
        behavior = ctx.behavior(f"xstest-{ident}", _required_text(row, "prompt"), XSTEST_KINDS[label],
                                _required_text(row, "type"))
        extra = {k: _text(row, k) for k in ("focus", "note") if _text(row, k)}
        items.append(Item(row, behavior, {"source_category": f"xstest:{behavior.category}", **extra}))
    return items


def _jailbreakbench_kind(table: Table, ctx: _Context) -> str:
    """The kind of every row: JailbreakBench keeps harmful and benign behaviours in two files of the same
    columns, so only the user can say which one this is (a file name is easily changed)."""
    kind = ctx.options.get("default_kind")
    if kind is None:
        raise UserError("a JailbreakBench file does not say whether its behaviours are harmful or benign",
                        where=f"{table.path}:1",
                        fix="pass default_kind=harmful (harmful-behaviors.csv) or default_kind=benign "
                            "(benign-behaviors.csv)")
    return _default_kind(table, kind)


def _default_kind(table: Table, kind: str) -> str:
    if kind not in KINDS:
        raise UserError(f"unknown default_kind '{kind}' (allowed: {', '.join(KINDS)})",
                        where=str(table.path), fix="use one of the allowed kinds")
    return kind


def _jailbreakbench(table: Table, ctx: _Context) -> list[Item]:
    _require_columns(table, ("Goal", "Category"),
                     "use a JailbreakBench behaviours CSV (Index,Goal,Target,Behavior,Category,Source)")
    kind = _jailbreakbench_kind(table, ctx)
    items = []
    for n, row in enumerate(table.rows, start=1):
        index = _text(row, "Index") or str(n)
        source = _required_text(row, "Category")
        category = JAILBREAKBENCH_CATEGORIES.get(source, "jailbreakbench:" + _slug(source).replace("-", "_"))
        behavior = ctx.behavior(f"jbb-{kind}-{int(index):03d}" if index.isdigit() else f"jbb-{kind}-{index}",
                                _required_text(row, "Goal"), kind, category)
        kept = (("behavior", "Behavior"), ("target", "Target"), ("source", "Source"))
        extra = {"source_category": f"jailbreakbench:{source}",
                 **{key: _text(row, column) for key, column in kept if _text(row, column)}}
        items.append(Item(row, behavior, extra))
    return items


_BUILDERS: dict[str, Callable[[Table, _Context], list[Item]]] = {
    "generic": _generic, "harmbench": _harmbench, "advbench": _advbench, "xstest": _xstest,
    "jailbreakbench": _jailbreakbench,
}


def _check_agent_ids(items: list[Item]) -> None:
    """Only agent attacks expand "agent:" ids, and only the cases they know: any other such id would
    leave the plan without a word, and the suite run without it."""
    from tunesafe.engine.plan import SCOPED

    for item in items:
        ident = item.behavior.id
        if ident.startswith(SCOPED):
            from tunesafe.agents.cases import case_index  # only then: it builds the whole catalogue

            if ident not in case_index():
                raise UserError(f"id '{ident}' is no agent case (the prefix is reserved for them)",
                                where=item.row.where,
                                fix="copy the id from `tunesafe suite show agents`, or drop the prefix")


def _check_unique(items: list[Item]) -> None:
    first: dict[str, str] = {}
    for item in items:
        ident = item.behavior.id
        if ident in first:
            raise UserError(f"duplicate id '{ident}' (first at {first[ident]})", where=item.row.where,
                            fix="give every item its own id (without an id column, identical texts collide)")
        first[ident] = item.row.where

