"""The conformance suite's mutation self-test, quick subset (the whole set:
``python property_tests/mutants/mutation.py``).

Each quick entry is built as a patched copy of pgpo_core and the conformance suite runs
against it on numpy in a subprocess (default Hypothesis profile, seed 0): the mutants
must be killed, the variants accepted. Also checks that every catalogue edit still
applies to the current pgpo_core, so the full run cannot go stale unnoticed.
"""

from __future__ import annotations

import pytest

import catalogue
import mutation

pytestmark = pytest.mark.mutation

QUICK = [e for e in catalogue.ENTRIES if e.quick]


def test_catalogue_size_and_every_edit_applies(tmp_path):
    assert len(catalogue.MUTANTS) >= 30 and len(catalogue.VARIANTS) >= 10
    names = [e.name for e in catalogue.ENTRIES]
    assert len(names) == len(set(names))
    for entry in catalogue.ENTRIES:
        mutation.build(entry, tmp_path)  # raises StaleEdit if a snippet moved


@pytest.mark.parametrize("entry", QUICK, ids=[e.name for e in QUICK])
def test_quick_subset(entry, tmp_path):
    result = mutation.run_one(entry, tmp_path, backends="numpy")
    expected = "killed" if entry.kind == "mutant" else "accepted"
    assert result.outcome == expected, result.output[-4000:]
