"""Dimension specs and declared sizes: the user-facing parsers only ever raise clean SpecErrors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import shapeviz as sv
from shapeviz.core.dimensions import parse_names, parse_sizes


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parse_names_only_raises_spec_error(text):
    try:
        names = parse_names(text)
    except sv.SpecError:
        return
    assert names and all(n.isidentifier() for n in names)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), st.from_regex(r"[a-zA-Z_]{1,4}=[0-9]{1,3}(,[a-zA-Z_]{1,4}=[0-9]{1,3})*")))
def test_parse_sizes_only_raises_spec_error(text):
    try:
        sizes = parse_sizes(text)
    except sv.SpecError:
        return
    assert all(isinstance(v, int) and v >= 0 for v in sizes.values())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.one_of(st.integers(-3, 5), st.text(max_size=3), st.none()),
                       max_size=3))
def test_dims_only_raises_spec_error(sizes):
    from shapeviz.core.dimensions import declared

    try:
        with sv.dims(**sizes):
            inside = declared()
    except sv.SpecError:
        return
    except TypeError:  # Python itself rejects non-identifier keyword names only for literal calls
        pytest.fail("dims raised TypeError")
    assert inside == sizes and all(type(v) is int and v >= 0 for v in sizes.values())
    assert declared() is None  # gone after the block
