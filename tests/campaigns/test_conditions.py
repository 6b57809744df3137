"""The campaign condition tree (``patron.campaigns.conditions``): what holds, what is
refused when a campaign is written (and where), and the explanation."""

from __future__ import annotations

from typing import Any

import pytest

from patron.campaigns.conditions import FIELDS, OPERATORS, InvalidCondition, compile_condition
from patron.campaigns.context import Line, purchase_fields

# A coffee buyer in the at-risk segment, on a rainy weekday morning, in a store with
# overstocked croissants.
CONTEXT: dict[str, Any] = {
    "purchase.total_minor": 1250, "purchase.lines": 2, "purchase.items": 3,
    "purchase.channel": "store", "purchase.skus": frozenset({"CF-1", "BR-1"}),
    "purchase.categories": frozenset({"coffee", "bakery"}),
    "purchase.category_quantity": {"coffee": 2, "bakery": 1},
    "member.segment": "at_risk", "member.p_alive": 0.62, "member.tier": "gold",
    "member.consents": frozenset({"email"}), "member.affinity": {"coffee": 0.8},
    "env.hour": 9, "env.weekday": 3, "env.weather": "rain", "env.holiday": False,
    "env.temperature_c": 11.5,
    "inventory.overstock": {"CR-1": True}, "inventory.stock": {"CR-1": 40},
}

CROISSANT_RULE = {"all": [
    {"field": "purchase.categories", "op": "contains", "value": "coffee"},
    {"field": "member.segment", "op": "eq", "value": "at_risk"},
    {"field": "env.weather", "op": "in", "value": ["rain", "drizzle"]},
    {"field": "env.weekday", "op": "between", "value": [1, 5]},
    {"field": "env.hour", "op": "lt", "value": 11},
    {"field": "inventory.overstock", "key": "CR-1", "op": "eq", "value": True},
]}


def _holds(tree: Any, **changes: Any) -> bool:
    context = {**CONTEXT, **{name.replace("__", "."): value
                             for name, value in changes.items()}}
    return compile_condition(tree).holds(context)


def test_the_croissant_rule_holds_and_fails_for_the_right_reasons() -> None:
    assert _holds(CROISSANT_RULE)
    assert not _holds(CROISSANT_RULE, env__weather="sunny")
    assert not _holds(CROISSANT_RULE, inventory__overstock={"CR-1": False})
    assert not _holds(CROISSANT_RULE, inventory__overstock={})  # no figure: unknown
    assert not _holds(CROISSANT_RULE, env__weekday=6)
    assert not _holds(CROISSANT_RULE, member__segment="champions")
    assert not _holds(CROISSANT_RULE, purchase__categories=frozenset({"bakery"}))


@pytest.mark.parametrize(("tree", "expected"), [
    ({"field": "purchase.total_minor", "op": "ge", "value": 1250}, True),
    ({"field": "purchase.total_minor", "op": "gt", "value": 1250}, False),
    ({"field": "purchase.total_minor", "op": "le", "value": 1250}, True),
    ({"field": "purchase.total_minor", "op": "ne", "value": 1}, True),
    ({"field": "purchase.total_minor", "op": "not_in", "value": [1, 2]}, True),
    ({"field": "member.p_alive", "op": "between", "value": [0.5, 0.7]}, True),
    ({"field": "member.p_alive", "op": "lt", "value": 0.5}, False),
    ({"field": "member.tier", "op": "ne", "value": "gold"}, False),
    ({"field": "member.tier", "op": "not_in", "value": ["silver"]}, True),
    ({"field": "env.holiday", "op": "eq", "value": False}, True),
    ({"field": "member.consents", "op": "contains_any", "value": ["sms", "email"]}, True),
    ({"field": "member.consents", "op": "contains_all", "value": ["sms", "email"]}, False),
    ({"field": "member.consents", "op": "empty"}, False),
    ({"field": "purchase.vouchers", "op": "empty"}, False),  # not known: false
    ({"field": "purchase.category_quantity", "key": "coffee", "op": "ge", "value": 2}, True),
    ({"field": "purchase.category_quantity", "key": "tea", "op": "eq", "value": 0}, True),
    ({"field": "member.affinity", "key": "coffee", "op": "gt", "value": 0.5}, True),
    ({"field": "member.affinity", "key": "tea", "op": "lt", "value": 0.5}, False),
    ({"any": []}, False),
    ({"all": []}, True),
    ({"any": [{"field": "env.weather", "op": "eq", "value": "snow"},
              {"field": "env.temperature_c", "op": "lt", "value": 12}]}, True),
    ({"not": {"field": "env.weather", "op": "eq", "value": "rain"}}, False),
])
def test_each_operator(tree: dict[str, Any], expected: bool) -> None:
    assert _holds(tree) is expected


def test_an_unknown_value_makes_every_comparison_false_and_not_true() -> None:
    unknown = {"member.gender": None}
    for op, value in (("eq", "f"), ("ne", "f"), ("in", ["f"]), ("not_in", ["f"])):
        tree = {"field": "member.gender", "op": op, "value": value}
        assert not compile_condition(tree).holds(unknown)
        assert compile_condition({"not": tree}).holds(unknown)


def test_the_fields_it_reads_are_known_before_the_checkout() -> None:
    condition = compile_condition(CROISSANT_RULE)
    assert condition.fields == {"purchase.categories", "member.segment", "env.weather",
                                "env.weekday", "env.hour", "inventory.overstock"}
    assert condition.keys == {("inventory.overstock", "CR-1")}


