"""What the engine sends for a record: one Segment identify or group message, its payload hash and its messageId.

Archived records (deleted in HubSpot, restorable for 90 days) follow the mapping's choice. "Do nothing": skipped and
counted as archived, except that a record this mapping delivered and that was changed just before its archive
(`Record.archived_update`) is sent once more, without any trait, when its profile does not have those values. "Set a
trait": every message carries `<trait>: false`, and a record that this mapping delivered before is sent once more
when archived, with its last known traits and `<trait>: true` (counted as sent); a restore sends `false` again. The
trait is part of the configuration hash, so switching it on resends every record once (each message changed).
Switching it back off changes the live records' messages only by leaving the trait out, which would change no
profile: `MessageBuilder.covers` counts them unchanged.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hubsync.jsoncodec import json_module_sorted, sorted_json
from models_app.models import SYSTEM_COLUMNS
from sources.models import SourceCollection

from ..convert import converter_for, identity, is_empty, iso_utc
from ..models import DeliveryState, Mapping
from ..segment import LIBRARY, MAX_MESSAGE_BYTES

MESSAGE_ID_HASH_CHARS = 32
CONTEXT_JSON = json.dumps({"library": LIBRARY}, separators=(",", ":"))
# Segment's own Profiles destination sends this so that profile writes are not forwarded to other destinations.
INTEGRATIONS = {"All": False}


@dataclass(slots=True)
class _Pending:
    """A record's message waiting in the buffer or in flight (sender.py)."""

    object_id: int
    change_seq: int
    payload: bytes
    payload_hash: str
    message_id: str
    retry: bool = False  # from the retry pass: below the watermark, so it must not hold it
    archived: bool = False  # archived in HubSpot, sent with the archived trait true


def _dumpb(obj: Any) -> bytes:
    """Compact JSON with sorted keys, as UTF-8 bytes: what is hashed and sent (hubsync.jsoncodec.sorted_json), so
    that a payload's hash never depends on which encoder wrote it; a trait float below 1e-4, which orjson writes as
    0.00001 where json writes 1e-05, goes through the json module (only trait values can be floats)."""
    out = sorted_json(obj)
    # orjson writes every float below 1e-4 with "0.0000" or "e-" in it: only then can a trait be one (text
    # containing either costs this look, never a different result).
    if b"e-" in out or b"0.0000" in out:
        traits = obj.get("traits") if obj.__class__ is dict else None
        if traits and any(v.__class__ is float and 0 < abs(v) < 1e-4 for v in traits.values()):
            return json_module_sorted(obj)
    return out


def _dumps(obj: Any) -> str:
    return _dumpb(obj).decode("utf-8", "surrogatepass")


