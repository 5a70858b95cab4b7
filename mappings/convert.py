"""HubSpot property values (always strings in the API) to the JSON types a Segment profile trait should hold.

The conversion follows the property's HubSpot `type` (and `fieldType` for multi-select enumerations) as last
discovered in SourceCollection.properties: number → int/float, bool → true/false, date/datetime → ISO-8601 UTC
with `Z` (HubSpot sends epoch milliseconds or ISO strings: both are accepted), multi-select enumeration
(`fieldType` checkbox, `;`-separated) → list of strings, anything else → the string itself. A value that does not
parse as its type is sent as the original string rather than dropped: losing data silently is worse than an
unexpected type, and the user sees it on the profile.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

Converter = Callable[[Any], Any]

_EPOCH_RE = re.compile(r"^-?\d+$")
_TRUE = frozenset({"true", "1", "yes", "y", "on"})
_FALSE = frozenset({"false", "0", "no", "n", "off"})


def is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or value == []


def iso_utc(dt: datetime) -> str:
    """ISO-8601 in UTC with millisecond precision and a `Z`, the form Segment documents for timestamps."""
    if dt.tzinfo is not UTC:
        dt = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    # isoformat is implemented in C, unlike strftime: "2026-01-01T00:00:00.000+00:00" → "...00.000Z".
    return dt.isoformat(timespec="milliseconds")[:-6] + "Z"


def to_number(value: Any) -> Any:
    if value.__class__ is str:  # what HubSpot sends (int and float strip the whitespace themselves)
        try:
            return int(value)
        except ValueError:
            pass
        try:
            number = float(value)
        except ValueError:
            return value
        return number if math.isfinite(number) else value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value if not (isinstance(value, float) and not math.isfinite(value)) else str(value)
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return value
    if not math.isfinite(number):
        return value  # NaN / Infinity are not JSON
    return number


def to_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return value


def to_datetime(value: Any) -> Any:
    """Epoch milliseconds (number or numeric string), ISO date or datetime (with `Z`, an offset, or naive =
    UTC) → ISO-8601 UTC. HubSpot's `date` properties are midnight UTC, so they take the same form."""
    if value.__class__ is str and value.isdigit():  # epoch milliseconds, what HubSpot sends (the fast way)
        try:
            return datetime.fromtimestamp(int(value) / 1000, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"
        except (OverflowError, OSError, ValueError):
            return value
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return iso_utc(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return iso_utc(datetime.fromtimestamp(value / 1000, tz=UTC))
        except (OverflowError, OSError, ValueError):
            return value
    text = str(value).strip()
    if text.isdigit() or _EPOCH_RE.match(text):
        try:
            return iso_utc(datetime.fromtimestamp(int(text) / 1000, tz=UTC))
        except (OverflowError, OSError, ValueError):
            return value
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return value
    return iso_utc(parsed)


def to_list(value: Any) -> Any:
    if isinstance(value, list):
        return value
    return [part.strip() for part in str(value).split(";") if part.strip()]


def identity(value: Any) -> Any:
    return value


def converter_for(spec: dict[str, Any] | None) -> Converter:
    """The converter for one property, from its discovered schema entry ({type, fieldType, ...})."""
    spec = spec or {}
    kind = spec.get("type")
    if kind == "number":
        return to_number
    if kind == "bool":
        return to_bool
    if kind in ("date", "datetime"):
        return to_datetime
    if kind == "enumeration" and spec.get("fieldType") == "checkbox":
        return to_list
    return identity


def convert(value: Any, spec: dict[str, Any] | None) -> Any:
    """Convert one value; empty values (None, blank string, empty list) become None."""
    if is_empty(value):
        return None
    return converter_for(spec)(value)
