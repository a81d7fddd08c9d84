"""JMESPath expressions over the claims: compiled once per policy, evaluated per login.

JMESPath (https://jmespath.org/specification.html) is a query language, not a programming
language: no loops, no recursion, no assignment. Evaluation is bounded further here:

* an expression is at most :data:`MAX_EXPRESSION_LENGTH` characters, and every function it calls
  must exist with the right number of arguments (checked at compile time, not at a login);
* the claims are at most :data:`MAX_CLAIMS_BYTES` of JSON (see :func:`prepare_claims`);
* one evaluation spends at most :data:`MAX_EVALUATION_STEPS` steps, where a step is one node of
  the expression visited plus one per item of every list, string or object it produces.

Our extensions to the built-in functions: ``contains(null, x)`` is ``false`` instead of a type
error, so ``contains(groups, 'Nurses')`` works for an identity that has no ``groups`` claim; and
``join`` skips null items, so ``join(' ', [given_name, family_name])`` works when one is absent.
``contains`` on an array also compares the JMESPath way (``true`` is not ``1``).

Evaluation never raises: an error comes back as an :class:`EvaluationError` value, for the rule
layer to decide what it means (a grant rule does not match; a deny rule denies).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jmespath
from jmespath import exceptions as jmespath_errors
from jmespath.functions import Functions, signature
from jmespath.parser import ParsedResult
from jmespath.visitor import Options, TreeInterpreter

MAX_EXPRESSION_LENGTH = 1000  # characters
MAX_CLAIMS_BYTES = 256 * 1024  # UTF-8 bytes of the compact JSON encoding
MAX_EVALUATION_STEPS = 1_000_000


class ExpressionSyntaxError(ValueError):
    """An expression that does not compile; the loader turns it into a ``MappingError``."""


@dataclass(frozen=True, slots=True)
class EvaluationError:
    """Why an expression produced no value for these claims (a value, never raised)."""

    message: str


class _BudgetExceeded(jmespath_errors.JMESPathError):
    pass


class _Budget:
    """Steps left for one evaluation, shared by the interpreter and the functions."""

    __slots__ = ("left",)

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise _BudgetExceeded(f"evaluation exceeded {MAX_EVALUATION_STEPS} steps")


def _size(value: object) -> int:
    return len(value) if isinstance(value, list | str | dict) else 0


def _json_equal(left: object, right: object, budget: _Budget) -> bool:
    """JSON equality, paid for node by node: ``true`` is not ``1`` (as Python has it), ``1`` is
    ``1.0``, and comparing nested shared references cannot run away."""
    stack = [(left, right)]
    while stack:
        a, b = stack.pop()
        budget.spend(1)
        if a is b:
            continue
        if isinstance(a, bool) or isinstance(b, bool):
            return False  # True and False are singletons: ``a is b`` decided equal booleans
        if isinstance(a, list) and isinstance(b, list):
            if len(a) != len(b):
                return False
            stack.extend(zip(a, b, strict=True))
        elif isinstance(a, dict) and isinstance(b, dict):
            if a.keys() != b.keys():
                return False
            stack.extend((a[key], b[key]) for key in a)
        elif isinstance(a, list | dict) or isinstance(b, list | dict) or a != b:
            return False
    return True


class ClaimFunctions(Functions):
    """The JMESPath built-ins, with a null-safe ``contains`` and a bounded ``to_string``."""

    def __init__(self, budget: _Budget | None = None) -> None:
        self._budget = budget if budget is not None else _Budget(MAX_EVALUATION_STEPS)

    @signature({"types": ["array", "string", "null"]}, {"types": []})
    def _func_contains(self, subject: object, search: object) -> bool:
        # Our extension: a missing claim (null) contains nothing, rather than a type error.
        if subject is None:
            return False
        if isinstance(subject, str):
            return isinstance(search, str) and search in subject
        if not isinstance(subject, list):  # the signature admits array, string or null only
            return False
        self._budget.spend(len(subject))
        if isinstance(search, str):
            # the common case (a group name): only an equal string is JSON-equal to a string,
            # and the list's own ``in`` finds it without a Python-level loop
            self._budget.spend(len(subject))
            return search in subject
        return any(_json_equal(item, search, self._budget) for item in subject)

    @signature({"types": ["string"]}, {"types": ["array"]})
    def _func_join(self, glue: str, items: list[object]) -> str:
        # Our extension: null items are skipped, so join(' ', [given_name, family_name]) works
        # when the IdP sends only one of them. Any other non-string item is a type error.
        self._budget.spend(len(items))
        present = [item for item in items if item is not None]
        if not all(isinstance(item, str) for item in present):
            raise jmespath_errors.JMESPathTypeError(
                "join", items, type(items).__name__, ["array-string"])
        return glue.join(str(item) for item in present)

    @signature({"types": []})
    def _func_to_string(self, arg: object) -> str:
        if isinstance(arg, str):
            return arg
        # Walk (and pay for) the value before serialising it: multi-select can nest shared
        # references, whose JSON text grows exponentially with the expression length.
        stack = [arg]
        while stack:
            current = stack.pop()
            self._budget.spend(1)
            if isinstance(current, list):
                stack.extend(current)
            elif isinstance(current, dict):
                stack.extend(current.values())
        return json.dumps(arg, separators=(",", ":"))


class _BoundedInterpreter(TreeInterpreter):
    def __init__(self, budget: _Budget) -> None:
        super().__init__(Options(custom_functions=ClaimFunctions(budget)))
        self._budget = budget

    def visit(self, node: Any, *args: Any, **kwargs: Any) -> Any:
        self._budget.spend(1)
        result = super().visit(node, *args, **kwargs)
        self._budget.spend(_size(result))
        return result

    def visit_comparator(self, node: Any, value: Any) -> Any:
        # ``==`` and ``!=`` go through the budgeted equality. Ordering is defined for two numbers
        # or two strings and is null otherwise (jmespath 1.1 raises TypeError on "1" < 2).
        left = self.visit(node["children"][0], value)
        right = self.visit(node["children"][1], value)
        operator = node["value"]
        if operator in ("eq", "ne"):
            return _json_equal(left, right, self._budget) == (operator == "eq")
        both_numbers = _is_number(left) and _is_number(right)
        both_strings = isinstance(left, str) and isinstance(right, str)
        if not (both_numbers or both_strings):
            return None
        return self.COMPARATOR_FUNC[operator](left, right)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_functions(parsed: Any) -> None:
    stack = [parsed]
    table: Mapping[str, Any] = ClaimFunctions.FUNCTION_TABLE
    while stack:
        node = stack.pop()
        if node.get("type") == "function_expression":
            name = node["value"]
            spec = table.get(name)
            if spec is None:
                raise ExpressionSyntaxError(f"unknown function {name}()")
            wanted = len(spec["signature"])
            got = len(node["children"])
            variadic = bool(spec["signature"]) and spec["signature"][-1].get("variadic", False)
            if got < wanted if variadic else got != wanted:
                at_least = "at least " if variadic else ""
                raise ExpressionSyntaxError(
                    f"{name}() takes {at_least}{wanted} argument(s), {got} given"
                )
        # Slice nodes hold plain integers as children; only dicts are AST nodes.
        stack.extend(child for child in node.get("children", ()) if isinstance(child, dict))


_SLOW = object()  # a fast path's answer: "ask the interpreter"
_FAST_LIMIT = MAX_EVALUATION_STEPS // 8  # values this large take the budgeted interpreter


def _fast_path(parsed: Any) -> Callable[[object], object] | None:
    """A direct evaluation of the two shapes most mapping expressions have, a claim name
    (``email``) and ``contains(claim, 'literal')``, giving exactly what the interpreter gives,
    or ``_SLOW`` where only it can tell (a type error, a value near the step budget)."""
    kind = parsed.get("type")
    if kind == "field":
        name = parsed["value"]

        def field(claims: object) -> object:
            value = claims.get(name) if isinstance(claims, dict) else None
            return _SLOW if _size(value) > _FAST_LIMIT else value
        return field
    children = parsed.get("children", ())
    if (kind == "function_expression" and parsed["value"] == "contains" and len(children) == 2
            and children[0].get("type") == "field" and children[1].get("type") == "literal"
            and isinstance(children[1]["value"], str)):
        name, search = children[0]["value"], children[1]["value"]

        def contains(claims: object) -> object:
            subject = claims.get(name) if isinstance(claims, dict) else None
            if subject is None:
                return False
            if not isinstance(subject, list | str) or len(subject) > _FAST_LIMIT:
                return _SLOW  # a type error, or a value the budget must weigh
            # a string in a list: only an equal string is JSON-equal to it
            return search in subject
        return contains
    return None


#: JMESPath nodes whose first child reads the current node and whose other children read
#: what it gave (``a.b``, ``a[0]``, ``a | b``, ``a[*].b``, ``a[?x].b``, ``a[]``)
_LEFT_THEN_RESULT = frozenset({"subexpression", "index_expression", "pipe", "projection",
                               "value_projection", "filter_projection", "flatten"})


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression. ``evaluate`` returns the value or an :class:`EvaluationError`."""

    text: str
    _parsed: ParsedResult
    _fast: Callable[[object], object] | None = None

    def evaluate(self, claims: object) -> object:
        """Evaluate over ``claims`` (as given by :func:`prepare_claims`); never raises."""
        if self._fast is not None:
            value = self._fast(claims)
            if value is not _SLOW:
                return value
        return self.interpret(claims)

    def may_read(self, claim: str) -> bool:
        """Whether the expression may read the top-level claim ``claim``: it names it as a
        field anywhere, or reads the whole document (``@``, ``*``, a projection of the root),
        where any claim may be reached. False only when it certainly does not."""
        stack = [self._parsed.parsed]
        while stack:
            node = stack.pop()
            if not isinstance(node, dict):
                continue
            kind = node.get("type")
            if kind == "field" and node.get("value") == claim:
                return True
            if kind in ("current", "identity", "wildcard_index", "value_projection",
                        "object_projection", "flatten", "wildcard"):
                return True
            stack.extend(child for child in node.get("children", ())
                         if isinstance(child, dict))
        return False

    def top_level_claims(self) -> frozenset[str] | None:
        """The top-level claims the expression reads (``contains(groups, 'x') || hd``:
        ``groups`` and ``hd``; ``address.country``: ``address``); None when it reads the
        whole document (``@``, ``*``, a projection of the root), where any claim may be."""
        found: set[str] = set()
        whole = False

        def walk(node: object, at_root: bool) -> None:
            nonlocal whole
            if not isinstance(node, dict):
                return
            kind = node.get("type")
            children = [c for c in node.get("children", ()) if isinstance(c, dict)]
            if kind == "field":
                if at_root:
                    found.add(str(node.get("value")))
            elif kind in ("current", "identity"):
                whole = whole or at_root
            elif kind == "expref":  # ``&name``: applied to the elements later, not the root
                for child in children:
                    walk(child, False)
            elif kind in _LEFT_THEN_RESULT and children:
                # the first child reads the current node; the others read its result
                walk(children[0], at_root)
                for child in children[1:]:
                    walk(child, False)
            else:  # comparators, and/or/not, function arguments, multi-selects
                for child in children:
                    walk(child, at_root)

        walk(self._parsed.parsed, True)
        return None if whole else frozenset(found)

    def interpret(self, claims: object) -> object:
        """As :meth:`evaluate`, always through the budgeted JMESPath interpreter."""
        budget = _Budget(MAX_EVALUATION_STEPS)
        try:
            return _BoundedInterpreter(budget).visit(self._parsed.parsed, claims)
        except jmespath_errors.JMESPathError as err:
            return EvaluationError(str(err))
        except Exception as err:
            # The interpreter is third-party code run on untrusted claims: whatever it raises
            # (TypeError on odd comparisons, RecursionError...) is this login's problem, reported.
            return EvaluationError(f"{type(err).__name__}: {err}")


