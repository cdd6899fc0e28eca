"""Reading a request's JSON body: size, media type, nesting depth and numbers, all checked.

A client's mistake must cost a 4xx answer and nothing more: no body read beyond the limit,
no parser recursion that ends in a ``RecursionError``, no ``1e999`` turned into infinity and
answered with ``null``. So, before the parser sees the body:

1. **Size.** A ``Content-Length`` over the limit is refused (413) before anything is read; a
   body without one (chunked, on servers that stream it) is read up to one byte past the
   limit and refused there. (Under :func:`chariots_waitress.serve` waitress itself enforces
   the same limit from the headers, before it buffers the body.)
2. **Depth.** Python's JSON parser recurses once per nested array or object. A body can only
   nest as deep as it has brackets, so counting them (C speed) clears most bodies; one with
   more than :data:`MAX_BODY_DEPTH` brackets gets the depth of its brackets outside strings
   measured, by counting over spans of the text and looking closer only where it is deep.
3. **Numbers.** ``NaN``, ``Infinity`` and ``-Infinity`` are refused by the parser's constant
   hook. A number literal overflows to infinity only with a positive exponent of three
   digits or 200+ digits in a row; only a body holding either is parsed with a per-number
   finiteness check, so ordinary bodies keep the parser's C speed.

Every refusal is a :class:`~chariots_waitress.errors.RequestError` (400, or 413 for size).
"""

from __future__ import annotations

import json
import math
from typing import Any

from chariots_core.serving.jsonsafe import MAX_DEPTH

from .errors import RequestError

__all__ = ["read_json_body", "decode_json_object", "MAX_BODY_DEPTH"]

MAX_BODY_DEPTH = MAX_DEPTH + 1
"""The deepest nesting a request body may have: a pipeline input's limit plus the request
object around it."""

_JSON_WHITESPACE = " \t\n\r"
_READ_CHUNK = 1 << 16

# Depth measure: keep only brackets (folded to one kind: a valid body nests them properly)
# and the quotes that delimit strings.
_ALL_BUT_BRACKETS_AND_QUOTES = bytes(byte for byte in range(256) if byte not in b'[]{}"')
_FOLD_BRACKETS = bytes.maketrans(b"{}", b"[]")
# Overflow screen: every digit becomes "0", then look for a 3-digit positive exponent or a
# long digit run (with a 2-digit exponent a number needs 210+ integer digits to overflow).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_RUN_DIGITS = 200


