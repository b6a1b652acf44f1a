"""Workspace and evidence commands (`init`, `verify`) and the model inventory (`models add|list|show|
import`). Thin: parse, call tunesafe.evidence / tunesafe.production, render."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import typer
from rich.markup import escape
from rich.text import Text
from rich.tree import Tree

from tunesafe.cli.common import JSON_OPTION, console, db_url, err_console, print_json, print_rows
from tunesafe.cli.groups import AUDIT, models_app
from tunesafe.errors import UserError
from tunesafe.evidence.workspace import init_workspace, open_store
from tunesafe.production import inventory as inv
from tunesafe.production.importer import import_inventory, read_inventory
from tunesafe.types import EvidenceRecord


def init(path: Path = typer.Argument(Path("."), help="Folder to create .tunesafe/ in.")) -> None:
    """Create a workspace: PATH/.tunesafe/ with config.yaml and the evidence database."""
    workspace, created = init_workspace(path)
    verb = "Created" if created else "Already initialised:"
    console.print(f"{verb} workspace {workspace.dir} (database {workspace.db_url()})",
                  highlight=False, soft_wrap=True)


def verify(ctx: typer.Context,
           anchor: list[str] = typer.Option([], "--anchor", help="ID:SHA256 of a record written down "
                                            "earlier (a head printed by verify); it must still hash so. "
                                            "Repeatable."),
           bundle: Path = typer.Option(None, "--bundle", help="An evidence bundle: its records and chain "
                                       "head must still be in this chain with the same hashes."),
           as_json: bool = JSON_OPTION) -> None:
    """Recompute the evidence hash chain and each run's results digest; name the first broken record.
    Exit 1 when broken."""
    anchors = _anchors(anchor)
    if bundle is not None:
        from tunesafe.governance.bundle import bundle_anchors

        anchors.update(bundle_anchors(bundle))
    from tunesafe.engine.verify import verify_store

    with open_store(db_url(ctx), read_only=True) as store:
        result = verify_store(store, anchors)
        location = store.location
    if as_json:
        print_json({"location": location, "anchors": len(anchors), **result.__dict__})
    elif result.ok:
        anchored = f", {len(anchors)} anchored record(s) match" if anchors else ""
        console.print(f"[green]OK[/] evidence chain intact: {result.checked} records, head "
                      f"{result.head_id}:{result.head_hash}{escape(f'{anchored} ({location})')}",
                      highlight=False, soft_wrap=True, markup=True)
    else:
        bad = result.first_bad
        assert bad is not None
        err_console.print(
            f"[bold red]BROKEN[/] evidence chain at record {bad.id} ({_REASONS[bad.reason]}): "
            f"expected {bad.expected}, found {bad.found} ({escape(location)})", highlight=False,
            soft_wrap=True, markup=True)
    if not result.ok:
        raise typer.Exit(1)


def migrate(ctx: typer.Context) -> None:
    """Bring the store's schema up to this tunesafe version's. Commands that record evidence do it when
    they open the store; commands that only read, and the dashboard without a token, never do."""
    from tunesafe.evidence.database import SCHEMA_HEAD

    with open_store(db_url(ctx), must_exist=True) as store:
        before, location = store.migrated_from, store.location
    done = f"Migrated {location} from revision {before} to {SCHEMA_HEAD}" if before is not None else \
        f"Schema already at revision {SCHEMA_HEAD}: nothing to do ({location})"
    console.print(done, highlight=False, soft_wrap=True)


_REASONS = {
    "hash": "content edited",
    "link": "a record before it was deleted or reordered",
    "head": "records at the end were deleted, or the chain head was edited",
    "anchor": "not the hash anchored outside the store: the chain was rewritten or cut",
    "results": "its run's stored results (answers, verdicts) were edited, added or deleted",
}


def _anchors(items: Sequence[str]) -> dict[int, str]:
    out = {}
    for item in items:
        rid, sep, digest = item.strip().partition(":")
        digest = digest.strip().lower()
        if not (sep and rid.isascii() and rid.isdigit() and int(rid) >= 1 and len(digest) == 64
                and all(c in "0123456789abcdef" for c in digest)):
            raise UserError(f"expected ID:SHA256, got {item!r}", where="--anchor",
                            fix="e.g. --anchor 42:<64 hex digits>, as `tunesafe verify` prints the head")
        out[int(rid)] = digest
    return out


# ---- models -------------------------------------------------------------------------------------------

STAGE_HELP = f"Lifecycle stage: {', '.join(inv.STAGES)}."


def models_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Inventory name of this model."),
    ref: str = typer.Option(..., "--ref", help="Model ref: openai:MODEL@URL, hf:PATH[+ADAPTER], gguf:PATH, "
                            "embedded:NAME or litellm:MODEL. Local files are content-hashed."),
    base: str = typer.Option(None, "--base", help="Name of the model this one was fine-tuned from."),
    dataset: list[Path] = typer.Option([], "--dataset", help="Fine-tuning dataset (repeatable); hashed."),
    training_config: Path = typer.Option(None, "--training-config", help="Training config file; hashed."),
    stage: str = typer.Option("dev", "--stage", help=STAGE_HELP),
    owner: str = typer.Option(None, "--owner", help="Who is accountable for this model."),
    vendor_eval: Path = typer.Option(None, "--vendor-eval", help="Vendor's evaluation report; hashed."),
    new_version: bool = typer.Option(False, "--new-version",
                                     help="Record a new version of an existing name."),
    as_json: bool = JSON_OPTION,
) -> None:
    """Record a model version in the inventory (an evidence record, with file hashes)."""
    spec = inv.ModelSpec(name=name, ref=ref, base=base, datasets=tuple(str(d) for d in dataset),
                         training_config=str(training_config) if training_config else None, stage=stage,
                         owner=owner, vendor_eval=str(vendor_eval) if vendor_eval else None)
    inv.check_spec(spec, Path.cwd())  # bad input must not leave a new, empty store at a new --db path
    # --base and --new-version name models already in the inventory: a store that is not there has none
    with open_store(db_url(ctx), must_exist=bool(base) or new_version) as store:
        model = inv.add_model(store, spec, new_version=new_version)
    if as_json:
        print_json(model.as_dict())
    else:
        hashed = len(model.files) + len(model.datasets)
        console.print(f"Recorded {model.name} version {model.version} (record {model.record_id}, "
                      f"{hashed} file hashes)", highlight=False, soft_wrap=True)


def models_update(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Inventory name."),
    stage: str = typer.Option(None, "--stage", help=STAGE_HELP),
    owner: str = typer.Option(None, "--owner", help="New owner."),
) -> None:
    """Change a model's stage or owner (appends an update record; history is kept)."""
    with open_store(db_url(ctx), must_exist=True) as store:
        model = inv.update_model(store, name, stage=stage, owner=owner)
    console.print(f"{model.name}: stage {model.stage}, owner {model.owner or '-'}", highlight=False)