@pytest.mark.parametrize(("tree", "loc", "kind"), [
    ({"field": "member.segmnt", "op": "eq", "value": "x"}, ["conditions", "field"],
     "unknown_field"),
    ({"field": "member.segment", "op": "lt", "value": "x"}, ["conditions", "op"],
     "unknown_operator"),
    ({"field": "purchase.total_minor", "op": "ge", "value": "1000"},
     ["conditions", "value"], "type_mismatch"),
    ({"field": "purchase.total_minor", "op": "ge", "value": 9.5},
     ["conditions", "value"], "type_mismatch"),
    ({"field": "purchase.total_minor", "op": "ge", "value": True},
     ["conditions", "value"], "type_mismatch"),
    ({"field": "env.hour", "op": "between", "value": [11, 7]}, ["conditions", "value"],
     "type_mismatch"),
    ({"field": "env.holiday", "op": "eq", "value": "yes"}, ["conditions", "value"],
     "type_mismatch"),
    ({"field": "member.consents", "op": "contains_any", "value": []},
     ["conditions", "value"], "type_mismatch"),
    ({"field": "purchase.category_quantity", "op": "ge", "value": 1},
     ["conditions", "key"], "missing"),
    ({"field": "env.hour", "key": "x", "op": "ge", "value": 1}, ["conditions", "key"],
     "syntax"),
    ({"field": "env.hour", "op": "ge"}, ["conditions", "value"], "missing"),
    ({"field": "member.consents", "op": "empty", "value": 1}, ["conditions", "value"],
     "syntax"),
    ({"all": [{"field": "env.hour", "op": "ge", "value": 7}, {"feld": "env.hour"}]},
     ["conditions", "all", 1], "syntax"),
    ({"all": {"field": "env.hour"}}, ["conditions", "all"], "syntax"),
    ({"any": [], "extra": 1}, ["conditions"], "syntax"),
    ({"not": [1]}, ["conditions", "not"], "syntax"),
    ("env.hour > 7", ["conditions"], "syntax"),
    ({"not": {"not": {"field": "x.y", "op": "eq", "value": 1}}},
     ["conditions", "not", "not", "field"], "unknown_field"),
])
def test_a_bad_tree_is_refused_at_its_place(tree: Any, loc: list[Any], kind: str) -> None:
    with pytest.raises(InvalidCondition) as refused:
        compile_condition(tree)
    error = refused.value
    assert error.status == 422 and error.code == "invalid_condition"
    first = error.extra["errors"][0]
    assert (first["loc"], first["type"]) == (loc, kind)
    assert error.detail.startswith(".".join(str(part) for part in loc))


def test_every_problem_is_listed_at_once() -> None:
    tree = {"all": [{"field": "nope", "op": "eq", "value": 1},
                    {"field": "env.hour", "op": "ge", "value": "7"},
                    {"field": "env.weather", "op": "eq", "value": "rain"}]}
    with pytest.raises(InvalidCondition) as refused:
        compile_condition(tree)
    assert [e["loc"] for e in refused.value.extra["errors"]] == [
        ["conditions", "all", 0, "field"], ["conditions", "all", 1, "value"]]


def test_a_huge_or_deep_tree_is_refused() -> None:
    leaf = {"field": "env.hour", "op": "ge", "value": 1}
    with pytest.raises(InvalidCondition, match="at most 200 nodes"):
        compile_condition({"any": [leaf] * 250})
    deep: dict[str, Any] = leaf
    for _ in range(20):
        deep = {"not": deep}
    with pytest.raises(InvalidCondition, match="deeper than"):
        compile_condition(deep)


def test_the_explanation_says_which_part_held_and_which_failed() -> None:
    explained = compile_condition(CROISSANT_RULE).explain(
        {**CONTEXT, "env.weather": "sunny"}).as_json()
    assert explained["held"] is False and explained["condition"] == "all of"
    verdicts = {part["condition"]: (part["held"], part["actual"])
                for part in explained["parts"]}
    assert verdicts["env.weather in ['rain', 'drizzle']"] == (False, "sunny")
    assert verdicts["member.segment eq 'at_risk'"] == (True, "at_risk")
    assert verdicts["inventory.overstock[CR-1] eq True"] == (True, True)
    assert verdicts["purchase.categories contains 'coffee'"] == (True, ["bakery", "coffee"])
    assert explained["parts"][2]["at"] == "conditions.all.2"


def test_every_kind_has_operators_and_every_field_a_kind() -> None:
    assert set(FIELDS.values()) <= set(OPERATORS)
    groups = {name.split(".")[0] for name in FIELDS}
    assert groups == {"purchase", "member", "env", "inventory"}


def test_the_purchase_fields_of_a_basket() -> None:
    fields = purchase_fields([Line("CF-1", "coffee", 2), Line("CF-2", "coffee", 1),
                              Line("CF-1", "coffee", 1), Line("GIFT", None, 1)],
                             total_minor=1700, channel="store", offers_used=["o-1"])
    assert fields["purchase.items"] == 5 and fields["purchase.lines"] == 4
    assert fields["purchase.category_quantity"] == {"coffee": 4}
    assert fields["purchase.sku_quantity"] == {"CF-1": 3, "CF-2": 1, "GIFT": 1}
    assert fields["purchase.categories"] == {"coffee"}
    assert fields["purchase.vouchers"] == {"o-1"}
    assert set(fields) == {name for name in FIELDS if name.startswith("purchase.")}
    assert compile_condition({"field": "purchase.sku_quantity", "key": "CF-1", "op": "ge",
                              "value": 3}).holds(fields)
