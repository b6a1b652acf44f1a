"""The Art. 73 serious-incident report draft (Markdown), rendered from reports/templates/incident.md.j2.

The fields follow Art. 73(1)-(6) and the incident record fields in common use: provider, AI system and
version, Member State(s) where it occurred, description, occurrence and awareness times, the serious-
incident category under Art. 3(49), causal link, affected persons, corrective measures, and the linked
evidence with its record hashes. A field tunesafe does not know is shown as TO FILL, never guessed; the
people filing the report add it with `tunesafe incidents update ID --field KEY=VALUE`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from tunesafe.errors import UserError
from tunesafe.evidence.store import Store
from tunesafe.production.clocks import iso
from tunesafe.production.incidents import Incident
from tunesafe.production.inventory import inventory

TO_FILL = "TO FILL"
# Report fields a person supplies (stored in the incident's details); the key is the --field name.
REPORT_FIELDS: dict[str, str] = {
    "provider": "Provider (name, address, contact point)",
    "deployer": "Deployer (if the incident occurred at a deployer)",
    "member_states": "Member State(s) where the incident occurred",
    "authority": "Market surveillance authority notified",
    "occurred_at": "Date and time of the incident (UTC)",
    "description": "Description of the incident",
    "harm_category": "Serious-incident category under Art. 3(49): (a), (b), (c) or (d)",
    "affected": "Affected persons and harm",
    "causal_link": "Causal link between the AI system and the incident (established / reasonably likely / "
                   "under investigation)",
    "corrective_measures": "Corrective measures taken or planned",
    "system_unchanged": "Art. 73(6): the system was not altered in a way that affects the investigation",
}
# Art. 3(49) letter implied by a kind; "general" implies none (a person picks (a), (c) or (d)).
KIND_CATEGORY = {"death": "(a) death of a person", "critical_infrastructure": "(b) critical infrastructure",
                 "widespread": "widespread infringement (Art. 3(61))"}

# Markdown, not HTML: no autoescaping (a title with "&" must read as written).
_ENV = Environment(loader=PackageLoader("tunesafe.reports", "templates"), autoescape=False,
                   undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                   keep_trailing_newline=True)
_ENV.filters["cell"] = lambda value: cell(str(value))


def check_field(key: str) -> str:
    if key not in REPORT_FIELDS:
        raise UserError(f"unknown report field {key!r}", where="--field",
                        fix=f"use KEY=VALUE with KEY one of {', '.join(REPORT_FIELDS)}")
    return key


def _fill(value: Any) -> str:
    if value is None or value == "" or value == []:
        return TO_FILL
    if isinstance(value, (list, tuple)):
        return cell(", ".join(map(str, value)))
    return cell(str(value))


def cell(text: str) -> str:
    """User text inside a Markdown table row: a '|' or a line break would end the cell or the row."""
    return text.replace("|", "\\|").replace("\r\n", "<br>").replace("\n", "<br>")


def _system(store: Store, incident: Incident) -> dict[str, str]:
    """The model as the inventory held it when the incident was opened: a version recorded since (the fix
    rolled out, say) is not the system the incident concerns. A model added to the inventory only after
    the incident shows its current one."""
    current = inventory(store).get(incident.model)
    model = inventory(store, before=incident.id).get(incident.model) or current
    if model is None or current is None:
        return {"name": incident.model, "version": TO_FILL + " (model not in the inventory)", "ref": TO_FILL,
                "base": TO_FILL, "stage": TO_FILL, "owner": TO_FILL}
    version = f"v{model.version} (record {model.record_id}, {model.record_hash})"
    if current.version != model.version:
        version += f"; now v{current.version}"
    return {"name": model.name, "version": version,
            "ref": model.ref, "base": model.base or "none (not fine-tuned)", "stage": model.stage,
            "owner": model.owner or TO_FILL}


def report_type(incident: Incident, now: datetime) -> str:
    """What the draft is: closing an incident files nothing, so a closed incident without --reported-at
    has no report at all, and saying "complete" would hide a missed Art. 73 obligation."""
    missed = incident.missed(now)
    if incident.reported_at is None and incident.status == "closed":
        return "NOT FILED (closed without a report" + (", OVERDUE: the deadline passed first)" if missed
                                                       else " before the deadline)")
    if incident.status == "closed":
        return "complete" + (" (reported after the deadline)" if missed else "")
    # an initial report is still owed (or was filed) past the deadline: "initial" alone reads as on time
    late = "" if not missed else (", reported after the deadline" if incident.reported_at is not None
                                  else ", OVERDUE: the deadline has passed")
    return f"initial{late} (Art. 73(5): may be incomplete)"


def report_context(store: Store, incident: Incident, now: datetime) -> dict[str, Any]:
    details: Mapping[str, Any] = incident.details
    fields = {key: {"label": label, "value": _fill(details.get(key))} for key, label in REPORT_FIELDS.items()}
    implied = [KIND_CATEGORY[k] for k in incident.kinds if k in KIND_CATEGORY]
    if implied and fields["harm_category"]["value"] == TO_FILL:
        fields["harm_category"]["value"] = "; ".join(implied)
    if incident.resolution and fields["corrective_measures"]["value"] == TO_FILL:
        fields["corrective_measures"]["value"] = cell(incident.resolution)
    own = [store.get(incident.id), *(store.get(i) for i in incident.updates)]
    linked = [store.get(i) for i in incident.links]
    return {
        "incident": incident, "fields": fields, "system": _system(store, incident), "to_fill": TO_FILL,
        "report_type": report_type(incident, now),
        "now": iso(now), "aware_at": iso(incident.aware_at), "opened_at": iso(incident.opened_at),
        "deadlines": [d.as_dict() for d in incident.deadlines],
        "clock": incident.clock(now),
        "records": [{"id": r.id, "type": r.type, "created_at": r.created_at, "actor": r.actor,
                     "hash": r.hash} for r in own],
        "linked": [{"id": r.id, "type": r.type, "created_at": r.created_at, "subject": r.subject or "",
                    "hash": r.hash, "summary": _summary(r.body)} for r in linked],
        "conversations": len(incident.conversations),
    }


def _summary(body: Mapping[str, Any]) -> str:
    keys = ("verdict", "model_name", "candidate_model", "run_id", "name")
    return ", ".join(f"{k}={body[k]}" for k in keys if body.get(k) is not None)


def render_report(store: Store, incident: Incident, now: datetime) -> str:
    return _ENV.get_template("incident.md.j2").render(**report_context(store, incident, now))