class MessageBuilder:
    """Builds one mapping's messages from mirror rows. Everything that depends only on the configuration
    (converters, column accessors, hash salt) is prepared once, so the per-record work stays small."""

    def __init__(self, mapping: Mapping, schema: dict[str, Any]) -> None:
        self.mapping = mapping
        self.action = mapping.action
        self.omit_empty = mapping.empty_values == Mapping.EMPTY_OMIT
        self.workspace_id = mapping.destination.workspace_id
        specs = {**schema, **SYSTEM_COLUMNS}
        self.column_types = {
            col: {k: specs.get(col, {}).get(k) for k in ("type", "fieldType")} for col in mapping.used_columns()
        }
        self.config_hash = mapping.config_hash(self.column_types)
        self.user_id_col = mapping.identifier("user_id")
        self.anonymous_id_col = mapping.identifier("anonymous_id")
        self.group_id_col = mapping.identifier("group_id")
        fmt = mapping.identifier_format
        self.normalise = _NORMALISE.get(fmt, str.strip)
        # A trait reading an identifier column carries the identifier's form (the `email` trait equals the User
        # ID), except for mappings that kept the format they had before the option existed.
        id_columns = (
            set()
            if fmt == Mapping.IdentifierFormat.TRIM_IDENTIFIERS
            else {self.user_id_col, self.anonymous_id_col, self.group_id_col} - {None}
        )
        self.traits = [
            (
                column,
                trait,
                _normalised(converter_for(specs.get(column)), self.normalise)
                if column in id_columns and self.normalise is not None
                else _unless_identity(converter_for(specs.get(column))),
                column in SYSTEM_COLUMNS,
            )
            for column, trait in mapping.traits or []
        ]
        self.needs_created_at = "created_at" in mapping.used_columns()
        # The properties the message reads (everything else in the mirror row is never looked at).
        self.property_columns = [c for c in mapping.used_columns() if c not in SYSTEM_COLUMNS]
        # What reaches the profile and is not in the message body: the space it goes to and the resync
        # generation (a "Resync all" must produce new messageIds, or Segment's deduplication would drop them).
        self.salt = f"{mapping.profile_space_id}:{mapping.resync_generation}:".encode()
        self.id_prefix = f"hs-{self.workspace_id}-{mapping.pk}-"
        # "When a record is archived": the trait sent true / false ("Set a trait"), else None ("Do nothing").
        self.archived_trait = mapping.archived_trait if mapping.sets_archived_trait else None
        # "Do nothing" after "Set a trait": the trait the profiles were given, which they keep (see `covers`).
        self.former_archived_trait = (
            mapping.archived_trait if not self.archived_trait and mapping.archived_trait else None
        )

    def _identifier(self, column: str | None, object_id: int, created_at: Any, updated_at: Any, props: dict) -> Any:
        # Identifiers are sent as strings (what Segment stores), without type conversion: "00123" must stay so.
        if not column:
            return None
        value = _raw(column, object_id, created_at, updated_at, props)
        if is_empty(value):
            return None
        if hasattr(value, "tzinfo"):
            return iso_utc(value)
        text = str(value)
        return self.normalise(text) if self.normalise is not None else text

    def build(
        self, object_id: int, created_at: Any, updated_at: Any, props: dict[str, Any], archived: bool = False
    ) -> tuple[dict, str]:
        """The message's content (what reaches the profile) and, when it cannot be sent, the reason; "" if valid.
        With "Set a trait" the archived trait says whether the record is archived; an archived record's message
        is otherwise the one its last known properties make, identifiers included, so the profile keeps its
        identity and the values it showed, and only learns that the record is gone."""
        props = props or {}
        traits: dict[str, Any] = {}
        system = None
        omit = self.omit_empty
        for column, trait, conv, is_system in self.traits:
            if is_system:
                system = system or {"id": object_id, "created_at": created_at, "updated_at": updated_at}
                raw = system[column]
            else:
                raw = props.get(column)
            # Inline is_empty (the hot loop): None, "", blank strings and [] are empty. `conv` None: as is.
            if raw.__class__ is str:
                if raw and not raw.isspace():
                    traits[trait] = raw if conv is None else conv(raw)
                    continue
            elif raw is not None and not (raw.__class__ is list and not raw):
                traits[trait] = raw if conv is None else conv(raw)
                continue
            if not omit:
                traits[trait] = None
        if self.archived_trait is not None:
            traits[self.archived_trait] = bool(archived)
        user_id = self._identifier(self.user_id_col, object_id, created_at, updated_at, props)
        anonymous_id = self._identifier(self.anonymous_id_col, object_id, created_at, updated_at, props)
        content: dict[str, Any] = {"type": self.action, "integrations": INTEGRATIONS}
        if traits:
            content["traits"] = traits
        if user_id is not None:
            content["userId"] = user_id
        if anonymous_id is not None:
            content["anonymousId"] = anonymous_id
        error = ""
        if self.action == Mapping.Action.GROUP:
            group_id = self._identifier(self.group_id_col, object_id, created_at, updated_at, props)
            if group_id is not None:
                content["groupId"] = group_id
            else:
                error = self._missing("Group ID", self.group_id_col, "a group call needs a groupId")
        if not error and user_id is None and anonymous_id is None:
            # Segment's API drops (with a 200!) any message, group calls included, that has neither userId nor
            # anonymousId. A group mapping therefore needs a User ID or Anonymous ID column as well: the user
            # the account is attached to. We refuse here, visibly, rather than let Segment drop it silently.
            cols = [c for c in (self.user_id_col, self.anonymous_id_col) if c]
            if cols:
                error = (
                    f"No User ID or Anonymous ID: {' and '.join(repr(c) for c in cols)} "
                    f"{'is' if len(cols) == 1 else 'are'} empty for this record; Segment drops messages without one."
                )
            else:
                error = (
                    "The mapping maps neither User ID nor Anonymous ID; Segment drops messages without one "
                    "(group calls need one too)."
                )
        return content, error

    @staticmethod
    def _missing(label: str, column: str | None, why: str) -> str:
        if column:
            return f"No {label}: {column!r} is empty for this record ({why})."
        return f"The mapping has no {label} column ({why})."

    def with_former_trait(self, content: dict[str, Any], archived: bool) -> dict[str, Any] | None:
        """The content as "Set a trait" made it before the option was switched back to "Do nothing" (None when
        the mapping never set the trait)."""
        if self.former_archived_trait is None:
            return None
        return {**content, "traits": {**(content.get("traits") or {}), self.former_archived_trait: archived}}

    def covers(
        self, content: dict[str, Any], delivered_hash: str | None, *, archived: bool = False, exact: bool = False
    ) -> bool:
        """Whether the profile already holds everything this record's message would write, because what was
        delivered is this very message plus `<former trait>: <archived>`. That is the case for every live record
        right after "Set a trait" is switched back to "Do nothing": leaving a trait out of a message does not
        remove it from the profile, so resending them all would change nothing. `exact`: also when what was
        delivered is this very message."""
        if not delivered_hash:
            return False
        if exact and self.digest(content)[1] == delivered_hash:
            return True
        if self.former_archived_trait is None:
            return False
        former = self.with_former_trait(content, archived)
        return hashlib.sha256(self.salt + _dumpb(former)).hexdigest() == delivered_hash

    def digest(self, content: dict[str, Any]) -> tuple[bytes, str]:
        """(content as JSON bytes, payload hash). The hash covers what reaches the profile (content + space + resync
        generation) and not the timestamp, so a HubSpot change to an unmapped property, which moves updatedAt,
        is not resent. Cheap on its own: an unchanged record needs nothing more."""
        core = _dumpb(content)
        return core, hashlib.sha256(self.salt + core).hexdigest()

    def envelope(
        self,
        object_id: int,
        core: bytes,
        payload_hash: str,
        updated_at: Any,
        previous_hash: str | None = None,
        previous_id: str = "",
    ) -> tuple[bytes, str]:
        """(payload bytes, messageId): the digested content with the per-send fields.

        The messageId names the step from what Segment last accepted for the record (`previous_hash`, its
        delivered hash) to this payload, not the payload alone: a record that goes back to a payload it had
        before (archived, then restored; a value changed and changed back) would otherwise reuse that payload's
        messageId, and Segment drops a messageId it saw in the last 24 hours. A resend after a failure or a
        crash starts from the same delivered hash (written only once Segment accepted), so it keeps its
        messageId and Segment still drops the copy. A record's first message is named by its payload alone.

        `previous_id`, the messageId Segment accepted last for the record, makes the name depend on the record's
        whole delivered history rather than on the last step: with steps alone, A → B → A → B within 24 hours
        would give the second B the first one's id and Segment would drop it. (Empty for states recorded before
        it was kept: their next message is named from the step alone, as it was then.)"""
        if previous_id:
            named_by = hashlib.sha256(f"{payload_hash}:{previous_hash}:{previous_id}".encode()).hexdigest()
        elif previous_hash:
            named_by = hashlib.sha256(f"{payload_hash}:{previous_hash}".encode()).hexdigest()
        else:
            named_by = payload_hash
        message_id = f"{self.id_prefix}{object_id}-{named_by[:MESSAGE_ID_HASH_CHARS]}"
        tail = f',"messageId":"{message_id}","context":{CONTEXT_JSON}'
        if updated_at is not None:
            tail += f',"timestamp":"{iso_utc(updated_at)}"'
        # `core` is a JSON object: splice the per-send fields in before its closing brace.
        return core[:-1] + tail.encode() + b"}", message_id

    def finish(
        self,
        object_id: int,
        content: dict[str, Any],
        updated_at: Any,
        previous_hash: str | None = None,
        previous_id: str = "",
    ) -> tuple[bytes, str, str]:
        """Encode the full message once: (payload bytes, payload hash, messageId); see `digest` and `envelope`."""
        core, payload_hash = self.digest(content)
        payload, message_id = self.envelope(object_id, core, payload_hash, updated_at, previous_hash, previous_id)
        return payload, payload_hash, message_id


