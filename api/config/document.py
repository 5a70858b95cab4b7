"""The configuration file: its shape, how it is read and checked, and the values shared by export and apply.

The document is a plain dict, the same whether it was read from a file or built from a workspace (`export`), so
the plan compares like with like. Objects are keyed by a stable slug (sources by their schema name), never by a
database id; references between objects use those keys. Secrets never appear: a Profile Space's write key and a
webhook's URL are named by the environment variable that holds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import yaml
from django.utils.text import slugify

VERSION = 1

# libyaml when PyYAML was built with it (its wheels are): ten times faster on a large workspace, same output.
_BaseDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _SafeDumper(_BaseDumper):  # type: ignore[misc,valid-type]
    """The safe dumper, which also writes Django's choices (str / int enums) as their plain values."""


_SafeDumper.add_multi_representer(str, lambda dumper, value: dumper.represent_str(str(value)))
_SafeDumper.add_multi_representer(int, lambda dumper, value: dumper.represent_int(int(value)))
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# The sections of a file, in the order they are written. A section left out of a file is not managed by it:
# applying the file leaves that part of the workspace as it is.
SECTIONS = ("settings", "alerts", "sources", "data_models", "destinations", "mappings")


class ConfigError(Exception):
    """An invalid file, or a change the workspace refuses: each line names the place in the file and the reason.
    Nothing was changed."""

    def __init__(self, errors: list[str] | str, *, plan: Any = None) -> None:
        self.errors = [errors] if isinstance(errors, str) else list(errors)
        self.plan = plan  # the plan, when the file was read but a change was refused
        super().__init__("\n".join(self.errors))


# --- keys and environment variable names ------------------------------------------------------------------


def slug(name: str, fallback: str) -> str:
    return slugify(name) or fallback


def unique_keys(names: list[str], fallback: str) -> list[str]:
    """Stable keys for objects listed in id order: the slug of each name; a repeated slug gets -2, -3, ..."""
    keys: list[str] = []
    taken: set[str] = set()
    for name in names:
        base = slug(name, fallback)
        key, n = base, 2
        while key in taken:
            key, n = f"{base}-{n}", n + 1
        taken.add(key)
        keys.append(key)
    return keys


def env_name(prefix: str, *parts: str) -> str:
    return "_".join([prefix, *(re.sub(r"[^A-Z0-9]+", "_", p.upper()).strip("_") for p in parts)])


