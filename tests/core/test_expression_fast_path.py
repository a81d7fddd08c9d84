"""The direct evaluation of ``claim`` and ``contains(claim, 'x')`` gives exactly what the
budgeted JMESPath interpreter gives, whatever the claims hold."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from jitprov.core.mapping.expressions import compile_expression

NAMES = ["groups", "email", "g-1"]
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    | st.sampled_from(["Nurses", "nurses", "Nurses ", "", "N"]) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.sampled_from(NAMES), inner,
                                                                max_size=3),
    max_leaves=12)
CLAIMS = st.dictionaries(st.sampled_from(NAMES), JSON, max_size=3) | JSON
EXPRESSIONS = ["groups", "email", '"g-1"', "contains(groups, 'Nurses')",
               "contains(email, 'N')", 'contains("g-1", `"Nurses"`)', "contains(groups, '')"]


@settings(max_examples=400)
@given(claims=CLAIMS, text=st.sampled_from(EXPRESSIONS))
@example(claims={"email": "Nurses"}, text="contains(email, 'N')")
@example(claims={"groups": ["nurses", "Nurses"]}, text="contains(groups, 'Nurses')")
@example(claims={"groups": [1, True]}, text="contains(groups, 'Nurses')")
@example(claims={"groups": {"Nurses": 1}}, text="contains(groups, 'Nurses')")
@example(claims=["Nurses"], text="groups")
def test_fast_path_agrees_with_the_interpreter(claims: object, text: str) -> None:
    expression = compile_expression(text)

    assert expression._fast is not None
    assert expression.interpret(claims) == expression.evaluate(claims)


def test_other_shapes_take_the_interpreter() -> None:
    for text in ("name || email", "contains(groups, email)", "groups[0]", "`true`"):
        assert compile_expression(text)._fast is None