def _unless_identity(convert: Callable[[Any], Any]) -> Callable[[Any], Any] | None:
    """None for a converter that returns its value (the build loop then skips the call)."""
    return None if convert is identity else convert


def _trim_lower(text: str) -> str:
    return text.strip().lower()


# The identifier formats (Mapping.IdentifierFormat) as functions of the identifier's text; None leaves it alone.
_NORMALISE: dict[str, Callable[[str], str] | None] = {
    Mapping.IdentifierFormat.AS_IS: None,
    Mapping.IdentifierFormat.TRIM: str.strip,
    Mapping.IdentifierFormat.LOWER: _trim_lower,
    Mapping.IdentifierFormat.TRIM_IDENTIFIERS: str.strip,
}


def _normalised(convert: Any, normalise: Any) -> Any:
    """A trait converter that writes text values the way the identifier from the same column is written."""

    def converted(raw: Any) -> Any:
        value = convert(raw)
        return normalise(value) if value.__class__ is str else value

    return converted


def _raw(column: str, object_id: int, created_at: Any, updated_at: Any, props: dict[str, Any]) -> Any:
    if column == "id":
        return object_id
    if column == "created_at":
        return created_at
    if column == "updated_at":
        return updated_at
    return props.get(column)


def _oversize_reason(size: int, content: dict[str, Any]) -> str:
    sizes = sorted(((len(_dumps(v).encode()), k) for k, v in (content.get("traits") or {}).items()), reverse=True)[:3]
    largest = ", ".join(f"{k!r} ({n:,} bytes)" for n, k in sizes)
    return f"The message is {size:,} bytes; Segment accepts at most {MAX_MESSAGE_BYTES:,} bytes per message." + (
        f" Largest traits: {largest}." if largest else ""
    )