# --- values -----------------------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+)\s*(s|sec|seconds?|m|min|minutes?|h|hours?|d|days?)\s*$", re.IGNORECASE)
_ISO_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def format_interval(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"


def parse_interval(value: Any) -> timedelta:
    """`15m`, `3h`, `1d`, `90 minutes` or ISO 8601 (`PT3H`); a bare number is refused (minutes or hours?)."""
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return timedelta(seconds=int(m.group(1)) * _UNIT_SECONDS[m.group(2)[0].lower()])
        iso = _ISO_DURATION.match(value.strip())
        if iso and any(iso.groups()):
            d, h, mi, s = (int(g or 0) for g in iso.groups())
            return timedelta(days=d, hours=h, minutes=mi, seconds=s)
    raise ValueError("give a duration with its unit, e.g. 15m, 3h or 24h")


def parse_date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError("give a date as YYYY-MM-DD, or null for the full history")


# --- the shape of a file ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scalar:
    types: tuple[type, ...]
    default: Any = None
    required: bool = False
    convert: Any = None  # a function that normalises the value (raises ValueError with the reason)

    def describe(self) -> str:
        names = {str: "a string", int: "a number", bool: "true or false", list: "a list", type(None): "null"}
        return " or ".join(names.get(t, t.__name__) for t in self.types)


@dataclass(frozen=True)
class Obj:
    fields: dict[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Keyed:
    """A mapping of stable keys to objects (sorted by key when written)."""

    item: Obj
    required: bool = False


@dataclass(frozen=True)
class StrMap:
    """Strings to strings, in the file's order (trait name -> column)."""

    required: bool = False


def _text(**kw: Any) -> Scalar:
    return Scalar((str,), **kw)


def _list_of_strings(value: Any) -> list[str]:
    if not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("every item must be a non-empty string")
    return [v.strip() for v in value]


_COLLECTIONS = Scalar((list,), required=True, convert=lambda v: sorted(set(_list_of_strings(v))))

SPEC = Obj(
    {
        "version": Scalar((int,), required=True),
        "workspace": Scalar((str, type(None))),
        "settings": Obj({"drift_pauses_mappings": Scalar((bool,), default=True)}),
        "alerts": Obj(
            {
                "rules": Obj(
                    {
                        "freshness_alert_minutes": Scalar((int,), default=60),
                        "rejected_alert_threshold": Scalar((int,), default=100),
                    }
                ),
                "channels": Keyed(
                    Obj(
                        {
                            "name": _text(required=True),
                            "kind": _text(required=True),
                            "emails": Scalar((list,), default=None, convert=_list_of_strings),
                            "webhook_url_env": Scalar((str, type(None))),
                            "enabled": Scalar((bool,), default=True),
                        }
                    )
                ),
            }
        ),
        "sources": Keyed(
            Obj(
                {
                    "hub_id": Scalar((int, type(None))),
                    "hub_domain": Scalar((str, type(None))),
                    "name": _text(required=True),
                    "label": _text(default=""),
                    "start_date": Scalar((date, str, type(None)), convert=parse_date),
                    "sync_interval": Scalar((str,), default="3h", convert=lambda v: format_interval(parse_interval(v))),
                    "collections": _COLLECTIONS,
                    "enabled": Scalar((bool,), default=False),
                }
            )
        ),
        "data_models": Keyed(
            Obj(
                {
                    "name": _text(required=True),
                    "source": _text(required=True),
                    "collection": _text(required=True),
                    "columns": Scalar((list,), required=True, convert=_list_of_strings),
                }
            )
        ),
        "destinations": Keyed(
            Obj(
                {
                    "name": _text(required=True),
                    "kind": _text(default="segment_profiles"),
                    "profile_spaces": Keyed(
                        Obj(
                            {
                                "name": _text(required=True),
                                "region": _text(default="us"),
                                "endpoint": _text(),  # only for the custom region
                                "write_key_env": _text(required=True),
                            }
                        )
                    ),
                }
            )
        ),
        "mappings": Keyed(
            Obj(
                {
                    "name": _text(required=True),
                    "model": _text(required=True),
                    "destination": _text(required=True),
                    "profile_space": _text(required=True),
                    "action": _text(default="identify"),
                    "identifiers": Obj(
                        {k: Scalar((str, type(None))) for k in ("user_id", "anonymous_id", "group_id")},
                        required=True,
                    ),
                    "traits": StrMap(),
                    "options": Obj(
                        {
                            # `null` unquoted is YAML's null: read as the option "null" (send empty values as null).
                            "empty_values": Scalar((str, type(None)), default="null", convert=lambda v: v or "null"),
                            "identifier_format": _text(default="trim"),
                            "archived_behaviour": _text(default="nothing"),
                            "archived_trait": Scalar((str, type(None))),
                            "sample_size": Scalar((int, type(None))),
                        }
                    ),
                    "enabled": Scalar((bool,), default=False),
                }
            )
        ),
    },
    required=True,
)


@dataclass
class _Checker:
    errors: list[str] = field(default_factory=list)

    def check(self, spec: Any, value: Any, path: str) -> Any:
        if isinstance(spec, Obj):
            return self._obj(spec, value, path)
        if isinstance(spec, Keyed):
            return self._keyed(spec, value, path)
        if isinstance(spec, StrMap):
            return self._strmap(value, path)
        return self._scalar(spec, value, path)

    def _obj(self, spec: Obj, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            self.errors.append(f"{path or 'the file'}: expected a mapping of keys to values")
            return {}
        out: dict[str, Any] = {}
        for key in value:
            if key not in spec.fields:
                known = ", ".join(spec.fields)
                self.errors.append(f"{_join(path, key)}: unknown key (known here: {known})")
        for name, sub in spec.fields.items():
            if name in value:
                out[name] = self.check(sub, value[name], _join(path, name))
            elif getattr(sub, "required", False):
                self.errors.append(f"{_join(path, name)}: missing")
            elif isinstance(sub, Scalar):
                out[name] = sub.default
            else:
                out[name] = self.check(sub, None, _join(path, name))
        return out

    def _keyed(self, spec: Keyed, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.errors.append(f"{path}: expected a mapping of keys to objects")
            return {}
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", key):
                self.errors.append(f"{path}.{key}: keys are letters, digits, '-', '_' and '.'")
                continue
            out[key] = self._obj(spec.item, item, f"{path}.{key}")
        return out

    def _strmap(self, value: Any, path: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.errors.append(f"{path}: expected a mapping of trait names to columns")
            return {}
        out = {}
        for key, column in value.items():
            if not isinstance(key, str) or not isinstance(column, str):
                self.errors.append(f"{path}.{key}: trait name and column must both be strings")
            else:
                out[key] = column
        return out

    def _scalar(self, spec: Scalar, value: Any, path: str) -> Any:
        ok = isinstance(value, spec.types) and not (isinstance(value, bool) and bool not in spec.types)
        if not ok:
            self.errors.append(f"{path}: expected {spec.describe()}, got {_show(value)}")
            return spec.default
        if spec.convert is not None:
            try:
                return spec.convert(value)
            except ValueError as exc:
                self.errors.append(f"{path}: {exc} (got {_show(value)})")
                return spec.default
        return value.strip() if isinstance(value, str) else value


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value) if isinstance(value, str) else str(value)


class _Loader(_SafeLoader):  # type: ignore[valid-type,misc]
    """Safe YAML that refuses a key given twice in one mapping (plain PyYAML keeps the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load(text: str) -> dict[str, Any]:
    """Parse and check a file; returns the document with defaults filled in, and only the sections the file has
    (see SECTIONS). Raises ConfigError listing every problem found."""
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "the file"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    if not isinstance(raw, dict):
        raise ConfigError("the file: expected a YAML mapping with `version: 1` and the sections " + ", ".join(SECTIONS))
    checker = _Checker()
    doc = checker._obj(SPEC, raw, "")
    if not checker.errors and doc.get("version") != VERSION:
        checker.errors.append(f"version: this hubsync reads version {VERSION} files (got {doc.get('version')})")
    if checker.errors:
        raise ConfigError(checker.errors)
    # Sections the file leaves out are not managed; nested collections likewise (see plan.effective).
    present = {name for name in SECTIONS if name in raw}
    doc = {k: v for k, v in doc.items() if k in present or k in ("version", "workspace")}
    # `alerts:` names its parts; one it leaves out (or an empty `alerts:`) is not managed.
    alerts = (raw.get("alerts") or {}) if "alerts" in raw else None
    if isinstance(alerts, dict):
        doc["alerts"] = {k: v for k, v in doc["alerts"].items() if k in alerts}
    for key, dest in (raw.get("destinations") or {}).items():
        if isinstance(dest, dict) and "profile_spaces" not in dest and key in doc.get("destinations", {}):
            doc["destinations"][key].pop("profile_spaces", None)
    for channel in doc.get("alerts", {}).get("channels", {}).values():
        # The shape the export writes: an e-mail channel has addresses, a webhook channel its URL's variable.
        channel.pop("webhook_url_env" if channel["kind"] == "email" else "emails", None)
    for mapping in doc.get("mappings", {}).values():
        mapping["identifiers"] = {k: v for k, v in mapping["identifiers"].items() if v}
        if mapping["options"].get("archived_behaviour") != "trait":
            mapping["options"].pop("archived_trait", None)
    _check_references(doc)
    return doc


def _check_references(doc: dict[str, Any]) -> None:
    """References must name objects of the file (when it manages that section)."""
    errors = []
    sources = doc.get("sources")
    models = doc.get("data_models")
    destinations = doc.get("destinations")
    for key, model in (models or {}).items():
        if sources is not None and model["source"] not in sources:
            errors.append(f"data_models.{key}.source: no source {model['source']!r} in this file's sources")
    for key, mapping in (doc.get("mappings") or {}).items():
        if models is not None and mapping["model"] not in models:
            errors.append(f"mappings.{key}.model: no data model {mapping['model']!r} in this file's data_models")
        if destinations is not None:
            dest = destinations.get(mapping["destination"])
            if dest is None:
                errors.append(
                    f"mappings.{key}.destination: no destination {mapping['destination']!r} in this file's destinations"
                )
            elif "profile_spaces" in dest and mapping["profile_space"] not in dest["profile_spaces"]:
                errors.append(
                    f"mappings.{key}.profile_space: destination {mapping['destination']!r} has no profile space "
                    f"{mapping['profile_space']!r} in this file"
                )
    if errors:
        raise ConfigError(errors)


def dump(doc: dict[str, Any], header: list[str]) -> str:
    body = yaml.dump(doc, Dumper=_SafeDumper, sort_keys=False, allow_unicode=True, default_flow_style=False, width=110)
    return "".join(f"# {line}\n" for line in header) + body
