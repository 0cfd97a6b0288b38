"""Go RE2 patterns (kured's `--alert-filter-regexp`) read by Python `re`.

Rule: a pattern is accepted only when Python reads it the way Go's RE2 does; a construct that
means something else in Python, or that RE2 refuses but Python accepts, is refused with the
reason and, where there is one, the Python spelling. Perl classes (`\\d`, `\\w`, `\\s`, `\\b`) are
ASCII in RE2, so accepted patterns are compiled with `re.ASCII`. Pure; a leaf module.
"""

from __future__ import annotations

import re

_POSIX_CLASSES = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7F",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1F\\x7F",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_ESCAPES = {
    "p": "Unicode classes \\p{...} are RE2 only; spell the characters out",
    "P": "Unicode classes \\P{...} are RE2 only; spell the characters out",
    "Q": "\\Q...\\E quoting is RE2 only; escape each special character instead",
    "E": "\\Q...\\E quoting is RE2 only; escape each special character instead",
    "z": "\\z (end of text) is RE2 only; Python spells it \\Z",
    "Z": "RE2 has no \\Z (it refuses it); Python's \\Z is RE2's \\z",
    "C": "\\C (any byte) is RE2 only",
}
_GROUPS = {
    "?=": "lookahead (?=...) is refused by RE2: kured could not run this pattern",
    "?!": "negative lookahead (?!...) is refused by RE2: kured could not run this pattern",
    "?<=": "lookbehind (?<=...) is refused by RE2: kured could not run this pattern",
    "?<!": "negative lookbehind (?<!...) is refused by RE2: kured could not run this pattern",
    "?>": "atomic groups (?>...) are refused by RE2: kured could not run this pattern",
    "?#": "comments (?#...) are refused by RE2: kured could not run this pattern",
    "?(": "conditionals (?(...)...) are refused by RE2: kured could not run this pattern",
    "?P=": "backreferences (?P=name) are refused by RE2: kured could not run this pattern",
}


class Re2Difference(ValueError):
    """The pattern means something else in Python than in Go's RE2 (the text says what)."""


def re2_differences(pattern: str) -> list[str]:
    """Why Python would read `pattern` differently from RE2; empty when it reads it the same."""
    found: list[str] = []
    i = 0
    in_class = False
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            if nxt in _ESCAPES:
                found.append(_ESCAPES[nxt])
            elif nxt.isdigit() and nxt != "0" and not in_class:
                found.append(f"\\{nxt} is a backreference in Python and refused by RE2")
            elif nxt == "x" and pattern[i + 2 : i + 3] == "{":
                found.append("\\x{...} is RE2 only; Python spells it \\uXXXX or \\U00XXXXXX")
            i += 2
            continue
        if in_class:
            if pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                name = pattern[i + 2 : end] if end != -1 else ""
                name = name.removeprefix("^")
                if name in _POSIX_CLASSES:
                    found.append(
                        f"[:{name}:] is a POSIX class in RE2 but a plain set of characters in Python; "
                        f"write {_POSIX_CLASSES[name]} inside the brackets"
                    )
                    i = end + 2
                    continue
            if ch == "]":
                in_class = False
            i += 1
            continue
        if ch == "[":
            in_class = True
            i += 1
            if pattern[i : i + 1] == "^":
                i += 1
            if pattern[i : i + 1] == "]":  # a leading ] is a literal in both
                i += 1
            continue
        if ch == "(" and pattern[i + 1 : i + 2] == "?":
            rest = pattern[i + 1 :]
            for opener, reason in _GROUPS.items():
                if rest.startswith(opener):
                    found.append(reason)
                    break
            else:
                flags = re.match(r"\?([a-zA-Z-]*)[):]", rest)
                if flags and "U" in flags.group(1):
                    found.append("(?U) makes RE2 ungreedy but Python Unicode-aware; swap *? and * instead")
        if ch == "{" and re.match(r"\{,[0-9]+\}", pattern[i:]):
            found.append("{,n} is a literal in RE2 but 0 to n repetitions in Python; write {0,n}")
        i += 1
    return found


def compile_re2(pattern: str) -> re.Pattern[str]:
    """Compile a kured (RE2) pattern as Python; raises Re2Difference or re.error."""
    differences = re2_differences(pattern)
    if differences:
        raise Re2Difference("; ".join(dict.fromkeys(differences)))
    return re.compile(pattern, re.ASCII)