def compile_expression(text: str) -> Expression:
    """Compile ``text``; raises :class:`ExpressionSyntaxError` naming the problem."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionSyntaxError(
            f"expression is {len(text)} characters long, at most {MAX_EXPRESSION_LENGTH} allowed"
        )
    try:
        parsed = jmespath.compile(text)
    except jmespath_errors.JMESPathError as err:
        raise ExpressionSyntaxError(_describe_syntax_error(err)) from None
    except RecursionError:
        raise ExpressionSyntaxError("expression is nested too deeply") from None
    _check_functions(parsed.parsed)
    return Expression(text, parsed, _fast_path(parsed.parsed))


def _describe_syntax_error(err: jmespath_errors.JMESPathError) -> str:
    # jmespath draws a caret under the expression on extra lines; an error line wants one line.
    if isinstance(err, jmespath_errors.IncompleteExpressionError):
        return "incomplete expression"
    if isinstance(err, jmespath_errors.LexerError):
        return f"{err.message} at column {err.lexer_position + 1}"
    if isinstance(err, jmespath_errors.ParseError):
        return f"unexpected {err.token_value!r} at column {err.lex_position + 1}"
    return " ".join(str(err).split("\n", 1)[0].split())


def prepare_claims(claims: Mapping[str, object]) -> dict[str, object] | EvaluationError:
    """Return a plain-JSON copy of ``claims``, or why they cannot be evaluated; never raises.

    The copy is what expressions see: only JSON types (tuples become lists), no reference to the
    caller's objects. Claims that are not JSON (a set, NaN, a non-string key of an odd type) or
    larger than :data:`MAX_CLAIMS_BYTES` are refused.
    """
    try:
        text = json.dumps(dict(claims), ensure_ascii=False, allow_nan=False)
        size = len(text.encode("utf-8"))
        if size > MAX_CLAIMS_BYTES:
            return EvaluationError(
                f"claims are {size} bytes of JSON, at most {MAX_CLAIMS_BYTES} allowed"
            )
        copy: dict[str, object] = json.loads(text)
    except Exception as err:
        # Anything json refuses (TypeError, ValueError, RecursionError) means "not JSON".
        return EvaluationError(f"claims are not JSON: {type(err).__name__}: {err}")
    return copy


def is_truthy(value: object) -> bool:
    """JMESPath truthiness: ``false``, ``null``, ``""``, ``[]`` and ``{}`` are false; 0 is true."""
    if value is None or value is False:
        return False
    return not (isinstance(value, str | list | dict) and len(value) == 0)
