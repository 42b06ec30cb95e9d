"""List RPC plumbing shared by every service: AIP-160 filters and opaque page tokens.

Filters are a deliberately small subset of AIP-160 (conjunctions of comparisons) so every service can map each
field to an indexed column; anything outside the subset is rejected with a field violation rather than being
silently ignored.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servicekit.errors import InvalidArgument

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

_TOKEN_RE = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<op>!=|>=|<=|=|<|>|:)
      | (?P<word>[A-Za-z_][A-Za-z0-9_.\-/@+]*|-?\d+(?:\.\d+)?)
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True, slots=True)
class Condition:
    """One `field op value` term; `field` keeps its dotted path (e.g. `labels.room`)."""

    field: str
    op: str
    value: str


def parse_filter(text: str, *, allowed: Iterable[str], field_name: str = "filter") -> list[Condition]:
    """Parse `a = "x" AND b.c = "y"` into conditions, checking each field against `allowed`.

    `allowed` holds exact field names, or prefixes ending in `.` (e.g. `labels.`) for map keys.
    """
    text = text.strip()
    if not text:
        return []
    allowed = tuple(allowed)
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match or match.end() == pos:
            if text[pos:].strip() == "":
                break
            raise InvalidArgument(
                f"cannot parse filter near {text[pos:pos + 20]!r}",
                violations={field_name: f"unexpected text at offset {pos}: {text[pos:pos + 20]!r}"},
                reason="INVALID_FILTER",
            )
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()

    conditions: list[Condition] = []
    index = 0
    while index < len(tokens):
        try:
            (fkind, field), (okind, op), (vkind, value) = tokens[index : index + 3]
        except ValueError:
            raise InvalidArgument(
                "incomplete filter term",
                violations={field_name: "each term must be `field op value`, terms joined by AND"},
                reason="INVALID_FILTER",
            ) from None
        if fkind != "word" or okind != "op" or vkind not in ("string", "word"):
            raise InvalidArgument(
                f"bad filter term near {field!r}",
                violations={field_name: f"expected `field op value`, got {field} {op} {value}"},
                reason="INVALID_FILTER",
            )
        if not any(field == a or (a.endswith(".") and field.startswith(a) and len(field) > len(a)) for a in allowed):
            raise InvalidArgument(
                f"cannot filter on {field!r}",
                violations={field_name: f"unknown field {field!r}; filterable: {', '.join(allowed)}"},
                reason="INVALID_FILTER",
            )
        if vkind == "string":
            value = json.loads(value)
        conditions.append(Condition(field, op, value))
        index += 3
        if index < len(tokens):
            kind, word = tokens[index]
            if kind != "word" or word.upper() != "AND":
                raise InvalidArgument(
                    f"unsupported filter operator {word!r}",
                    violations={field_name: "terms may only be joined with AND"},
                    reason="INVALID_FILTER",
                )
            index += 1
            if index == len(tokens):
                raise InvalidArgument(
                    "filter ends with AND", violations={field_name: "dangling AND"}, reason="INVALID_FILTER"
                )
    return conditions


def page_size(requested: int, *, field_name: str = "page_size") -> int:
    if requested < 0:
        raise InvalidArgument("page_size must not be negative", violations={field_name: "must be >= 0"})
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    return min(requested, MAX_PAGE_SIZE)


def _fingerprint(query: Mapping[str, Any]) -> str:
    return hashlib.blake2b(json.dumps(query, sort_keys=True).encode(), digest_size=6).hexdigest()


def encode_page_token(position: Any, query: Mapping[str, Any]) -> str:
    """An opaque token holding the last row's sort key, bound to the query it came from.

    Binding to the query (filter, order) lets us reject a token replayed against a different query, which
    AIP-158 asks for and which would otherwise return silently wrong pages.
    """
    raw = json.dumps({"p": position, "q": _fingerprint(query)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str, query: Mapping[str, Any], *, field_name: str = "page_token") -> Any:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        position, fingerprint = data["p"], data["q"]
    except (ValueError, KeyError, TypeError):
        raise InvalidArgument(
            "page_token is not valid", violations={field_name: "not a token this service issued"},
            reason="INVALID_PAGE_TOKEN",
        ) from None
    if fingerprint != _fingerprint(query):
        raise InvalidArgument(
            "page_token was issued for a different query",
            violations={field_name: "filter and order_by must match the request that returned the token"},
            reason="INVALID_PAGE_TOKEN",
        )
    return position
