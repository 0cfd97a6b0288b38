"""Kubernetes label and field selectors: parse, validate, match, print.

Rule: a pure leaf module (it imports nothing of rebootd) that accepts and rejects exactly what
kube-apiserver 1.32 accepts and rejects, and matches exactly as it does. The grammar, the
validation messages and the matching rules are transcribed from k8s.io/apimachinery
(`pkg/labels/selector.go`, `pkg/util/validation`, `pkg/fields/selector.go`,
`metav1.LabelSelectorAsSelector`). It is hand-written because no maintained Python library
implements the apimachinery grammar (the official clients only pass selector strings through);
both rebootd's settings validation and the API emulator need the server's exact behaviour.

Deliberate, documented differences from apimachinery, none of which changes what matches:
- `k==v` is stored as `k=v` (the same requirement), and requirements are kept sorted and
  de-duplicated, so `str()` is canonical and equal selectors compare equal.
- `LabelSelector.nothing()` prints as `<nothing>` (apimachinery prints ""), a string that does not
  parse: turning "matches nothing" into a query string must fail loudly, never select everything.
- A NUL character is rejected (Go's lexer silently treats it as the end of the input).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FieldSelector",
    "FieldTerm",
    "LabelSelector",
    "Operator",
    "Requirement",
    "SelectorError",
    "label_selector_from_object",
    "parse_field_selector",
    "parse_label_selector",
    "validate_label_key",
    "validate_label_value",
]


class SelectorError(ValueError):
    """A selector that kube-apiserver would reject; the message names the offending part."""


# --- validation (k8s.io/apimachinery/pkg/util/validation) -------------------------------------

_QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME_ERR = (
    "must consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE_ERR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN_FMT = f"{_DNS1123_LABEL_FMT}(\\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN_ERR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_QUALIFIED_NAME_RE = re.compile(_QUALIFIED_NAME_FMT)
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE_FMT)
_DNS1123_SUBDOMAIN_RE = re.compile(_DNS1123_SUBDOMAIN_FMT)
_GO_INT_RE = re.compile(r"[+-]?[0-9]+")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NAME_MAX = 63
_SUBDOMAIN_MAX = 253


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    # validation.RegexError, including its double space before "or".
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    listed = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {listed}regex used for validation is '{fmt}')"


def _max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


def _byte_len(text: str) -> int:
    return len(text.encode("utf-8"))  # Go measures strings in bytes


def _dns1123_subdomain_errors(value: str) -> list[str]:
    errs: list[str] = []
    if _byte_len(value) > _SUBDOMAIN_MAX:
        errs.append(_max_len_error(_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN_RE.fullmatch(value):
        errs.append(_regex_error(_DNS1123_SUBDOMAIN_ERR, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errs


def _qualified_name_errors(value: str) -> list[str]:
    """validation.IsQualifiedName: `[prefix/]name`, prefix a DNS-1123 subdomain."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend(f"prefix part {msg}" for msg in _dns1123_subdomain_errors(prefix))
    else:
        return [
            "a qualified name "
            + _regex_error(_QUALIFIED_NAME_ERR, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errs.append("name part must be non-empty")
    elif _byte_len(name) > _NAME_MAX:
        errs.append("name part " + _max_len_error(_NAME_MAX))
    if not _QUALIFIED_NAME_RE.fullmatch(name):
        errs.append(
            "name part "
            + _regex_error(_QUALIFIED_NAME_ERR, _QUALIFIED_NAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errs


def _label_value_errors(value: str) -> list[str]:
    errs: list[str] = []
    if _byte_len(value) > _NAME_MAX:
        errs.append(_max_len_error(_NAME_MAX))
    if not _LABEL_VALUE_RE.fullmatch(value):
        errs.append(_regex_error(_LABEL_VALUE_ERR, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def go_quote(text: str) -> str:
    """Go's %q (the quoting of apimachinery's and kube-apiserver's messages)."""
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _invalid(path: str, value: str, errs: Iterable[str]) -> str:
    # field.Invalid(path, value, detail).Error()
    return f"{path}: Invalid value: {go_quote(value)}: {'; '.join(errs)}"


def _aggregate(messages: list[str]) -> str:
    # utilerrors.NewAggregate(...).Error()
    return messages[0] if len(messages) == 1 else "[" + ", ".join(messages) + "]"


def validate_label_key(key: str) -> None:
    """Raise SelectorError unless `key` is a valid label key (`[prefix/]name`)."""
    errs = _qualified_name_errors(key)
    if errs:
        raise SelectorError(_invalid("key", key, errs))


def validate_label_value(value: str) -> None:
    """Raise SelectorError unless `value` is a valid label value (may be empty)."""
    errs = _label_value_errors(value)
    if errs:
        raise SelectorError(_invalid("value", value, errs))


def _parse_go_int64(text: str) -> int | None:
    """strconv.ParseInt(text, 10, 64), or None where Go returns an error."""
    if not _GO_INT_RE.fullmatch(text):
        return None
    number = int(text)
    return number if _INT64_MIN <= number <= _INT64_MAX else None


# --- label selectors ----------------------------------------------------------------------------


class Operator(enum.StrEnum):
    """selection.Operator values (`==` is folded into `=`)."""

    EQUALS = "="
    NOT_EQUALS = "!="
    IN = "in"
    NOT_IN = "notin"
    EXISTS = "exists"
    DOES_NOT_EXIST = "!"
    GREATER_THAN = "gt"
    LESS_THAN = "lt"

    @classmethod
    def _missing_(cls, value: object) -> Operator | None:
        return cls.EQUALS if value == "==" else None


_BINARY_OPERATORS = "in, notin, =, ==, !=, gt, lt"  # strings.Join(binaryOperators, ", ")


@dataclass(frozen=True)
class Requirement:
    """One term of a label selector. Built through `labels.NewRequirement`'s validation; the
    values are stored sorted and de-duplicated (they are a set)."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        try:
            op = Operator(self.operator)
        except ValueError:
            raise SelectorError(
                f"operator: Unsupported value: {go_quote(str(self.operator))}: supported values: "
                '"in", "notin", "=", "==", "!=", "gt", "lt", "exists", "!"'
            ) from None
        errors: list[str] = []
        key_errs = _qualified_name_errors(self.key)
        if key_errs:
            errors.append(_invalid("key", self.key, key_errs))
        vals = list(self.values)
        if op in (Operator.IN, Operator.NOT_IN):
            if not vals:
                errors.append(
                    "values: Invalid value: []string{}: "
                    "for 'in', 'notin' operators, values set can't be empty"
                )
        elif op in (Operator.EQUALS, Operator.NOT_EQUALS):
            if len(vals) != 1:
                errors.append(
                    f"values: Invalid value: {_go_string_slice(vals)}: "
                    "exact-match compatibility requires one single value"
                )
        elif op in (Operator.EXISTS, Operator.DOES_NOT_EXIST):
            if vals:
                errors.append(
                    f"values: Invalid value: {_go_string_slice(vals)}: "
                    "values set must be empty for exists and does not exist"
                )
        else:  # GREATER_THAN, LESS_THAN
            if len(vals) != 1:
                errors.append(
                    f"values: Invalid value: {_go_string_slice(vals)}: "
                    "for 'Gt', 'Lt' operators, exactly one value is required"
                )
            errors.extend(
                _invalid(f"values[{i}]", value, ["for 'Gt', 'Lt' operators, the value must be an integer"])
                for i, value in enumerate(vals)
                if _parse_go_int64(value) is None
            )
        for i, value in enumerate(vals):
            value_errs = _label_value_errors(value)
            if value_errs:
                errors.append(_invalid(f"values[{i}][{self.key}]", value, value_errs))
        if errors:
            raise SelectorError(_aggregate(errors))
        object.__setattr__(self, "operator", op)
        object.__setattr__(self, "values", tuple(sorted(set(vals))))

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Requirement.Matches: `!=` and `notin` match when the key is absent."""
        op = self.operator
        present = self.key in labels
        if op in (Operator.IN, Operator.EQUALS):
            return present and labels[self.key] in self.values
        if op in (Operator.NOT_IN, Operator.NOT_EQUALS):
            return not present or labels[self.key] not in self.values
        if op is Operator.EXISTS:
            return present
        if op is Operator.DOES_NOT_EXIST:
            return not present
        if not present:
            return False
        actual = _parse_go_int64(labels[self.key])
        bound = _parse_go_int64(self.values[0])
        if actual is None or bound is None:
            return False
        return actual > bound if op is Operator.GREATER_THAN else actual < bound

    def __str__(self) -> str:
        op = self.operator
        if op is Operator.EXISTS:
            return self.key
        if op is Operator.DOES_NOT_EXIST:
            return "!" + self.key
        joined = ",".join(self.values)
        if op is Operator.IN:
            return f"{self.key} in ({joined})"
        if op is Operator.NOT_IN:
            return f"{self.key} notin ({joined})"
        symbol = {Operator.GREATER_THAN: ">", Operator.LESS_THAN: "<"}.get(op, str(op))
        return f"{self.key}{symbol}{joined}"

    def _sort_key(self) -> tuple[str, str, tuple[str, ...]]:
        return (self.key, self.operator.value, self.values)


def _go_string_slice(values: list[str]) -> str:
    return "[]string{" + ", ".join(go_quote(v) for v in values) + "}"


@dataclass(frozen=True)
class LabelSelector:
    """A label selector: the AND of its requirements. `LabelSelector()` matches everything;
    `LabelSelector.nothing()` matches nothing (a null metav1.LabelSelector in policy/v1)."""

    requirements: tuple[Requirement, ...] = ()
    selects_nothing: bool = False

    def __post_init__(self) -> None:
        if self.selects_nothing:
            object.__setattr__(self, "requirements", ())
            return
        unique = {req._sort_key(): req for req in self.requirements}
        object.__setattr__(self, "requirements", tuple(unique[k] for k in sorted(unique)))

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(selects_nothing=True)

    @classmethod
    def from_labels(cls, labels: Mapping[str, str]) -> LabelSelector:
        """The selector `k1=v1,k2=v2` for a label set (labels.ValidatedSelectorFromSet)."""
        return cls(tuple(Requirement(key, Operator.EQUALS, (value,)) for key, value in labels.items()))

    @property
    def is_empty(self) -> bool:
        """True when the selector does not restrict anything (Selector.Empty)."""
        return not self.selects_nothing and not self.requirements

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.selects_nothing:
            return False
        return all(req.matches(labels) for req in self.requirements)

    def requires_exact_match(self, key: str) -> str | None:
        """The single value `key` must have (`=`, `==` or a one-value `in`), else None."""
        for req in self.requirements:
            if req.key == key:
                if req.operator in (Operator.EQUALS, Operator.IN) and len(req.values) == 1:
                    return req.values[0]
                return None
        return None

    def __str__(self) -> str:
        if self.selects_nothing:
            return "<nothing>"
        return ",".join(str(req) for req in self.requirements)


class _Tok(enum.Enum):
    END = enum.auto()
    CLOSED_PAR = enum.auto()
    COMMA = enum.auto()
    DOES_NOT_EXIST = enum.auto()
    DOUBLE_EQUALS = enum.auto()
    EQUALS = enum.auto()
    GREATER_THAN = enum.auto()
    IDENTIFIER = enum.auto()
    IN = enum.auto()
    LESS_THAN = enum.auto()
    NOT_EQUALS = enum.auto()
    NOT_IN = enum.auto()
    OPEN_PAR = enum.auto()


_STRING_TO_TOKEN = {
    ")": _Tok.CLOSED_PAR,
    ",": _Tok.COMMA,
    "!": _Tok.DOES_NOT_EXIST,
    "==": _Tok.DOUBLE_EQUALS,
    "=": _Tok.EQUALS,
    ">": _Tok.GREATER_THAN,
    "in": _Tok.IN,
    "<": _Tok.LESS_THAN,
    "!=": _Tok.NOT_EQUALS,
    "notin": _Tok.NOT_IN,
    "(": _Tok.OPEN_PAR,
}
_SPECIAL = frozenset("=!(),><")
_WHITESPACE = frozenset(" \t\r\n")


def _lex(text: str) -> list[tuple[_Tok, str]]:
    """labels.Lexer: whitespace separates, special symbols are taken greedily while they still
    form a token, everything else up to a special symbol or whitespace is an identifier (or the
    keyword `in` / `notin`)."""
    items: list[tuple[_Tok, str]] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] in _WHITESPACE:
            pos += 1
        if pos >= end:
            items.append((_Tok.END, ""))
            return items
        if text[pos] in _SPECIAL:
            buffer = ""
            last: tuple[_Tok, str] | None = None
            while pos < end and text[pos] in _SPECIAL:
                candidate = buffer + text[pos]
                token = _STRING_TO_TOKEN.get(candidate)
                if token is None and last is not None:
                    break
                buffer = candidate
                pos += 1
                if token is not None:
                    last = (token, candidate)
            assert last is not None  # every single special symbol is a token
            items.append(last)
            continue
        start = pos
        while pos < end and text[pos] not in _SPECIAL and text[pos] not in _WHITESPACE:
            pos += 1
        word = text[start:pos]
        items.append((_STRING_TO_TOKEN.get(word, _Tok.IDENTIFIER), word))


class _RequirementError(Exception):
    """An error inside one requirement: Parse wraps it in "unable to parse requirement: "."""


class _Parser:
    """labels.Parser: a recursive-descent parser over the token list."""

    def __init__(self, text: str) -> None:
        self._items = _lex(text)
        self._position = 0

    def _lookahead(self, *, values: bool) -> tuple[_Tok, str]:
        return self._as(self._items[self._position], values=values)

    def _consume(self, *, values: bool) -> tuple[_Tok, str]:
        item = self._items[self._position]
        self._position += 1
        return self._as(item, values=values)

    @staticmethod
    def _as(item: tuple[_Tok, str], *, values: bool) -> tuple[_Tok, str]:
        # In the Values context the keywords `in` / `notin` are plain identifiers.
        if values and item[0] in (_Tok.IN, _Tok.NOT_IN):
            return (_Tok.IDENTIFIER, item[1])
        return item

    def parse(self) -> list[Requirement]:
        requirements: list[Requirement] = []
        while True:
            tok, lit = self._lookahead(values=True)
            if tok in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                try:
                    requirements.append(self._parse_requirement())
                except (_RequirementError, SelectorError) as exc:
                    raise SelectorError(f"unable to parse requirement: {exc}") from None
                tok2, lit2 = self._consume(values=True)
                if tok2 is _Tok.END:
                    return requirements
                if tok2 is _Tok.COMMA:
                    tok3, lit3 = self._lookahead(values=True)
                    if tok3 not in (_Tok.IDENTIFIER, _Tok.DOES_NOT_EXIST):
                        raise SelectorError(f"found '{lit3}', expected: identifier after ','")
                    continue
                raise SelectorError(f"found '{lit2}', expected: ',' or 'end of string'")
            if tok is _Tok.END:
                return requirements
            raise SelectorError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def _parse_requirement(self) -> Requirement:
        key, operator = self._parse_key_and_infer_operator()
        if operator is not None:
            return Requirement(key, operator)
        operator = self._parse_operator()
        if operator in (Operator.IN, Operator.NOT_IN):
            values = self._parse_values()
        else:
            values = self._parse_exact_value()
        return Requirement(key, operator, tuple(sorted(values)))

    def _parse_key_and_infer_operator(self) -> tuple[str, Operator | None]:
        operator: Operator | None = None
        tok, literal = self._consume(values=True)
        if tok is _Tok.DOES_NOT_EXIST:
            operator = Operator.DOES_NOT_EXIST
            tok, literal = self._consume(values=True)
        if tok is not _Tok.IDENTIFIER:
            raise _RequirementError(f"found '{literal}', expected: identifier")
        key_errs = _qualified_name_errors(literal)
        if key_errs:
            # labels.Parse validates the key with a nil field path, hence "<nil>".
            raise _RequirementError(_invalid("<nil>", literal, key_errs))
        next_tok, _ = self._lookahead(values=True)
        if next_tok in (_Tok.END, _Tok.COMMA) and operator is None:
            operator = Operator.EXISTS
        return literal, operator

    def _parse_operator(self) -> Operator:
        tok, lit = self._consume(values=False)
        operators = {
            _Tok.IN: Operator.IN,
            _Tok.EQUALS: Operator.EQUALS,
            _Tok.DOUBLE_EQUALS: Operator.EQUALS,
            _Tok.GREATER_THAN: Operator.GREATER_THAN,
            _Tok.LESS_THAN: Operator.LESS_THAN,
            _Tok.NOT_IN: Operator.NOT_IN,
            _Tok.NOT_EQUALS: Operator.NOT_EQUALS,
        }
        if tok not in operators:
            raise _RequirementError(f"found '{lit}', expected: {_BINARY_OPERATORS}")
        return operators[tok]

    def _parse_values(self) -> set[str]:
        tok, lit = self._consume(values=True)
        if tok is not _Tok.OPEN_PAR:
            raise _RequirementError(f"found '{lit}' expected: '('")
        tok, lit = self._lookahead(values=True)
        if tok in (_Tok.IDENTIFIER, _Tok.COMMA):
            values = self._parse_identifiers_list()
            close, _ = self._consume(values=True)
            if close is not _Tok.CLOSED_PAR:
                raise _RequirementError(f"found '{lit}', expected: ')'")
            return values
        if tok is _Tok.CLOSED_PAR:  # "()" is the set {""}
            self._consume(values=True)
            return {""}
        raise _RequirementError(f"found '{lit}', expected: ',', ')' or identifier")

    def _parse_identifiers_list(self) -> set[str]:
        values: set[str] = set()
        while True:
            tok, lit = self._consume(values=True)
            if tok is _Tok.IDENTIFIER:
                values.add(lit)
                tok2, lit2 = self._lookahead(values=True)
                if tok2 is _Tok.COMMA:
                    continue
                if tok2 is _Tok.CLOSED_PAR:
                    return values
                raise _RequirementError(f"found '{lit2}', expected: ',' or ')'")
            if tok is _Tok.COMMA:  # empty values: "(,", ",,", ",)"
                if not values:
                    values.add("")
                tok2, _ = self._lookahead(values=True)
                if tok2 is _Tok.CLOSED_PAR:
                    values.add("")
                    return values
                if tok2 is _Tok.COMMA:
                    self._consume(values=True)
                    values.add("")
                continue
            raise _RequirementError(f"found '{lit}', expected: ',', or identifier")

    def _parse_exact_value(self) -> set[str]:
        tok, _ = self._lookahead(values=True)
        if tok in (_Tok.END, _Tok.COMMA):
            return {""}
        tok, lit = self._consume(values=True)
        if tok is _Tok.IDENTIFIER:
            return {lit}
        raise _RequirementError(f"found '{lit}', expected: identifier")


def parse_label_selector(text: str) -> LabelSelector:
    """labels.Parse: `k=v`, `k==v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, `k>N`,
    `k<N`, comma = AND; the empty string selects everything."""
    if "\x00" in text:
        raise SelectorError("found NUL character in label selector")
    return LabelSelector(tuple(_Parser(text).parse()))


_EXPRESSION_OPERATORS = {
    "In": Operator.IN,
    "NotIn": Operator.NOT_IN,
    "Exists": Operator.EXISTS,
    "DoesNotExist": Operator.DOES_NOT_EXIST,
}


def label_selector_from_object(obj: Mapping[str, Any] | None) -> LabelSelector:
    """metav1.LabelSelectorAsSelector for a decoded metav1.LabelSelector (policy/v1 semantics):
    None matches nothing, `{}` matches everything, otherwise matchLabels AND matchExpressions."""
    if obj is None:
        return LabelSelector.nothing()
    match_labels = obj.get("matchLabels") or {}
    match_expressions = obj.get("matchExpressions") or []
    if not isinstance(match_labels, Mapping) or not isinstance(match_expressions, list):
        raise SelectorError("matchLabels must be a map and matchExpressions a list")
    requirements = [
        Requirement(str(key), Operator.EQUALS, (str(value),)) for key, value in match_labels.items()
    ]
    for expression in match_expressions:
        if not isinstance(expression, Mapping):
            raise SelectorError(f"matchExpressions entry is not an object: {expression!r}")
        raw_operator = expression.get("operator")
        operator = _EXPRESSION_OPERATORS.get(str(raw_operator))
        if operator is None:
            raise SelectorError(f"{go_quote(str(raw_operator))} is not a valid label selector operator")
        values = expression.get("values") or []
        requirements.append(
            Requirement(str(expression.get("key", "")), operator, tuple(str(v) for v in values))
        )
    return LabelSelector(tuple(requirements))


# --- field selectors ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldTerm:
    """`field=value` (`==` folded into `=`) or `field!=value`."""

    field: str
    operator: str  # "=" or "!="
    value: str

    def matches(self, values: Mapping[str, str]) -> bool:
        actual = values.get(self.field, "")
        return actual == self.value if self.operator == "=" else actual != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    """The AND of field terms; the empty selector matches everything."""

    terms: tuple[FieldTerm, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.terms

    def matches(self, values: Mapping[str, str]) -> bool:
        """`values` maps each supported field to its string form; a missing field reads as ""."""
        return all(term.matches(values) for term in self.terms)

    def exact(self, field_name: str) -> str | None:
        """The value an `=` / `==` term requires of `field_name` (RequiresExactMatch), else None."""
        for term in self.terms:
            if term.field == field_name and term.operator == "=":
                return term.value
        return None

    def __str__(self) -> str:
        return ",".join(str(term) for term in self.terms)


def escape_field_value(value: str) -> str:
    """fields.EscapeValue: backslash-escape `\\`, `,` and `=`."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(value: str) -> str:
    if not any(ch in value for ch in "\\,="):
        return value
    out: list[str] = []
    in_slash = False
    for ch in value:
        if in_slash:
            if ch not in "\\,=":
                raise SelectorError(f"invalid field selector: invalid escape sequence: \\{ch}")
            out.append(ch)
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch in ",=":
            # Go formats the rune with %v: its code point.
            raise SelectorError(f"invalid field selector: unescaped character in value: {ord(ch)}")
        else:
            out.append(ch)
    if in_slash:
        raise SelectorError("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _split_field_terms(text: str) -> list[str]:
    if not text:
        return []
    terms: list[str] = []
    start = 0
    in_slash = False
    for i, ch in enumerate(text):
        if in_slash:
            in_slash = False
        elif ch == "\\":
            in_slash = True
        elif ch == ",":
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return terms


def _split_field_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op) :]
    return None


def parse_field_selector(text: str, *, supported: frozenset[str]) -> FieldSelector:
    """fields.ParseSelector followed by the server's field-label conversion: `=`, `==`, `!=`,
    comma = AND, backslash escapes in values, no whitespace trimming; a field not in `supported`
    raises `SelectorError("field label not supported: X")`."""
    terms: list[FieldTerm] = []
    for part in sorted(_split_field_terms(text)):
        if not part:
            continue
        split = _split_field_term(part)
        if split is None:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{part}'")
        lhs, op, rhs = split
        terms.append(FieldTerm(lhs, "!=" if op == "!=" else "=", _unescape_field_value(rhs)))
    for term in terms:
        if term.field not in supported:
            raise SelectorError(f"field label not supported: {term.field}")
    unique = {(t.field, t.operator, t.value): t for t in terms}
    return FieldSelector(tuple(unique[k] for k in sorted(unique)))
