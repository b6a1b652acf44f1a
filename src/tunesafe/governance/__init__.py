"""Governance over the evidence store: the safety lineage of a model version, the controls catalogue and
its status, the regulatory role decision. Everything here reads records the other packages wrote and
appends its own (role decisions, attestations); nothing recomputes a figure another package stored."""

from tunesafe.governance.lineage import Lineage, LineageNode, collect_lineage

__all__ = ["Lineage", "LineageNode", "collect_lineage"]
