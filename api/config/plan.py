"""The plan: what applying a file would create, change and delete in a workspace, field by field.

A file's objects are matched with the workspace's by key (a source by its schema name), then, for objects the
file renamed, by name (a source by its HubSpot account). A section the file leaves out is not managed: the plan
takes it as the workspace has it. Secrets are compared, never shown: a write key whose environment variable holds
another value than the saved one is a change "(saved) -> (from $VAR)".
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hubsync.fields import DecryptionError
from hubsync.models import Workspace

from .document import SECTIONS, load
from .export import State, read_state

# Values not compared field by field: a source's hub id is checked (a mismatch is a problem, not a change) and
# its domain follows the id; secrets are compared by value (see _secrets); spaces are objects of their own.
NOT_COMPARED = {"hub_id", "hub_domain", "write_key_env", "webhook_url_env", "profile_spaces"}
NESTED = {"identifiers", "traits", "options"}


class Hidden(str):
    """A secret's stand-in in a plan, "(saved)" or "(from $VAR)": shown as is, never the value."""


HIDDEN = Hidden("(saved)")


@dataclass
class Change:
    op: str  # create | change | delete
    path: str
    old: Any = None
    new: Any = None
    applied: bool | None = None  # deletions: False when not applied (no --allow-delete)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.op == "change":
            out.update(old=_jsonable(self.old), new=_jsonable(self.new))
        elif self.op == "create":
            out["fields"] = _jsonable(self.new)
        if self.applied is not None:
            out["applied"] = self.applied
        return out

    def render(self) -> list[str]:
        if self.op == "change":
            return [f"~ {self.path}: {_show(self.old)} -> {_show(self.new)}"]
        if self.op == "delete":
            note = "" if self.applied is not False else "   (not applied: deletions need --allow-delete)"
            return [f"- {self.path}{note}"]
        lines = [f"+ {self.path}"]
        for name, value in (self.new or {}).items():
            lines.append(f"    {name}: {_show(value)}")
        return lines


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    if isinstance(value, Hidden):
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False)


@dataclass
class Plan:
    workspace: str
    changes: list[Change] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    applied: bool = False

    @property
    def has_changes(self) -> bool:
        return bool(self.changes)

    def counts(self) -> dict[str, int]:
        return {op: sum(1 for c in self.changes if c.op == op) for op in ("create", "change", "delete")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "changes": [c.to_dict() for c in self.changes],
            "problems": list(self.problems),
            "summary": self.counts(),
            "applied": self.applied,
        }

    def render(self) -> str:
        lines = [f"Plan for workspace {self.workspace!r}:"]
        if not self.changes:
            lines.append("  No changes: the workspace matches the file.")
        for change in self.changes:
            lines.extend("  " + line for line in change.render())
        if self.problems:
            lines.append("Problems (nothing can be applied until they are fixed):")
            lines.extend(f"  ! {p}" for p in self.problems)
        n = self.counts()
        lines.append(f"{n['create']} to create, {n['change']} to change, {n['delete']} to delete.")
        return "\n".join(lines) + "\n"


# --- matching ---------------------------------------------------------------------------------------------


def match(
    current: dict[str, Any], desired: dict[str, Any], same: Callable[[dict[str, Any], dict[str, Any]], bool]
) -> dict[str, str]:
    """{desired key: current key}: same key first, then `same` (e.g. the same name) among the rest."""
    pairs = {k: k for k in desired if k in current}
    free = [k for k in current if k not in pairs.values()]
    for key, item in desired.items():
        if key in pairs:
            continue
        found = next((c for c in free if same(current[c], item)), None)
        if found is not None:
            pairs[key] = found
            free.remove(found)
    return pairs


