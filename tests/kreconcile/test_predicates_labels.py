"""Label selectors (kreconcile.labels): dict form, string form, matching semantics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kreconcile.labels import (
    EVERYTHING,
    NOTHING,
    Requirement,
    Selector,
    parse_selector,
    selector_from_dict,
    selector_from_labels,
)


def test_match_labels_and_expressions() -> None:
    sel = selector_from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "env", "operator": "In", "values": ["prod", "staging"]},
            {"key": "legacy", "operator": "DoesNotExist"},
            {"key": "kaito.sh/gpu", "operator": "Exists"},
        ],
    })
    good = {"app": "web", "env": "prod", "kaito.sh/gpu": ""}
    assert sel.matches(good)
    assert not sel.matches({**good, "legacy": "1"})
    assert not sel.matches({**good, "env": "dev"})
    assert not sel.matches({"app": "web", "env": "prod"})


def test_empty_selector_matches_everything_and_none_matches_nothing() -> None:
    assert selector_from_dict({}).matches({"a": "b"}) and selector_from_dict({}).matches(None)
    assert not selector_from_dict(None).matches({"a": "b"})
    assert EVERYTHING.empty() and not NOTHING.empty()


def test_not_in_matches_absent_keys_and_gt_lt_compare_integers() -> None:
    assert Requirement("zone", "NotIn", ("a",)).matches({})
    assert Requirement("gpus", "Gt", ("2",)).matches({"gpus": "4"})
    assert not Requirement("gpus", "Gt", ("2",)).matches({"gpus": "2"})
    assert not Requirement("gpus", "Lt", ("2",)).matches({"gpus": "x"})
    assert not Requirement("gpus", "Lt", ("2",)).matches({})


def test_string_form_parses_every_operator() -> None:
    sel = parse_selector("a=b, c!=d,e in (x, y),f notin (z),g,!h,n>3,m<10,k==v")
    ops = {r.key: (r.operator, r.values) for r in sel.requirements}
    assert ops == {
        "a": ("In", ("b",)), "c": ("NotIn", ("d",)), "e": ("In", ("x", "y")), "f": ("NotIn", ("z",)),
        "g": ("Exists", ()), "h": ("DoesNotExist", ()), "n": ("Gt", ("3",)), "m": ("Lt", ("10",)),
        "k": ("In", ("v",)),
    }
    assert parse_selector("") is EVERYTHING
    assert sel.matches({"a": "b", "e": "y", "g": "", "n": "4", "m": "1", "k": "v"})


def test_string_form_round_trips() -> None:
    sel = parse_selector("e in (y,x),a=b,c!=d,!h,g,n>3")
    assert str(sel) == "a=b,c!=d,e in (x,y),g,!h,n>3"  # sorted by key, as apimachinery prints
    assert set(parse_selector(str(sel)).requirements) == set(sel.requirements)


@pytest.mark.parametrize(
    ("text", "match"),
    [("a in ()", "at least one value"), ("a in (b", "unbalanced"), ("bad key!=x", "cannot parse|valid label key"),
     ("a=b c", "cannot parse|valid label value"), ("n>x", "integer")],
)
def test_malformed_selector_strings_are_refused_naming_the_clause(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_selector(text)


def test_malformed_dict_selectors_name_the_field() -> None:
    with pytest.raises(ValueError, match=r"matchExpressions\[0\]"):
        selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})
    with pytest.raises(ValueError, match="unknown field"):
        selector_from_dict({"matchLabel": {"a": "b"}})
    with pytest.raises(ValueError, match="label value"):
        selector_from_labels({"a": "not valid"})


_names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)


@given(st.dictionaries(_names, _names, max_size=5), st.dictionaries(_names, _names, max_size=5))
def test_set_selector_matches_exactly_the_supersets(want: dict[str, str], have: dict[str, str]) -> None:
    expected = all(have.get(k) == v for k, v in want.items())
    assert selector_from_labels(want).matches(have) == expected
    assert parse_selector(str(selector_from_labels(want))).matches(have) == expected


_requirements = st.one_of(
    st.builds(lambda k, op, vs: Requirement(k, op, tuple(vs)), _names, st.sampled_from(["In", "NotIn"]),
              st.lists(_names, min_size=1, max_size=3)),
    st.builds(lambda k, op: Requirement(k, op), _names, st.sampled_from(["Exists", "DoesNotExist"])),
    st.builds(lambda k, op, n: Requirement(k, op, (str(n),)), _names, st.sampled_from(["Gt", "Lt"]),
              st.integers(-5, 50)),
)


@given(st.lists(_requirements, max_size=5), st.dictionaries(_names, st.sampled_from(["1", "7", "a", "40"]), max_size=4))
def test_printing_then_parsing_a_selector_keeps_its_meaning(reqs: list[Requirement], labels: dict[str, str]) -> None:
    sel = Selector(tuple(reqs))
    again = parse_selector(str(sel))
    assert set(again.requirements) == set(sel.requirements)
    assert again.matches(labels) == sel.matches(labels)
