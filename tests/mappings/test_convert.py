"""HubSpot string values to trait values, by property type."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mappings.convert import convert, iso_utc

NUMBER = {"type": "number", "fieldType": "number"}
BOOL = {"type": "bool", "fieldType": "booleancheckbox"}
DATETIME = {"type": "datetime", "fieldType": "date"}
DATE = {"type": "date", "fieldType": "date"}
MULTI = {"type": "enumeration", "fieldType": "checkbox"}
SINGLE = {"type": "enumeration", "fieldType": "select"}
STRING = {"type": "string", "fieldType": "text"}


@pytest.mark.parametrize(
    ("value", "spec", "expected"),
    [
        ("42", NUMBER, 42),
        ("-3", NUMBER, -3),
        ("4.25", NUMBER, 4.25),
        ("1e3", NUMBER, 1000.0),
        ("12abc", NUMBER, "12abc"),  # not a number: kept as sent, never dropped
        ("NaN", NUMBER, "NaN"),  # not valid JSON as a number
        (7, NUMBER, 7),
        ("true", BOOL, True),
        ("FALSE", BOOL, False),
        ("maybe", BOOL, "maybe"),
        ("1700000000000", DATETIME, "2023-11-14T22:13:20.000Z"),
        ("2024-03-05T10:11:12.345Z", DATETIME, "2024-03-05T10:11:12.345Z"),
        ("2024-03-05T12:11:12+02:00", DATETIME, "2024-03-05T10:11:12.000Z"),
        ("2024-03-05T10:11:12", DATETIME, "2024-03-05T10:11:12.000Z"),  # naive = UTC
        ("2024-03-05", DATE, "2024-03-05T00:00:00.000Z"),
        ("1709596800000", DATE, "2024-03-05T00:00:00.000Z"),
        ("last tuesday", DATETIME, "last tuesday"),
        ("golf;tennis; chess", MULTI, ["golf", "tennis", "chess"]),
        ("golf", MULTI, ["golf"]),
        ("a;b", SINGLE, "a;b"),
        ("  spaced  ", STRING, "  spaced  "),
        ("x", None, "x"),
        ("", NUMBER, None),
        ("   ", STRING, None),
        (None, DATETIME, None),
    ],
)
def test_convert(value, spec, expected):
    assert convert(value, spec) == expected


def test_iso_utc_of_aware_and_naive_datetimes():
    assert iso_utc(datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)) == "2024-01-02T03:04:05.678Z"
    assert iso_utc(datetime(2024, 1, 2, 3, 4, 5)) == "2024-01-02T03:04:05.000Z"
