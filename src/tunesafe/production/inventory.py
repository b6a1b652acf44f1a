"""The model inventory: every model version is an evidence record (RecordType.MODEL_VERSION, subject = the
model's name) holding its ref, its base (parent name), stage, owner and the content hashes of its local
files, datasets, training config and vendor evaluation. Nothing is edited in place: a new version or a
stage/owner change (RecordType.MODEL_UPDATE) is a new record, and the current state is the fold of the
records in chain order.

A model is fine-tuned when it has a base. It "lacks post-fine-tuning safety evaluation" when no
RecordType.SAFETY_EVAL or RecordType.GATE_DECISION record naming it (body `model_name` or
`candidate_model`) comes after its latest version in the chain. An evaluation counts for the version
whose model produced the answers: the version its name was checked against when the run started (the
run's `model_version`; a safety evaluation's `model_version_record`), else where it stands in the chain
(a re-judged run's where the run that generated its answers recorded them: `answers_record`, see
`evaluated_as_of`). See `evaluates`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tunesafe.errors import UserError
from tunesafe.evidence.hashing import content_hash, existing
from tunesafe.evidence.store import Store
from tunesafe.models.refs import redact_ref
from tunesafe.types import EvidenceRecord, RecordType

STAGES = ("dev", "staging", "production")
EVAL_TYPES = (RecordType.SAFETY_EVAL, RecordType.GATE_DECISION)
EVAL_NAME_FIELDS = ("model_name", "candidate_model")
_NAME = re.compile(r"^[A-Za-z0-9][\w.@:/+-]{0,199}$")
_REF_SCHEMES = ("openai:MODEL@URL, vllm:MODEL[+NAME]@URL, vllm:PATH[+ADAPTER]?launch=1, hf:PATH[+ADAPTER], "
                "gguf:PATH, embedded:NAME or litellm:MODEL")


@dataclass(frozen=True)
class ModelSpec:
    """What a user declares about a model version; paths are relative to `base_dir`."""

    name: str
    ref: str
    base: str | None = None
    datasets: tuple[str, ...] = ()
    training_config: str | None = None
    stage: str = "dev"
    owner: str | None = None
    vendor_eval: str | None = None


@dataclass(frozen=True)
class ModelVersion:
    """The current state of one inventory entry (its latest version plus later stage/owner updates)."""

    name: str
    ref: str
    base: str | None
    stage: str
    owner: str | None
    files: tuple[Mapping[str, Any], ...]  # {role: weights|adapter, path, sha256, size, files}
    datasets: tuple[Mapping[str, Any], ...]  # {path, sha256, size, files}
    training_config: Mapping[str, Any] | None
    vendor_eval: Mapping[str, Any] | None
    version: int  # 1 for the first MODEL_VERSION record of this name
    record_id: int  # the latest MODEL_VERSION record
    record_hash: str
    created_at: str
    updates: tuple[int, ...] = field(default=())  # MODEL_UPDATE record ids applied since

    @property
    def fine_tuned(self) -> bool:
        return self.base is not None

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fine_tuned": self.fine_tuned}


# ---- building a version record -------------------------------------------------------------------------


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UserError(f"invalid model name {name!r}", where="NAME",
                        fix="use letters, digits and . _ - : / @ + (at most 200 characters)")
    return name


def check_stage(stage: str) -> str:
    if stage not in STAGES:
        raise UserError(f"unknown stage {stage!r}", where="--stage", fix=f"use one of {', '.join(STAGES)}")
    return stage


def ref_paths(ref: str, base_dir: Path) -> list[tuple[str, str]]:
    """Validate a model ref and return the (role, path) pairs of the local files its model loads (relative
    paths from `base_dir`). Uses the backends' parser, so the inventory accepts exactly the refs `tunesafe
    eval` runs, plus `litellm:` (no local files). A vLLM server tunesafe launches
    (`vllm:PATH[+ADAPTER]?launch=1`) loads its model folder, when that is a folder here rather than a Hub
    id, and its adapter folder; an attached vLLM server is an endpoint (what it loaded is its own, and its
    `+NAME` is a LoRA module name, not a path)."""
    scheme, _, rest = ref.partition(":")
    if scheme == "litellm":
        if not rest.strip():
            raise UserError(f"model ref {ref!r} names no model", where="--ref", fix=f"use {_REF_SCHEMES}")
        return []
    from tunesafe.models.refs import parse_ref  # lazy: keeps `tunesafe models list` light

    try:
        parsed = parse_ref(ref)
    except UserError as exc:  # same check, but name the option and every scheme the inventory takes
        raise UserError(exc.message, where="--ref", fix=f"use {_REF_SCHEMES}") from exc
    paths: list[tuple[str, str]] = []
    if parsed.scheme == "vllm":
        from tunesafe.models.vllm import check_server

        try:
            launched = check_server(parsed)
        except UserError as exc:
            raise UserError(exc.message, where="--ref", fix=exc.fix) from exc
        if not launched:
            return []
        if _resolve(parsed.target, base_dir).exists():
            paths.append(("weights", parsed.target))
    elif parsed.scheme in ("hf", "gguf"):
        paths.append(("weights", parsed.target))
    if parsed.adapter:
        paths.append(("adapter", parsed.adapter))
    return paths


def _resolve(path: str, base_dir: Path) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else base_dir / candidate


def check_spec(spec: ModelSpec, base_dir: Path) -> None:
    """version_body's checks short of hashing: the name, the stage, the ref and that every file the spec
    names is there. A command runs them before it opens the store, so that bad input leaves no new, empty
    store behind at a --db path that did not exist, and before hashing what may be gigabytes."""
    check_name(spec.name)
    check_stage(spec.stage)
    named = [(f"{role} of {spec.ref}", path) for role, path in ref_paths(spec.ref, base_dir)]
    named += [("dataset", path) for path in spec.datasets]
    named += [(what, path) for what, path in (("training config", spec.training_config),
                                              ("vendor evaluation", spec.vendor_eval)) if path]
    for what, path in named:
        existing(_resolve(path, base_dir), what=what)


def version_body(spec: ModelSpec, base_dir: Path) -> dict[str, Any]:
    """Validate a spec and hash its files: the body of a MODEL_VERSION record. Pure with respect to the
    store (duplicate and base checks need the inventory: see `check_against`)."""
    check_name(spec.name)
    check_stage(spec.stage)
    files = [{"role": role, **content_hash(_resolve(path, base_dir), what=f"{role} of {spec.ref}").as_dict()}
             for role, path in ref_paths(spec.ref, base_dir)]
    datasets = [content_hash(_resolve(path, base_dir), what="dataset").as_dict() for path in spec.datasets]
    config = spec.training_config
    vendor = spec.vendor_eval
    return {
        "name": spec.name, "ref": redact_ref(spec.ref),  # never its credentials
        "base": spec.base, "stage": spec.stage, "owner": spec.owner,
        "files": files, "datasets": datasets,
        "training_config": content_hash(_resolve(config, base_dir), what="training config").as_dict()
        if config else None,
        "vendor_eval": content_hash(_resolve(vendor, base_dir), what="vendor evaluation").as_dict()
        if vendor else None,
    }


def check_against(spec: ModelSpec, known: Mapping[str, str | None], *, new_version: bool = False) -> None:
    """Duplicate names, unknown bases and lineage cycles, against `known` (each model's base by name)."""
    if spec.name in known and not new_version:
        raise UserError(f"model {spec.name!r} is already in the inventory", where="NAME",
                        fix="pick another name, or pass --new-version to record a new version of it")
    if spec.name not in known and new_version:
        raise UserError(f"model {spec.name!r} is not in the inventory", where="NAME",
                        fix="drop --new-version to add it")
    if spec.base is None:
        return
    if spec.base not in known:
        raise UserError(f"base model {spec.base!r} is not in the inventory", where="--base",
                        fix=f"add it first: tunesafe models add {spec.base} --ref REF")
    if spec.name in ancestors(known, spec.base):
        raise UserError(f"{spec.base!r} descends from {spec.name!r}: the lineage would be a cycle",
                        where="--base", fix="name the model this one was fine-tuned from")


# ---- reading the inventory -----------------------------------------------------------------------------


def _fold(records: Iterable[EvidenceRecord]) -> dict[str, ModelVersion]:
    state: dict[str, ModelVersion] = {}
    for rec in sorted(records, key=lambda r: r.id):
        body = rec.body
        name = str(body["name"])
        if rec.type == RecordType.MODEL_VERSION:
            previous = state.get(name)
            state[name] = ModelVersion(
                name=name, ref=body["ref"], base=body.get("base"), stage=body.get("stage", "dev"),
                owner=body.get("owner"), files=tuple(body.get("files", ())),
                datasets=tuple(body.get("datasets", ())), training_config=body.get("training_config"),
                vendor_eval=body.get("vendor_eval"), version=previous.version + 1 if previous else 1,
                record_id=rec.id, record_hash=rec.hash, created_at=rec.created_at)
        elif name in state:  # MODEL_UPDATE: only the fields it carries change
            current = state[name]
            changes = {k: body[k] for k in ("stage", "owner") if k in body}
            state[name] = replace(current, **changes, updates=(*current.updates, rec.id))
    return state


def inventory(store: Store, *, before: int | None = None) -> dict[str, ModelVersion]:
    """Every model's current state, by name; with `before`, as it stood before that record id."""
    records = [*store.records(type=RecordType.MODEL_VERSION), *store.records(type=RecordType.MODEL_UPDATE)]
    return _fold(r for r in records if before is None or r.id < before)


def get_model(store: Store, name: str, known: Mapping[str, ModelVersion] | None = None) -> ModelVersion:
    known = inventory(store) if known is None else known
    if name not in known:
        raise UserError(f"model {name!r} is not in the inventory", where="NAME",
                        fix="see `tunesafe models list`, or add it with `tunesafe models add`")
    return known[name]


def bases(known: Mapping[str, ModelVersion]) -> dict[str, str | None]:
    return {name: model.base for name, model in known.items()}


def ancestors(bases: Mapping[str, str | None], name: str) -> list[str]:
    """`name` and its bases up to the root, root first (stops at an unknown name or a repeated one)."""
    chain: list[str] = []
    current: str | None = name
    while current is not None and current in bases and current not in chain:
        chain.append(current)
        current = bases[current]
    return chain[::-1]


def get_lineage(store: Store, name: str) -> list[ModelVersion]:
    """The chain of models from the root base to `name` (inclusive)."""
    known = inventory(store)
    get_model(store, name, known)
    return [known[n] for n in ancestors(bases(known), name)]


def evaluations(store: Store) -> dict[str, list[EvidenceRecord]]:
    """Post-fine-tuning evaluation records (safety evals, gate decisions) by the model name they name."""
    found: dict[str, list[EvidenceRecord]] = {}
    for type_ in EVAL_TYPES:
        for rec in store.records(type=type_):
            names = {rec.body.get(f) for f in EVAL_NAME_FIELDS} - {None}
            for name in names:
                found.setdefault(str(name), []).append(rec)
    return found


def evaluated_as_of(rec: EvidenceRecord) -> int:
    """Where an evaluation (or run) record stands in the chain as to which model version answered: a
    re-judged run's answers were produced by an earlier run, so it stands at that run's record
    (`answers_record`; 0, before every version, when that record was not found), anything else at
    itself."""
    if "answers_record" not in rec.body:
        return rec.id
    as_of = rec.body["answers_record"]
    return as_of if isinstance(as_of, int) and not isinstance(as_of, bool) else 0


def version_record(rec: EvidenceRecord) -> int | None:
    """The MODEL_VERSION record an evaluation or run record says it evaluated (0: no version, the name
    was not in the inventory then), None when it says none. A safety evaluation records it; a run
    records the version its name was checked against when it started (`model_version`), which a
    resume and a re-judge keep."""
    if rec.type == RecordType.SAFETY_EVAL and "model_version_record" in rec.body:
        found = rec.body["model_version_record"]
    else:
        pinned = (rec.body.get("config") or {}).get("model_version") if rec.type == RecordType.RUN else None
        if not isinstance(pinned, Mapping):
            return None
        found = pinned.get("record_id")
    return found if isinstance(found, int) and not isinstance(found, bool) else 0


def evaluates(rec: EvidenceRecord, version: int, next_version: float | None = None) -> bool:
    """Whether an evaluation or run record is of the version recorded at record `version` (the next
    version of that name at `next_version`, None: it is the current one): the version it records, else
    one whose answers were produced in that version's time (`evaluated_as_of`)."""
    pinned = version_record(rec)
    if pinned is not None:
        return pinned == version
    as_of = evaluated_as_of(rec)
    return version < as_of and (next_version is None or as_of < next_version)


def latest_evaluation(model: ModelVersion,
                      evals: Mapping[str, Sequence[EvidenceRecord]]) -> EvidenceRecord | None:
    """The newest evaluation of the model's current version (`evaluates`)."""
    of_it = [r for r in evals.get(model.name, ()) if evaluates(r, model.record_id)]
    return max(of_it, key=lambda r: r.id) if of_it else None


def list_models(store: Store, stage: str | None = None, *,
                missing_post_eval: bool = False) -> list[ModelVersion]:
    if stage is not None:
        check_stage(stage)
    models = [m for m in inventory(store).values() if stage is None or m.stage == stage]
    if missing_post_eval:
        evals = evaluations(store)
        models = [m for m in models if m.fine_tuned and latest_evaluation(m, evals) is None]
    return sorted(models, key=lambda m: m.name)


def missing_post_eval(store: Store, stage: str | None = None) -> list[ModelVersion]:
    """Fine-tuned models whose current version has no safety evaluation or gate decision recorded."""
    return list_models(store, stage, missing_post_eval=True)


def attached_records(store: Store, name: str) -> list[EvidenceRecord]:
    """Evidence about one model: records whose subject is its name, plus evaluations naming it."""
    by_id = {r.id: r for r in store.records(subject=name)}
    by_id.update({r.id: r for r in evaluations(store).get(name, ())})
    return [by_id[i] for i in sorted(by_id)]


ATTEST_FLAG = "--attest-weights"


def check_attestation_named(attested: bool, names: Sequence[str | None], options: Sequence[str]) -> None:
    """UserError when --attest-weights is given with no inventory name for it to vouch for: ignored, the
    user would believe an attestation was recorded."""
    if attested and not any(names):
        raise UserError(f"{ATTEST_FLAG} vouches for an inventory version, and no name says which",
                        where=ATTEST_FLAG, fix=f"add {' or '.join(options)}, or drop {ATTEST_FLAG}")


def check_evaluated(store: Store, name: str, evaluated_ref: str, *, source: str, attested: bool = False,
                    base_dir: Path | None = None, option: str = "--candidate-name",
                    any_version: bool = False) -> dict[str, Any] | None:
    """How an evaluation of `evaluated_ref` is tied to the current version of inventory model `name`:
    None when the name is not in the inventory (the caller warns), else what the decision body records.
    UserError when that version is another model: its local files (hashed now, relative paths from
    `base_dir`) differ from the version's recorded hashes, or, for a version without local files, the
    ref names another model. When one side names local files and the other an endpoint, tunesafe cannot
    hash the weights it evaluated: refused too, unless `attested` (the user vouches that the endpoint
    serves the version's weights, and the record says so). `source` opens the message, `option` names
    what the user gave. `any_version`: an earlier version of `name` ties the evaluation as well (a base
    run may predate the newest version: a scheduled red-team run's base is the model's previous run)."""
    model = inventory(store).get(name)
    if model is None:
        return None
    evaluated = redact_ref(evaluated_ref)
    folder = base_dir or Path.cwd()
    hashes: dict[str, str | UserError] = {}  # role -> sha256 now: each file is hashed once
    why, checkable = _other_model(model, evaluated, folder, hashes)
    if why is None:
        return version_tie(model, "files" if model.files else "ref")
    for earlier in _earlier_versions(store, model) if any_version else ():
        if _other_model(earlier, evaluated, folder, hashes)[0] is None:
            return version_tie(earlier, "files" if earlier.files else "ref")
    if not checkable and attested:
        return {**version_tie(model, "attested"), "unchecked": why}
    base = f" --base {model.base}" if model.base else ""
    attest = "" if checkable else f", or pass {ATTEST_FLAG} if this endpoint serves exactly those weights"
    raise UserError(f"{source} {evaluated}, not version {model.version} of {name!r} in the inventory "
                    f"({model.ref}): {why}", where=option,
                    fix=f"record what was evaluated first: `tunesafe models add {name} --new-version "
                        f"--ref {evaluated}{base}` (with its --dataset/--training-config){attest}")