def _same_name(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return bool(a.get("name")) and a.get("name") == b.get("name")


def _same_hub(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("hub_id") is not None and a.get("hub_id") == b.get("hub_id")


@dataclass
class Resolved:
    """A file resolved against a workspace: what the plan shows and the apply step works from."""

    state: State
    desired: dict[str, Any]
    # section -> {desired key: current key}; profile spaces: {(dest key, space key): (current dest, current space)}
    pairs: dict[str, dict[str, str]] = field(default_factory=dict)
    space_pairs: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    # section -> {desired key: {field: new value}} for objects that exist and changed
    changed: dict[str, dict[Any, dict[str, Any]]] = field(default_factory=dict)
    # secrets to set: ("space", dest, space) / ("channel", key) -> value
    secrets: dict[tuple[str, ...], str] = field(default_factory=dict)
    # section -> [(current key, the plan's deletion)]
    deletions: dict[str, list[tuple[Any, Change]]] = field(default_factory=dict)
    plan: Plan = field(default_factory=lambda: Plan(workspace=""))

    def current_key(self, section: str, key: str) -> str | None:
        return self.pairs.get(section, {}).get(key)


def resolve(*, workspace: Workspace, text: str) -> Resolved:
    """Read the file (ConfigError if invalid) and compare it with the workspace."""
    desired = load(text)
    state = read_state(workspace)
    res = Resolved(state=state, desired=desired, plan=Plan(workspace=workspace.name))
    _fill_unmanaged(res)
    _rekey_current(res)
    _diff(res)
    return res


def _fill_unmanaged(res: Resolved) -> None:
    """Sections (and alert parts) the file leaves out are taken as the workspace has them."""
    current = res.state.doc
    for section in SECTIONS:
        if section not in res.desired:
            res.desired[section] = copy.deepcopy(current[section])
    for part in ("rules", "channels"):
        res.desired["alerts"].setdefault(part, copy.deepcopy(current["alerts"][part]))


def _rekey_current(res: Resolved) -> None:
    """Match the file's objects with the workspace's, and rewrite the current document's keys and references with
    the file's keys, so that a renamed key is not a change of every object that refers to it."""
    cur, want = res.state.doc, res.desired
    res.pairs["sources"] = match(cur["sources"], want["sources"], _same_hub)
    for section in ("data_models", "destinations", "mappings"):
        res.pairs[section] = match(cur[section], want[section], _same_name)
    res.pairs["channels"] = match(cur["alerts"]["channels"], want["alerts"]["channels"], _same_name)
    back = {s: {c: d for d, c in p.items()} for s, p in res.pairs.items()}
    for model in cur["data_models"].values():
        model["source"] = back["sources"].get(model["source"], model["source"])
    for dest_key, dest_cur in res.pairs["destinations"].items():
        spaces_want = want["destinations"][dest_key].get("profile_spaces")
        spaces_cur = cur["destinations"][dest_cur]["profile_spaces"]
        if spaces_want is None:  # not managed by the file: as they are
            spaces_want = want["destinations"][dest_key]["profile_spaces"] = copy.deepcopy(spaces_cur)
        for space_key, space_cur in match(spaces_cur, spaces_want, _same_name).items():
            res.space_pairs[(dest_key, space_key)] = (dest_cur, space_cur)
    for dest in want["destinations"].values():
        dest.setdefault("profile_spaces", {})
    space_back = {c: d for d, c in res.space_pairs.items()}
    for mapping in cur["mappings"].values():
        mapping["model"] = back["data_models"].get(mapping["model"], mapping["model"])
        pair = space_back.get((mapping["destination"], mapping["profile_space"]))
        if pair is not None:
            mapping["destination"], mapping["profile_space"] = pair
        else:
            mapping["destination"] = back["destinations"].get(mapping["destination"], mapping["destination"])


# --- the diff ---------------------------------------------------------------------------------------------


def _fields_diff(path: str, old: dict[str, Any], new: dict[str, Any], out: list[Change]) -> dict[str, Any]:
    """Changes of one object, nested options field by field; returns {field: new value} of the changed ones."""
    changed: dict[str, Any] = {}
    for name in [*new, *(k for k in old if k not in new)]:
        if name in NOT_COMPARED:
            continue
        a, b = old.get(name), new.get(name)
        if name in NESTED and isinstance(a, dict) and isinstance(b, dict):
            before = len(out)
            for sub in [*b, *(k for k in a if k not in b)]:
                if a.get(sub) != b.get(sub):
                    out.append(Change("change", f"{path}.{name}.{sub}", a.get(sub), b.get(sub)))
            if name == "traits" and len(out) == before and list(a.items()) != list(b.items()):
                out.append(Change("change", f"{path}.traits (order)", list(a), list(b)))
            if len(out) > before:
                changed[name] = b
        elif a != b:
            out.append(Change("change", f"{path}.{name}", a, b))
            changed[name] = b
    return changed


def _creation(path: str, item: dict[str, Any]) -> Change:
    fields = {k: v for k, v in item.items() if k != "profile_spaces"}
    return Change("create", path, new=fields)


def _keyed_diff(res: Resolved, section: str, path: str, current: dict, desired: dict) -> None:
    plan, pairs = res.plan, res.pairs[section]
    res.changed[section] = {}
    for key in sorted(desired):
        if key in pairs:
            if section == "sources" and pairs[key] != key:  # found by its HubSpot account: a new schema name
                plan.changes.append(Change("change", f"sources.{key}.schema_name", pairs[key], key))
                res.changed[section][key] = {"schema_name": key}
            changed = _fields_diff(f"{path}.{key}", current[pairs[key]], desired[key], plan.changes)
            if changed:
                res.changed[section].setdefault(key, {}).update(changed)
        elif section == "sources":
            hub = desired[key].get("hub_id")
            by_hub = f" or HubSpot account {hub}" if hub else ""
            plan.problems.append(
                f"sources.{key}: this workspace has no connected source with schema name {key!r}{by_hub}. Sources "
                "cannot be created from a file (they need a HubSpot login): connect it in the browser (Sources → "
                "Add source) with this schema name, then apply the file again."
            )
        else:
            plan.changes.append(_creation(f"{path}.{key}", desired[key]))
    for key in sorted(set(current) - set(pairs.values())):
        change = Change("delete", f"{path}.{key}")
        plan.changes.append(change)
        res.deletions.setdefault(section, []).append((key, change))


def _diff(res: Resolved) -> None:
    cur, want, plan = res.state.doc, res.desired, res.plan
    settings_changed = _fields_diff("settings", cur["settings"], want["settings"], plan.changes)
    rules_changed = _fields_diff("alerts.rules", cur["alerts"]["rules"], want["alerts"]["rules"], plan.changes)
    res.changed["settings"] = (
        {"workspace": {**settings_changed, **rules_changed}} if (settings_changed or rules_changed) else {}
    )
    _keyed_diff(res, "channels", "alerts.channels", cur["alerts"]["channels"], want["alerts"]["channels"])
    _keyed_diff(res, "sources", "sources", cur["sources"], want["sources"])
    for key, src in want["sources"].items():
        old = res.current_key("sources", key)
        if old is not None and src.get("hub_id") is not None and cur["sources"][old]["hub_id"] != src["hub_id"]:
            plan.problems.append(
                f"sources.{key}.hub_id: the workspace's source {old!r} is connected to HubSpot account "
                f"{cur['sources'][old]['hub_id']}, not {src['hub_id']}. Reconnect it in the browser or fix the file."
            )
    _keyed_diff(res, "data_models", "data_models", cur["data_models"], want["data_models"])
    _keyed_diff(res, "destinations", "destinations", cur["destinations"], want["destinations"])
    _spaces_diff(res)
    _keyed_diff(res, "mappings", "mappings", cur["mappings"], want["mappings"])
    _secrets(res)
    _references(res)


def _spaces_diff(res: Resolved) -> None:
    cur, want, plan = res.state.doc, res.desired, res.plan
    res.changed["profile_spaces"] = {}
    for dest_key in sorted(want["destinations"]):
        spaces = want["destinations"][dest_key]["profile_spaces"]
        for space_key in sorted(spaces):
            path = f"destinations.{dest_key}.profile_spaces.{space_key}"
            pair = res.space_pairs.get((dest_key, space_key))
            if pair is None:
                plan.changes.append(_creation(path, spaces[space_key]))
                continue
            old = cur["destinations"][pair[0]]["profile_spaces"][pair[1]]
            changed = _fields_diff(path, old, spaces[space_key], plan.changes)
            if changed:
                res.changed["profile_spaces"][(dest_key, space_key)] = changed
    kept = set(res.space_pairs.values())
    for dest_cur in sorted(res.pairs["destinations"].values()):
        dest_key = next(d for d, c in res.pairs["destinations"].items() if c == dest_cur)
        for space_cur in sorted(cur["destinations"][dest_cur]["profile_spaces"]):
            if (dest_cur, space_cur) not in kept:
                change = Change("delete", f"destinations.{dest_key}.profile_spaces.{space_cur}")
                plan.changes.append(change)
                res.deletions.setdefault("profile_spaces", []).append(((dest_cur, space_cur), change))


def _secrets(res: Resolved) -> None:
    """Write keys and webhook URLs: from the environment variables the file names. Creating needs the variable;
    for an existing object an unset variable keeps the saved secret, a different value replaces it."""
    plan, state = res.plan, res.state
    for dest_key, dest in sorted(res.desired["destinations"].items()):
        for space_key, space in sorted(dest["profile_spaces"].items()):
            path = f"destinations.{dest_key}.profile_spaces.{space_key}"
            var = space["write_key_env"]
            value = os.environ.get(var, "").strip()
            pair = res.space_pairs.get((dest_key, space_key))
            if pair is None:
                if not value:
                    plan.problems.append(f"{path}.write_key_env: the environment variable {var} is not set")
                else:
                    res.secrets[("space", dest_key, space_key)] = value
                continue
            obj = state.profile_spaces[pair]
            if value and _secret_differs_field(obj, "write_key", value):
                res.secrets[("space", dest_key, space_key)] = value
                plan.changes.append(Change("change", f"{path}.write_key", HIDDEN, Hidden(f"(from ${var})")))
    for key, channel in sorted(res.desired["alerts"]["channels"].items()):
        var = channel.get("webhook_url_env")
        if channel["kind"] != "webhook" or not var:
            continue
        value = os.environ.get(var, "").strip()
        current_key = res.current_key("channels", key)
        if current_key is None:
            if not value:
                plan.problems.append(
                    f"alerts.channels.{key}.webhook_url_env: the environment variable {var} is not set"
                )
            else:
                res.secrets[("channel", key)] = value
        elif value and _secret_differs_field(state.channels[current_key], "webhook_url", value):
            res.secrets[("channel", key)] = value
            plan.changes.append(
                Change("change", f"alerts.channels.{key}.webhook_url", HIDDEN, Hidden(f"(from ${var})"))
            )


def _secret_differs_field(obj: Any, name: str, value: str) -> bool:
    try:
        return getattr(obj, name) != value
    except DecryptionError:
        return True


def _references(res: Resolved) -> None:
    """References into sections the file does not manage name the workspace's objects (by their keys)."""
    want, plan = res.desired, res.plan
    for key, model in sorted(want["data_models"].items()):
        if model["source"] not in want["sources"]:
            plan.problems.append(f"data_models.{key}.source: this workspace has no source {model['source']!r}")
    for key, mapping in sorted(want["mappings"].items()):
        if mapping["model"] not in want["data_models"]:
            plan.problems.append(f"mappings.{key}.model: this workspace has no data model {mapping['model']!r}")
        dest = want["destinations"].get(mapping["destination"])
        if dest is None:
            plan.problems.append(
                f"mappings.{key}.destination: this workspace has no destination {mapping['destination']!r}"
            )
        elif mapping["profile_space"] not in dest["profile_spaces"]:
            plan.problems.append(
                f"mappings.{key}.profile_space: destination {mapping['destination']!r} has no profile space "
                f"{mapping['profile_space']!r}"
            )