# What the delivered-hash lookup returns, with "Set a trait", for a record Segment took a message for before "Resync
# all" cleared its hash: not empty (it was delivered), and equal to no payload hash (so it is sent again).
DELIVERED_BEFORE = "delivered-before-resync"


def archived_skip_reason(mapping: Mapping) -> str:
    """Why an archived record is not sent, in the words the UI uses."""
    if mapping.sets_archived_trait:
        return (
            "Archived (deleted) in HubSpot before this mapping delivered it: not sent (“Set a trait” marks only "
            "profiles this mapping delivered; no profile is created for a deleted record)."
        )
    return "Archived (deleted) in HubSpot: not sent (this mapping does nothing for archived records)."


def preview_message(
    mapping: Mapping,
    *,
    object_id: int,
    properties: dict[str, Any],
    created_at: Any = None,
    updated_at: Any = None,
    schema: dict[str, Any] | None = None,
    archived: bool = False,
    previous_hash: str | None = None,
) -> tuple[dict[str, Any], str]:
    """The exact message the engine would send for one record (e.g. read live from HubSpot for "Test the
    mapping"), and the reason it would be rejected ("" when valid). Sends nothing. For an archived record it is
    the message "Set a trait" sends; whether one is sent at all is the caller's to say (`archived_skip_reason`):
    never with "Do nothing", and only to profiles this mapping delivered before with "Set a trait".
    `previous_hash` (the record's delivered hash) gives the messageId a delivery would give it now (with the
    messageId Segment accepted last, read from the record's state)."""
    if schema is None:
        model = mapping.data_model
        schema = (
            SourceCollection.objects.filter(source_id=model.source_id, collection=model.collection)
            .values_list("properties", flat=True)
            .first()
        ) or {}
    builder = MessageBuilder(mapping, schema)
    content, error = builder.build(object_id, created_at, updated_at, properties, archived)
    previous_id = ""
    if previous_hash:
        previous_id = (
            DeliveryState.objects.filter(mapping_id=mapping.pk, object_id=object_id)
            .values_list("delivered_message_id", flat=True)
            .first()
        ) or ""
    payload, _hash, _message_id = builder.finish(object_id, content, updated_at, previous_hash, previous_id)
    if not error and len(payload) > MAX_MESSAGE_BYTES:
        error = _oversize_reason(len(payload), content)
    return json.loads(payload), error
