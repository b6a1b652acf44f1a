"""The taxonomy maps every category onto HEx-PHI and AILuminate and covers both reference lists."""

from __future__ import annotations

from tunesafe.suite import load_taxonomy


def test_taxonomy_has_at_least_eleven_documented_categories() -> None:
    taxonomy = load_taxonomy()
    assert len(taxonomy.harm_categories) >= 11
    for category in taxonomy.harm_categories.values():
        assert category.title and category.description
        assert category.hex_phi and category.ailuminate


def test_mappings_use_only_reference_ids() -> None:
    taxonomy = load_taxonomy()
    assert len(taxonomy.hex_phi) == 11
    for category in taxonomy.harm_categories.values():
        assert set(category.hex_phi) <= set(taxonomy.hex_phi), category.name
        assert set(category.ailuminate) <= set(taxonomy.ailuminate), category.name


def test_every_reference_category_is_covered() -> None:
    taxonomy = load_taxonomy()
    hex_phi = {h for c in taxonomy.harm_categories.values() for h in c.hex_phi}
    ailuminate = {a for c in taxonomy.harm_categories.values() for a in c.ailuminate}
    assert hex_phi == set(taxonomy.hex_phi)
    assert ailuminate == set(taxonomy.ailuminate)
