"""Our harm taxonomy (data/taxonomy.yaml) and its mapping onto HEx-PHI and MLCommons AILuminate."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import yaml

from tunesafe.suite.builtin import DATA


@dataclass(frozen=True)
class HarmCategory:
    name: str
    title: str
    description: str
    hex_phi: tuple[str, ...]
    ailuminate: tuple[str, ...]


@dataclass(frozen=True)
class Taxonomy:
    version: str
    harm_categories: dict[str, HarmCategory]
    borderline_types: dict[str, str]
    benign_topics: dict[str, str]
    hex_phi: tuple[str, ...]  # the reference category lists, to check coverage against
    ailuminate: tuple[str, ...]


@cache
def load_taxonomy() -> Taxonomy:
    with (DATA / "taxonomy.yaml").open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    harm = {name: HarmCategory(name, spec["title"], spec["description"], tuple(spec["hex_phi"]),
                               tuple(spec["ailuminate"]))
            for name, spec in raw["harm_categories"].items()}
    return Taxonomy(str(raw["version"]), harm, dict(raw["borderline_types"]), dict(raw["benign_topics"]),
                    tuple(raw["hex_phi"]), tuple(raw["ailuminate"]))