def models_list(
    ctx: typer.Context,
    stage: str = typer.Option(None, "--stage", help="Only models at this stage."),
    missing_post_eval: bool = typer.Option(False, "--missing-post-eval", help="Only fine-tuned models whose "
                                           "current version has no safety evaluation or gate decision."),
    missing_guardrail: bool = typer.Option(False, "--missing-guardrail", help="List production endpoints "
                                           "instead: those without a guardrail that passed verification."),
    as_json: bool = JSON_OPTION,
) -> None:
    """List the inventory (current state of each model)."""
    if missing_guardrail:
        from tunesafe.cli.guardrail_cmds import print_endpoints

        print_endpoints(ctx, missing_guardrail=True, as_json=as_json)
        return
    with open_store(db_url(ctx), read_only=True) as store:
        models = inv.list_models(store, stage, missing_post_eval=missing_post_eval)
        evals = inv.evaluations(store)
    rows = []
    for model in models:
        latest = inv.latest_evaluation(model, evals)
        label = f"{_eval_label(latest)} (#{latest.id})" if latest else "missing" if model.fine_tuned else None
        rows.append({**model.as_dict(), "post_eval": label})
    columns = ["name", "version", "stage", "base", "owner", "ref", "post_eval"]
    title = "Fine-tuned models lacking post-fine-tuning safety evaluation" if missing_post_eval else "Models"
    print_rows(rows, columns, title=title, as_json=as_json)


