"""render's direct layout of big name tables gives pprint's bytes exactly (the rendered module must not change)."""

from __future__ import annotations

import pprint

from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.celery.render import WIDTH, _flat_mapping, _literal

NAMES = st.text(alphabet="ab.-_'\"é\\", min_size=0, max_size=60)
TABLES = st.dictionaries(NAMES, st.one_of(NAMES, st.lists(NAMES, max_size=3)), max_size=8)


@settings(max_examples=500, deadline=None)
@given(TABLES)
def test_the_same_text_as_pprint(table: dict[str, object]) -> None:
    assert _literal(table) == pprint.pformat(table, width=WIDTH, sort_dicts=True)


def test_a_big_dead_letter_table_takes_the_direct_way() -> None:
    table = {f"q{i:05d}": [f"q{i:05d}.dead", f"jobs.{i}.dead"] for i in range(3000)}
    text = _flat_mapping(table)
    assert text is not None and text == pprint.pformat(table, width=WIDTH, sort_dicts=True)
