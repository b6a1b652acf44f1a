"""Documents and exports generated from evidence (`docs annex-iv|model-card`, `export cyclonedx|mlflow`),
evidence bundles (`bundle`, `verify-bundle`) and signing keys (`keys generate`). Thin: parse, call
tunesafe.governance, render."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from tunesafe.cli.common import JSON_OPTION, console, db_url, err_console, print_json, write_out
from tunesafe.cli.groups import AUDIT
from tunesafe.errors import UserError
from tunesafe.evidence.workspace import open_store

if TYPE_CHECKING:
    from tunesafe.governance.documents import ModelEvidence

docs_app = typer.Typer(help="Documents from evidence: Annex IV technical documentation, model card.",
                       no_args_is_help=True)
export_app = typer.Typer(help="Exports of a model's evidence: CycloneDX ML-BOM, MLflow run.",
                         no_args_is_help=True)
keys_app = typer.Typer(help="Ed25519 keys for signing evidence bundles.", no_args_is_help=True)

MODEL_ARG = typer.Argument(..., help="Inventory name of the model.")
CITES = "the document would cite it as evidence"
VERSION_OPTION = typer.Option(None, "--version", help="Model version (1, 2, ... or v2; default: newest).")


def _evidence(ctx: typer.Context, model: str, version: str | None, *, output: str) -> ModelEvidence:
    """The model's evidence, only from a chain that verifies: every document cites records by hash, and a
    bundle signs them, so neither may vouch for records edited in the database file."""
    from tunesafe.governance.documents import load_evidence  # lazy: keeps `tunesafe --help` light

    with open_store(db_url(ctx), read_only=True) as store:
        if (bad := store.verify().first_bad) is not None:
            raise UserError(f"the evidence chain is broken at record {bad.id} ({bad.reason}): {output}",
                            where=store.location,
                            fix="run `tunesafe verify` and restore the database from a backup")
        return load_evidence(store, model, version)


def annex_iv(ctx: typer.Context, model: str = MODEL_ARG, version: str = VERSION_OPTION,
             out: Path = typer.Option(..., "--out", help="Folder for annex-iv.md, .html and .json."),
             as_json: bool = JSON_OPTION) -> None:
    """EU AI Act Annex IV technical documentation from the model's records; sections without evidence say
    so and name the controls that would fill them."""
    from tunesafe.governance.docs_annex_iv import annex_iv as build
    from tunesafe.governance.docs_annex_iv import write_annex_iv

    doc = build(_evidence(ctx, model, version, output=CITES).facts)
    paths = write_annex_iv(doc, out)
    missing = [s.id for s in doc.sections if s.missing]
    if as_json:
        print_json({"files": {fmt: str(p) for fmt, p in paths.items()}, "missing_evidence": missing})
        return
    filled = len(doc.sections) - len(missing)
    console.print(f"Wrote {paths['markdown']}, {paths['html'].name}, {paths['json'].name}: {filled} of "
                  f"{len(doc.sections)} sections filled from records; missing evidence: "
                  f"{', '.join(missing) or 'none'}", highlight=False, soft_wrap=True)


def model_card(ctx: typer.Context, model: str = MODEL_ARG, version: str = VERSION_OPTION,
               out: Path = typer.Option(None, "--out", help="Write the card here (default: print it)."),
               ) -> None:
    """A Hugging Face model card (README.md) with YAML metadata and a safety section from the evidence."""
    from tunesafe.governance.model_card import model_card as build

    card = build(_evidence(ctx, model, version, output=CITES).facts)
    if out is None:
        typer.echo(card, nl=False)
        return
    write_out(out, card, "model card")
    console.print(f"Wrote {out}", highlight=False, soft_wrap=True)


def export_cyclonedx(ctx: typer.Context, model: str = MODEL_ARG, version: str = VERSION_OPTION,
                     out: Path = typer.Option(None, "--out", help="Write the BOM here (default: print it)."),
                     ) -> None:
    """A CycloneDX 1.6 ML-BOM: the model with its modelCard, its base as pedigree, datasets with hashes.
    Validated against the CycloneDX schema before it is written."""
    from tunesafe.governance.cyclonedx_bom import cyclonedx_bom, validate_bom

    bom = cyclonedx_bom(_evidence(ctx, model, version, output=CITES).facts)
    text = json.dumps(bom, indent=2, ensure_ascii=False) + "\n"
    problems = validate_bom(text)
    if problems:  # our bug, not the user's: never hand out a BOM that does not validate
        raise RuntimeError(f"generated BOM is not valid CycloneDX 1.6: {problems[:3]}")
    if out is None:
        typer.echo(text, nl=False)
        return
    write_out(out, text, "BOM")
    console.print(f"Wrote {out} (CycloneDX 1.6, schema-valid)", highlight=False, soft_wrap=True)


def export_mlflow(
    ctx: typer.Context, model: str = MODEL_ARG, version: str = VERSION_OPTION,
    tracking_uri: str = typer.Option(..., "--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                                     help="MLflow tracking URI, e.g. sqlite:///mlflow.db or http://HOST:5000."),
    experiment: str = typer.Option("tunesafe", "--experiment", help="Experiment name (created if absent)."),
    registered_model: str = typer.Option(None, "--registered-model",
                                         help="Registered model whose version gets the gate decision."),
    model_version: str = typer.Option(None, "--model-version", help="That registered model's version."),
    as_json: bool = JSON_OPTION,
) -> None:
    """An MLflow run with the safety metrics, params, tunesafe.* tags and the documents as artifacts."""
    from tunesafe.governance.documents import model_documents
    from tunesafe.governance.mlflow_export import export_mlflow as export

    evidence = _evidence(ctx, model, version, output=CITES)
    done = export(evidence, model_documents(evidence), tracking_uri=tracking_uri, experiment=experiment,
                  registered_model=registered_model, model_version=model_version)
    if as_json:
        print_json(done.__dict__)
        return
    tagged = f"; tagged {registered_model} v{model_version}" if done.model_version_tags else ""
    console.print(f"MLflow run {done.run_id} in experiment {done.experiment_id}: {len(done.metrics)} "
                  f"metrics, {len(done.params)} params, {len(done.tags)} tags{tagged}", highlight=False,
                  soft_wrap=True)


def bundle(ctx: typer.Context, model: str = MODEL_ARG, version: str = VERSION_OPTION,
           out: Path = typer.Option(..., "--out", help="The bundle .zip to write."),
           sign: Path = typer.Option(None, "--sign", help="Ed25519 private key (PEM) to sign with."),
           ) -> None:
    """An evidence bundle an auditor checks offline: the model's lineage records, the chain segment, the
    generated documents and reports, a manifest of sha256s; signed with --sign."""
    from tunesafe.governance.bundle import bundle_model
    from tunesafe.governance.keys import load_private_key

    key = load_private_key(sign) if sign is not None else None  # a bad key fails before any work
    info = bundle_model(_evidence(ctx, model, version, output="a bundle would pack and sign it"), out,
                        signing_key=key)
    signed = f", signed by key {info.signer[:16]}" if info.signer else ", unsigned"
    console.print(f"Wrote {info.path}: {info.records} records, {info.chain_links} chain links, {info.files} "
                  f"files{signed}", highlight=False, soft_wrap=True)


def verify_bundle(path: Path = typer.Argument(..., help="The bundle .zip."),
                  pubkey: Path = typer.Option(None, "--pubkey", help="The signer's public key (PEM) to pin."),
                  as_json: bool = JSON_OPTION) -> None:
    """Check a bundle offline (no store, no network): every changed byte, missing file, reordered record or
    bad signature is named. Exit 1 when anything is wrong."""
    from tunesafe.governance.bundle import verify_bundle as verify
    from tunesafe.governance.keys import load_public_key

    key = load_public_key(pubkey) if pubkey is not None else None
    check = verify(path, key)
    if as_json:
        print_json(check.as_dict())
    elif check.ok:
        pinned = " (pinned key)" if check.pinned else " (key inside the bundle; pass --pubkey to pin it)"
        signer = "unsigned" if check.signer is None else f"signed by {check.signer[:16]}{pinned}"
        console.print(f"[green]OK[/] bundle intact: {check.records} records, {check.chain_links} chain "
                      f"links, {check.files} files, {escape(signer)}", highlight=False, soft_wrap=True,
                      markup=True)
    else:
        err_console.print(f"[bold red]TAMPERED[/] {escape(str(path))}: {len(check.problems)} problem(s)",
                          highlight=False, soft_wrap=True, markup=True)
        for problem in check.problems:
            err_console.print(f"  - {problem}", highlight=False, soft_wrap=True)
    if not check.ok:
        raise typer.Exit(1)


def keys_generate(out: Path = typer.Option(..., "--out", help="Path prefix: PREFIX.key and PREFIX.pub."),
                  ) -> None:
    """A new Ed25519 key pair (the private key readable by its owner only)."""
    from tunesafe.governance.keys import generate_keypair

    made = generate_keypair(out)
    console.print(f"Wrote {made.private} (private, keep it secret) and {made.public}; fingerprint "
                  f"{made.fingerprint}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    docs_app.command("annex-iv")(annex_iv)
    docs_app.command("model-card")(model_card)
    export_app.command("cyclonedx")(export_cyclonedx)
    export_app.command("mlflow")(export_mlflow)
    keys_app.command("generate")(keys_generate)
    app.add_typer(docs_app, name="docs", rich_help_panel=AUDIT)
    app.add_typer(export_app, name="export", rich_help_panel=AUDIT)
    app.command("bundle", rich_help_panel=AUDIT)(bundle)
    app.command("verify-bundle", rich_help_panel=AUDIT)(verify_bundle)
    app.add_typer(keys_app, name="keys", rich_help_panel=AUDIT)