def read_json_body(environ: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """The request's body as a JSON object, ``{}`` when there is no body.

    :raises RequestError: 413 if the body is over ``max_bytes``; 400 if it is not a JSON
        object sent as ``application/json``, nests too deep, or holds a non-finite number.
    """
    length_text = environ.get("CONTENT_LENGTH")
    if length_text:
        if not (length_text.isascii() and length_text.isdigit()):
            raise RequestError(f"Content-Length must be a number of bytes (got {length_text!r})")
        length = int(length_text)
        if length > max_bytes:
            raise _too_large(f"has {length} bytes", max_bytes)
        if length == 0:
            return {}
        _check_media_type(environ)
        raw = environ["wsgi.input"].read(length)
    elif environ.get("wsgi.input_terminated"):  # no length, e.g. chunked: read to the end
        raw = _read_at_most(environ["wsgi.input"], max_bytes)
        if not raw:
            return {}
        _check_media_type(environ)
    else:  # PEP 3333: without a length, reading may block for ever
        return {}
    return decode_json_object(raw)


def decode_json_object(raw: bytes) -> dict[str, Any]:
    """Parse ``raw`` (UTF-8 JSON) into a dict, with the depth and number checks above.

    :raises RequestError: (400) naming what is wrong.
    """
    if raw.count(b"[") + raw.count(b"{") > MAX_BODY_DEPTH:  # enough brackets to nest too deep
        _check_nesting(raw)
    folded = raw.translate(_DIGITS_TO_ZERO)
    # Every overflow mark holds three digits in a row: most bodies are cleared by one search.
    decoder = _CHECKED_DECODER if b"000" in folded and _may_overflow(folded) else _DECODER
    try:
        # RFC 8259: JSON exchanged between systems is UTF-8.
        text = raw.decode("utf-8").strip(_JSON_WHITESPACE)
        body, end = decoder.raw_decode(text)
        if end != len(text):
            raise json.JSONDecodeError("Extra data", text, end)
    except _NotFinite as exc:
        raise RequestError(f"the request body holds {exc}") from None
    except (ValueError, RecursionError) as exc:  # RecursionError: only a body that is not JSON gets here
        raise RequestError(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object (got a JSON {type(body).__name__})")
    return body


def _check_media_type(environ: dict[str, Any]) -> None:
    content_type = environ.get("CONTENT_TYPE") or ""
    if content_type == "application/json":
        return
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        msg = f"the request body must be JSON sent as Content-Type: application/json (got {media_type or 'none'!r})"
        raise RequestError(msg)


def _read_at_most(stream: Any, max_bytes: int) -> bytes:
    """Everything ``stream`` holds, refused (413) as soon as it passes ``max_bytes``."""
    chunks, size = [], 0
    while chunk := stream.read(min(_READ_CHUNK, max_bytes + 1 - size)):
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(f"has more than {max_bytes} bytes", max_bytes)
    return b"".join(chunks)


def _too_large(size: str, max_bytes: int) -> RequestError:
    msg = (
        f"the request body {size}; this server accepts at most {max_bytes} bytes: send less, or "
        "serve the app with a larger max_body_bytes"
    )
    return RequestError(msg, 413)


def _check_nesting(raw: bytes) -> None:
    """Refuse a body nested deeper than :data:`MAX_BODY_DEPTH`, or whose brackets do not pair."""
    brackets = _brackets_outside_strings(raw)
    if brackets.count(b"[") != brackets.count(b"]"):
        raise RequestError("the request body is not valid JSON: its brackets do not pair up")
    if _nests_deeper_than(brackets, MAX_BODY_DEPTH):
        msg = (
            f"the request body nests arrays and objects more than {MAX_BODY_DEPTH} levels deep; a "
            f"pipeline input may nest at most {MAX_DEPTH} (chariots_core.serving.jsonsafe.MAX_DEPTH): "
            "flatten it"
        )
        raise RequestError(msg)


def _brackets_outside_strings(raw: bytes) -> bytes:
    """The body's structural brackets, ``{}`` folded into ``[]`` (exact for valid JSON)."""
    if b"\\" in raw:
        # Drop escaped backslashes first, so that what is left of `\"` is an escaped quote.
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    kept = raw.translate(_FOLD_BRACKETS, _ALL_BUT_BRACKETS_AND_QUOTES)
    # Quotes alternate open/close; removing adjacent pairs keeps that, and drops every
    # string without a bracket in it (nearly all of them) before the costlier split.
    kept = kept.replace(b'""', b"")
    if b'"' in kept:
        kept = b"".join(kept.split(b'"')[::2])  # what lies between strings
    return kept


def _nests_deeper_than(brackets: bytes, limit: int) -> bool:
    """Whether some prefix of ``brackets`` opens more than ``limit`` brackets it has not closed.

    Spans of the text are checked by counting (C speed): a span whose depth at its start
    plus all the brackets it opens stays within the limit is cleared whole; any other is
    split in two, so only the deep regions of a body are looked at closely.
    """
    spans = [(0, len(brackets), 0)]  # (start, end, depth at start)
    while spans:
        start, end, depth = spans.pop()
        if depth + brackets.count(b"[", start, end) <= limit:
            continue
        if end - start == 1:
            return True  # this "[" is one level too deep
        middle = (start + end) // 2
        opened = brackets.count(b"[", start, middle) - brackets.count(b"]", start, middle)
        spans.append((middle, end, depth + opened))
        spans.append((start, middle, depth))
    return False


def _may_overflow(folded: bytes) -> bool:
    """Whether a number in the body (its digits all folded to "0") might be too large for a float."""
    return (
        b"e000" in folded or b"E000" in folded or b"e+000" in folded or b"E+000" in folded
        or (len(folded) >= _LONG_RUN_DIGITS and b"0" * _LONG_RUN_DIGITS in folded)
    )  # fmt: skip


class _NotFinite(ValueError):
    """A number the body holds that would be NaN or infinite once parsed."""


def _reject_constant(name: str) -> Any:
    raise _NotFinite(f"{name}, which is not a JSON number: JSON has no NaN or infinity; send finite numbers")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 40 else f"{text[:20]}...{text[-10:]}"
        raise _NotFinite(f"the number {shown}, which overflows a float to infinity; send finite numbers")
    return value


# Built once: json.loads with options builds a new decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_CHECKED_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
