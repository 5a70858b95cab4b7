"""JSON through orjson where it writes and reads exactly what the json module would, the json module elsewhere.

The mirror hashes a record's properties text and the delivery hashes each payload: those hashes must never depend
on which encoder wrote the text (tests/sources/test_records.py, tests/mappings/test_deliver.py compare them)."""

from __future__ import annotations

import json
from typing import Any

import orjson

_sorted_text = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


def sorted_json(obj: Any) -> bytes:
    """Compact JSON with sorted keys, non-ASCII as is, as UTF-8: orjson's bytes, several times faster, or the json
    module's where orjson refuses (integers beyond 64 bits, lone surrogates, keys that are not strings). orjson
    also writes floats below 1e-4 (0.00001 for 1e-05) and non-finite floats (null) its own way: a caller whose
    values may hold such floats sends those through `json_module_sorted`."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return json_module_sorted(obj)


def json_module_sorted(obj: Any) -> bytes:
    """The json module's text of `sorted_json`, which defines it."""
    return _sorted_text(obj).encode("utf-8", "surrogatepass")


def loads(data: str | bytes) -> Any:
    """orjson, about three times faster than the json module; what orjson refuses (a lone surrogate escape, NaN,
    bytes that are not UTF-8) goes to the json module, which raises ValueError where the text is not JSON. (orjson
    reads an integer beyond 64 bits as a float: no field we read holds one.)"""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