def version_tie(model: ModelVersion, identity: str) -> dict[str, Any]:
    """What a run of `model` records as its `model_version`; `identity`: how the evaluated model was
    established to be this version ("files", "ref", "attested")."""
    return {"name": model.name, "version": model.version, "record_id": model.record_id, "ref": model.ref,
            "identity": identity}


def _earlier_versions(store: Store, model: ModelVersion) -> list[ModelVersion]:
    """The versions of `model`'s name before its current one, newest first."""
    ids = sorted((r.id for r in store.records(type=RecordType.MODEL_VERSION, subject=model.name)
                  if r.id < model.record_id), reverse=True)
    return [inventory(store, before=i + 1)[model.name] for i in ids]


def evaluated_paths(ref: str, base_dir: Path) -> dict[str, str]:
    """The local files (role: path) of the model a ref evaluates, as `models add` records them (see
    `ref_paths`); none for a ref that does not parse."""
    try:
        return dict(ref_paths(ref, base_dir))
    except UserError:
        return {}


def _other_model(model: ModelVersion, evaluated: str, base_dir: Path,
                 hashes: dict[str, str | UserError]) -> tuple[str | None, bool]:
    """(why `evaluated` is not the model of this version or None when it is, whether that was checked
    on the weights themselves rather than inferred from an endpoint that hides them). `hashes` keeps the
    evaluated files' hashes between calls."""
    recorded = {str(f["role"]): f for f in model.files}
    paths = evaluated_paths(evaluated, base_dir)
    if not recorded and not paths:  # endpoints (or embedded models): the ref is all the identity there is
        return (None if _ref_identity(evaluated) == _ref_identity(model.ref) else "another model ref"), True
    if not recorded or not paths:
        local = "this ref names local files" if paths else "this ref names an endpoint"
        return f"{local} and the version {'does not' if paths else 'records local files'}; " \
               "tunesafe cannot tell whether they hold the same weights", False
    if set(paths) != set(recorded):
        return f"the version records {' and '.join(sorted(recorded))} files, this ref names " \
               f"{' and '.join(sorted(paths))}", True
    for role, path in sorted(paths.items()):
        if role not in hashes:
            try:
                hashes[role] = content_hash(_resolve(path, base_dir), what=role).sha256
            except UserError as exc:
                hashes[role] = exc
        now = hashes[role]
        if isinstance(now, UserError):
            return f"its {role} cannot be hashed ({now.message}: {path})", True
        if now != recorded[role]["sha256"]:
            return (f"its {role} {_resolve(path, base_dir)} has sha256 {now[:16]}, the version records "
                    f"{str(recorded[role]['sha256'])[:16]} ({recorded[role]['path']})"), True
    return None, True


