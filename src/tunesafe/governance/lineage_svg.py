"""The lineage as a graph: an inline SVG (no script, nothing fetched) laid out left to right by depth, so
base -> data -> training -> adapter -> model -> evaluations -> gates -> deployments reads as a chain, and
one self-contained HTML page around it. Every box names its evidence record (`data-record-id`), so the
documents that embed the graph point at the records that prove each step."""

from __future__ import annotations

from html import escape

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from tunesafe.governance.lineage import KINDS, Lineage, LineageNode
from tunesafe.reports.charts import FONT, _open, _short

BOX_W, BOX_H, GAP_X, GAP_Y, MARGIN, TITLE_H = 210, 46, 56, 14, 12, 28
# fill per stage of the lifecycle: before (data), during (training), the model, after, production, sign-off
COLOURS = {"base": "#dfe7f1", "dataset": "#e4f0e4", "data_mix": "#e4f0e4", "data_scan": "#e4f0e4",
           "training_run": "#f3ead8", "adapter": "#f3ead8", "model": "#d7e3f4", "role_decision": "#ece4f3",
           "evaluation": "#fbe9e7", "gate": "#fbe9e7", "deployment": "#e0f2f1",
           "guardrail_verification": "#e0f2f1", "incident": "#fde2e1", "incident_update": "#fde2e1",
           "redteam_run": "#e0f2f1", "attestation": "#ece4f3"}
BAD = ("fail", "inconclusive", "error", "stopped", "high")

_ENV = Environment(loader=PackageLoader("tunesafe.reports", "templates"),
                   autoescape=select_autoescape(["j2"]), undefined=StrictUndefined, trim_blocks=True,
                   lstrip_blocks=True)


def layout(lineage: Lineage) -> dict[str, tuple[int, int]]:
    """node id -> (column, row): the column is the node's depth (longest path from a root)."""
    ids = {n.node_id for n in lineage.nodes}
    depth: dict[str, int] = {}
    for node in lineage.nodes:  # nodes come in chain order, so parents are placed before children
        parents = [depth[p] for p in node.parents if p in ids and p in depth]
        depth[node.node_id] = 1 + max(parents) if parents else 0
    rows: dict[int, int] = {}
    placed = {}
    order = sorted(lineage.nodes, key=lambda n: (depth[n.node_id], KINDS.index(n.kind), int(n.record_id)))
    for node in order:
        column = depth[node.node_id]
        placed[node.node_id] = (column, rows.get(column, 0))
        rows[column] = rows.get(column, 0) + 1
    return placed


def render_svg(lineage: Lineage) -> str:
    places = layout(lineage)
    columns = max((c for c, _ in places.values()), default=0) + 1
    height_rows = max((r for _, r in places.values()), default=0) + 1
    width = MARGIN * 2 + columns * BOX_W + (columns - 1) * GAP_X
    height = TITLE_H + MARGIN * 2 + height_rows * (BOX_H + GAP_Y)
    title = f"Safety lineage of {lineage.model} v{lineage.version}"
    parts = [_open(width, height, title),
             f"<text x='{MARGIN}' y='18' {FONT} font-weight='600'>{escape(title)}</text>"]
    for node in lineage.nodes:  # edges first, under the boxes
        x2, y2 = _corner(places[node.node_id])
        for parent in node.parents:
            if parent in places:
                x1, y1 = _corner(places[parent])
                x1, y1, y2c = x1 + BOX_W, y1 + BOX_H / 2, y2 + BOX_H / 2
                mid = (x1 + x2) / 2
                parts.append(f"<path class='edge' data-from='{escape(parent)}' "
                             f"data-to='{escape(node.node_id)}' d='M{x1:.0f} {y1:.0f}C{mid:.0f} {y1:.0f} "
                             f"{mid:.0f} {y2c:.0f} {x2:.0f} {y2c:.0f}' stroke='#8a96a3' fill='none'/>")
    for node in lineage.nodes:
        parts.append(_box(node, *_corner(places[node.node_id])))
    parts.append("</svg>")
    return "".join(parts)


def render_html(lineage: Lineage) -> str:
    """One page: the graph and the table of nodes with their records."""
    return _ENV.get_template("lineage.html.j2").render(
        lineage=lineage, graph=Markup(render_svg(lineage)))


def _corner(place: tuple[int, int]) -> tuple[float, float]:
    column, row = place
    return MARGIN + column * (BOX_W + GAP_X), TITLE_H + MARGIN + row * (BOX_H + GAP_Y)


def _box(node: LineageNode, x: float, y: float) -> str:
    bad = any(word in node.label.lower() for word in BAD)
    stroke = "#b3261e" if bad else "#7d8893"
    return (f"<g class='node' data-kind='{escape(node.kind)}' data-node-id='{escape(node.node_id)}' "
            f"data-record-id='{escape(node.record_id)}'>"
            f"<title>{escape(node.label)} (record {escape(node.record_id)}, {escape(node.record_type)}, "
            f"sha256 {escape(node.record_hash)})</title>"
            f"<rect x='{x:.0f}' y='{y:.0f}' width='{BOX_W}' height='{BOX_H}' rx='6' "
            f"fill='{COLOURS.get(node.kind, '#eceef1')}' stroke='{stroke}'/>"
            f"<text x='{x + 8:.0f}' y='{y + 18:.0f}' {FONT}>{escape(_short(node.label, 32))}</text>"
            f"<text x='{x + 8:.0f}' y='{y + 36:.0f}' {FONT} fill='#5b6570'>"
            f"{escape(node.kind.replace('_', ' '))} · record {escape(node.record_id)}</text></g>")