def models_show(ctx: typer.Context, name: str = typer.Argument(..., help="Inventory name."),
                as_json: bool = JSON_OPTION) -> None:
    """Lineage tree base -> ... -> NAME with file hashes and the evidence attached to each model."""
    with open_store(db_url(ctx), read_only=True) as store:
        lineage = inv.get_lineage(store, name)
        attached = {m.name: inv.attached_records(store, m.name) for m in lineage}
    if as_json:
        print_json({"name": name, "lineage": [
            {**m.as_dict(), "evidence": [_record_summary(r) for r in attached[m.name]]} for m in lineage]})
        return
    root = tree = Tree(_model_label(lineage[0]))
    for position, model in enumerate(lineage):
        if position:
            tree = tree.add(_model_label(model))
        _add_details(tree, model, attached[model.name])
    console.print(root)


def models_import(ctx: typer.Context, file: Path = typer.Argument(..., help="Inventory as .csv or .yaml."),
                  skip_existing: bool = typer.Option(False, "--skip-existing",
                                                     help="Skip names already in the inventory."),
                  as_json: bool = JSON_OPTION) -> None:
    """Import an existing inventory (CSV or YAML); all rows or none are recorded."""
    models = read_inventory(file)  # a bad file is refused before a new store is made at a new --db path
    with open_store(db_url(ctx)) as store:
        result = import_inventory(store, file, skip_existing=skip_existing, models=models)
    if as_json:
        print_json({"added": result.added, "skipped": result.skipped})
    else:
        console.print(f"Imported {len(result.added)} models" +
                      (f", skipped {len(result.skipped)} already present" if result.skipped else ""))


def _model_label(model: inv.ModelVersion) -> Text:
    rest = f"stage={model.stage} owner={model.owner or '-'} record={model.record_id}"
    return Text.from_markup(f"[bold]{escape(model.name)}[/] v{model.version} [dim]{escape(model.ref)}[/] "
                            f"{escape(rest)}")


def _add_details(tree: Tree, model: inv.ModelVersion, records: Sequence[EvidenceRecord]) -> None:
    hashed = [(str(f["role"]), f) for f in model.files] + [("dataset", d) for d in model.datasets]
    hashed += [(label, entry) for label, entry in (("training config", model.training_config),
                                                   ("vendor eval", model.vendor_eval)) if entry]
    for label, entry in hashed:
        tree.add(Text.from_markup(f"{label}: sha256 {entry['sha256']} [dim]{escape(str(entry['path']))}[/]"))
    if records:
        evidence = tree.add("evidence")
        for rec in records:
            evidence.add(Text.from_markup(f"#{rec.id} {escape(_eval_label(rec))} "
                                          f"[dim]{rec.created_at} by {escape(rec.actor)}[/]"))


def _eval_label(record: EvidenceRecord) -> str:
    verdict = record.body.get("verdict")
    return f"{record.type} {verdict}" if verdict else record.type


def _record_summary(record: EvidenceRecord) -> dict[str, object]:
    return {"id": record.id, "type": record.type, "created_at": record.created_at, "actor": record.actor,
            "hash": record.hash, "verdict": record.body.get("verdict")}


def register(app: typer.Typer) -> None:
    models_app.command("add")(models_add)
    models_app.command("update")(models_update)
    models_app.command("list")(models_list)
    models_app.command("show")(models_show)
    models_app.command("import")(models_import)
    app.command(rich_help_panel=AUDIT)(init)
    app.command(rich_help_panel=AUDIT)(verify)
    app.command(rich_help_panel=AUDIT)(migrate)