def _ref_identity(ref: str) -> tuple[str | None, ...]:
    """What names the model in a ref, without its options (timeouts, threads, keys)."""
    from tunesafe.models.refs import parse_ref

    scheme, _, rest = ref.partition(":")
    if scheme == "litellm":
        return (scheme, rest.strip())
    try:
        parsed = parse_ref(ref)
    except UserError:
        return (ref,)
    return (parsed.scheme, parsed.target, parsed.base_url, parsed.adapter, parsed.guard)


# ---- writing -------------------------------------------------------------------------------------------


def add_model(store: Store, spec: ModelSpec, *, base_dir: Path | None = None, new_version: bool = False,
              actor: str | None = None) -> ModelVersion:
    """Record a model version (hashing its local files). UserError for a bad ref, a missing file, a
    duplicate name or an unknown base; nothing is written then."""
    check_name(spec.name)

    def check() -> None:
        check_against(spec, bases(inventory(store)), new_version=new_version)

    check()  # before hashing files, which can take minutes
    body = version_body(spec, base_dir or Path.cwd())
    # and again under the chain lock: another process may have added the name while the files hashed
    record = store.append(RecordType.MODEL_VERSION, body, actor=actor, subject=spec.name, check=check)
    return inventory(store, before=record.id + 1)[spec.name]


def update_model(store: Store, name: str, *, stage: str | None = None, owner: str | None = None,
                 actor: str | None = None) -> ModelVersion:
    """Change stage and/or owner: an appended MODEL_UPDATE record, the version record stays as it was."""
    get_model(store, name)
    changes: dict[str, Any] = {}
    if stage is not None:
        changes["stage"] = check_stage(stage)
    if owner is not None:
        changes["owner"] = owner
    if not changes:
        raise UserError("nothing to update", where=name, fix="pass --stage and/or --owner")
    store.append(RecordType.MODEL_UPDATE, {"name": name, **changes}, actor=actor, subject=name)
    return get_model(store, name)


def record_safety_eval(store: Store, name: str, *, verdict: str | None = None, run_id: str | None = None,
                       details: Mapping[str, Any] | None = None, actor: str | None = None,
                       answers_record: int | None = None, version: int | None = None,
                       check: Callable[[], None] | None = None) -> EvidenceRecord:
    """Record that model `name` (its current version) had a post-fine-tuning safety evaluation. With
    `version` (the MODEL_VERSION record id the run was checked against when it started), it is an
    evaluation of that version; else with `answers_record` (a re-judged run: the record of the run that
    generated the answers), of the version current at that record (none, if the name was not yet in the
    inventory then). `check`: as Store.append's."""
    current = get_model(store, name)
    if version is not None:
        model = inventory(store, before=version + 1).get(name)
        if model is None or model.record_id != version:
            raise ValueError(f"record {version} is no version of {name!r}")
    else:
        model = current if answers_record is None else inventory(store, before=answers_record).get(name)
    body: dict[str, Any] = {
        "model_name": name, "model_version_record": model.record_id if model else None,
        "model_version_hash": model.record_hash if model else None, "verdict": verdict, "run_id": run_id,
        "details": dict(details or {})}
    if answers_record is not None:
        body["answers_record"] = answers_record
    return store.append(RecordType.SAFETY_EVAL, body, actor=actor, subject=name, check=check)
