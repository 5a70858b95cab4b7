"""What the API sends and accepts. Output serializers read models (secrets never: tokens and write keys are
write-only); input serializers only parse JSON types. Every rule about the values stays where the pages have it
(the forms and the services): the views hand the parsed values to those."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from hubsync.models import Alert, AlertChannel, AlertState, Workspace
from mappings.delivery import RUN_COUNT_FIELDS
from mappings.models import DeliveryRun, DeliveryState, DeliveryStateCount, Destination, Mapping, ProfileSpace
from models_app.models import DataModel
from monitoring.alerts import RULE_LABELS
from sources.models import Source, SourceCollection, SyncRun

from .models import ApiToken

# --- workspaces -------------------------------------------------------------------------------------------


class WorkspaceSerializer(serializers.ModelSerializer):
    token_role = serializers.SerializerMethodField()

    class Meta:
        model = Workspace
        fields = ["id", "name", "created_at", "token_role"]

    def get_token_role(self, obj: Workspace) -> str:
        token = self.context["request"].auth
        return token.role if isinstance(token, ApiToken) else ""


# --- sources ----------------------------------------------------------------------------------------------


class SyncRunSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = SyncRun
        fields = ["id", "trigger", "status", "created_at", "started_at", "finished_at"]


class SourceSerializer(serializers.ModelSerializer):
    sync_interval = serializers.SerializerMethodField(help_text="Seconds between scheduled syncs.")
    collections = serializers.SerializerMethodField(help_text="The collections the selective sync reads.")
    last_run = SyncRunSummarySerializer(read_only=True, allow_null=True)

    class Meta:
        model = Source
        fields = [
            "id",
            "name",
            "label",
            "hub_id",
            "hub_domain",
            "scopes",
            "schema_name",
            "start_date",
            "sync_interval",
            "collections",
            "enabled",
            "status",
            "status_detail",
            "next_sync_at",
            "first_synced_at",
            "last_run",
            "created_at",
            "updated_at",
        ]

    def get_sync_interval(self, obj: Source) -> int:
        return int(obj.sync_interval.total_seconds())

    def get_collections(self, obj: Source) -> list[str]:
        return sorted(sc.collection for sc in obj.collections.all() if sc.selected)


class ConnectionInputSerializer(serializers.Serializer):
    source = serializers.IntegerField(  # type: ignore[assignment]  # a field named like a Field attribute
        required=False, help_text="Reuse the HubSpot connection (the OAuth login) of this existing source."
    )
    refresh_token = serializers.CharField(
        required=False,
        write_only=True,
        trim_whitespace=True,
        max_length=2000,
        help_text="Or: a HubSpot OAuth refresh token issued to this hubsync's HubSpot app (never shown again).",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("source" in attrs) == ("refresh_token" in attrs):
            raise serializers.ValidationError("Give either `source` (an existing source's id) or `refresh_token`.")
        return attrs


class SourceCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=1000)
    label = serializers.CharField(max_length=1000, required=False, allow_blank=True, default="")  # type: ignore[assignment]  # a field named like a Field attribute
    connection = ConnectionInputSerializer()
    schema_name = serializers.CharField(
        max_length=1000, required=False, help_text="Default: made from the name, unique in the workspace."
    )
    start_date = serializers.DateField(required=False, allow_null=True, default=None)
    sync_interval = serializers.IntegerField(required=False, default=3 * 3600, help_text="Seconds.")
    collections = serializers.ListField(child=serializers.CharField(max_length=100), allow_empty=True)


class SourceUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=1000, required=False)
    label = serializers.CharField(max_length=1000, required=False, allow_blank=True)  # type: ignore[assignment]  # a field named like a Field attribute
    schema_name = serializers.CharField(max_length=1000, required=False)
    start_date = serializers.DateField(required=False, allow_null=True)
    sync_interval = serializers.IntegerField(required=False, help_text="Seconds.")
    collections = serializers.ListField(child=serializers.CharField(max_length=100), required=False)


class SourceCollectionSerializer(serializers.ModelSerializer):
    property_count = serializers.SerializerMethodField()

    class Meta:
        model = SourceCollection
        fields = ["collection", "selected", "property_count", "schema_discovered_at"]

    def get_property_count(self, obj: SourceCollection) -> int:
        return len(obj.properties or {})


class PropertySerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField(allow_blank=True)  # type: ignore[assignment]  # a field named like a Field attribute
    type = serializers.CharField(allow_blank=True)
    field_type = serializers.CharField(allow_blank=True)
    group = serializers.CharField(allow_blank=True)
    description = serializers.CharField(allow_blank=True)
    options = serializers.ListField(child=serializers.DictField())


class CollectionSchemaSerializer(serializers.Serializer):
    collection = serializers.CharField()
    selected = serializers.BooleanField()
    schema_discovered_at = serializers.DateTimeField(allow_null=True)
    schema_changes = serializers.ListField(child=serializers.DictField())
    properties = PropertySerializer(many=True)


class ProgressSerializer(serializers.Serializer):
    done = serializers.IntegerField()
    total = serializers.IntegerField(allow_null=True)
    percent = serializers.IntegerField(allow_null=True)
    eta_seconds = serializers.IntegerField(allow_null=True)
    finished = serializers.BooleanField()


class SyncRunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = SyncRun
        fields = [
            "id",
            "source",
            "trigger",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            "counts",
            "api_calls",
            "retries",
            "progress",
            "error",
        ]

    def get_progress(self, obj: SyncRun) -> dict[str, Any]:
        return self.context["progress"](obj)

    def get_error(self, obj: SyncRun) -> str:
        return self.context["redact"](obj)


# --- data models ------------------------------------------------------------------------------------------


class DataModelSerializer(serializers.ModelSerializer):
    all_columns = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = DataModel
        fields = ["id", "name", "source", "collection", "columns", "all_columns", "created_at", "updated_at"]


class DataModelCreateSerializer(serializers.Serializer):
    source = serializers.IntegerField()  # type: ignore[assignment]  # a field named like a Field attribute
    collection = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=1000)
    columns = serializers.ListField(child=serializers.CharField(max_length=1000), allow_empty=True)


class DataModelUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=1000, required=False)
    columns = serializers.ListField(child=serializers.CharField(max_length=1000), required=False)


class PreviewErrorSerializer(serializers.Serializer):
    kind = serializers.CharField()
    title = serializers.CharField()
    detail = serializers.CharField(allow_blank=True)


class FlagSerializer(serializers.Serializer):
    kind = serializers.CharField()
    message = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())


class PreviewSerializer(serializers.Serializer):
    collection = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())
    labels = serializers.DictField(child=serializers.CharField())
    types = serializers.DictField(child=serializers.CharField(allow_blank=True))
    rows = serializers.ListField(child=serializers.DictField())
    has_more = serializers.BooleanField()
    flags = FlagSerializer(many=True)
    error = PreviewErrorSerializer(allow_null=True)
    api_calls = serializers.IntegerField()
    elapsed_ms = serializers.IntegerField()


# --- destinations, profile spaces -------------------------------------------------------------------------


class ProfileSpaceSerializer(serializers.ModelSerializer):
    write_key_set = serializers.SerializerMethodField(help_text="The write key itself is write-only.")

    class Meta:
        model = ProfileSpace
        fields = ["id", "destination", "name", "region", "endpoint", "write_key_set", "created_at", "updated_at"]

    def get_write_key_set(self, obj: ProfileSpace) -> bool:
        return bool(obj.write_key)


class DestinationSerializer(serializers.ModelSerializer):
    profile_spaces = ProfileSpaceSerializer(many=True, read_only=True)

    class Meta:
        model = Destination
        fields = ["id", "name", "kind", "profile_spaces", "created_at", "updated_at"]


class ProfileSpaceInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    region = serializers.CharField(max_length=100, required=False, help_text="us, eu, custom (or sandbox).")
    endpoint = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, help_text="The custom region's API root."
    )
    write_key = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, write_only=True, help_text="Write-only; never returned."
    )
    use_default_sandbox = serializers.BooleanField(
        required=False, default=False, help_text="The sandbox's default space (when this server runs the sandbox)."
    )


class DestinationCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=1000)
    kind = serializers.CharField(max_length=100, required=False, default=Destination.Kind.SEGMENT_PROFILES)
    profile_space = ProfileSpaceInputSerializer(
        required=False, help_text="The Profile Space it sends to, created with it (or add spaces later)."
    )


class DestinationUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=1000)


# --- mappings ---------------------------------------------------------------------------------------------


class IdentifiersSerializer(serializers.Serializer):
    user_id = serializers.CharField(allow_null=True, allow_blank=True, required=False)
    anonymous_id = serializers.CharField(allow_null=True, allow_blank=True, required=False)
    group_id = serializers.CharField(allow_null=True, allow_blank=True, required=False)


class TraitSerializer(serializers.Serializer):
    column = serializers.CharField(allow_blank=True, max_length=1000)
    trait = serializers.CharField(allow_blank=True, max_length=1000)


class MappingSerializer(serializers.ModelSerializer):
    identifiers = serializers.SerializerMethodField()
    traits = serializers.SerializerMethodField()
    empty_values = serializers.CharField(read_only=True)
    identifier_format = serializers.CharField(read_only=True)
    state_counts = serializers.SerializerMethodField()
    last_run: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Mapping
        fields = [
            "id",
            "name",
            "destination",
            "data_model",
            "profile_space",
            "action",
            "identifiers",
            "traits",
            "empty_values",
            "identifier_format",
            "archived_behaviour",
            "archived_trait",
            "enabled",
            "paused_reason",
            "sample_size",
            "state_counts",
            "last_run",
            "created_at",
            "updated_at",
        ]

    def get_identifiers(self, obj: Mapping) -> dict[str, str | None]:
        return {key: obj.identifier(key) for key in Mapping.IDENTIFIER_KEYS}

    def get_traits(self, obj: Mapping) -> list[dict[str, str]]:
        return [{"column": column, "trait": trait} for column, trait in obj.traits or []]

    def get_state_counts(self, obj: Mapping) -> dict[str, int]:
        known = self.context.get("state_counts")  # a list's counts, read in one query
        counts = known[obj.pk] if known is not None else DeliveryStateCount.for_mappings([obj.pk])[obj.pk]
        return {status: counts.get(status, 0) for status in DeliveryState.Status.values}


class MappingInputSerializer(serializers.Serializer):
    destination = serializers.IntegerField(required=False, help_text="Required when creating.")
    name = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    data_model = serializers.IntegerField(required=False)
    profile_space = serializers.IntegerField(required=False)
    action = serializers.CharField(max_length=100, required=False)
    identifiers = IdentifiersSerializer(required=False)
    traits = TraitSerializer(many=True, required=False)
    empty_values = serializers.CharField(max_length=100, required=False)
    identifier_format = serializers.CharField(max_length=100, required=False)
    archived_behaviour = serializers.CharField(max_length=100, required=False)
    archived_trait = serializers.CharField(max_length=1000, required=False, allow_blank=True)


class EnabledSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()


class MappingTestInputSerializer(serializers.Serializer):
    record = serializers.IntegerField(help_text="The HubSpot record id to build (and send) the message of.")


class MappingTestSerializer(serializers.Serializer):
    record = serializers.IntegerField(allow_null=True)
    label = serializers.CharField(allow_blank=True)  # type: ignore[assignment]  # a field named like a Field attribute
    archived = serializers.BooleanField()
    message = serializers.DictField(allow_null=True, help_text="The message a sync would send for this record.")
    rejected = serializers.CharField(allow_blank=True, help_text="Why Segment would not get it, if it would not.")
    note = serializers.CharField(allow_blank=True)
    error = serializers.CharField(allow_blank=True)
    sent = serializers.DictField(allow_null=True, help_text="POST only: Segment's answer to the test send.")


class SampleInputSerializer(serializers.Serializer):
    sample_size = serializers.IntegerField(allow_null=True, help_text="N: only the first N records; null: all.")


class RejectedSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryState
        fields = ["object_id", "status", "error", "last_payload", "updated_at"]


class RetryInputSerializer(serializers.Serializer):
    object_ids = serializers.ListField(
        child=serializers.IntegerField(), required=False, help_text="These records; leave out to retry all."
    )
    reason = serializers.CharField(required=False, allow_blank=True, help_text="With all: only these reasons.")


class CountSerializer(serializers.Serializer):
    count = serializers.IntegerField()


class DeliveryRunSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()
    error = serializers.SerializerMethodField()

    class Meta:
        model = DeliveryRun
        fields = [
            "id",
            "mapping",
            "sync_run",
            "status",
            "created_at",
            "started_at",
            "finished_at",
            *RUN_COUNT_FIELDS,
            "progress",
            "error",
        ]

    def get_progress(self, obj: DeliveryRun) -> dict[str, Any]:
        return self.context["progress"](obj)

    def get_error(self, obj: DeliveryRun) -> str:
        return self.context["redact"](obj)


# --- the record debugger ----------------------------------------------------------------------------------


class RecordMatchSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.IntegerField(source="source_id")  # type: ignore[assignment]  # a field named like a Field attribute
    collection = serializers.CharField()
    object_id = serializers.IntegerField()
    archived = serializers.BooleanField()


class DebuggerSerializer(serializers.Serializer):
    query = serializers.CharField(allow_blank=True)
    problem = serializers.CharField(allow_blank=True)
    gone = serializers.CharField(allow_blank=True, help_text="Why the record left the mirror (merged, deleted).")
    matches = RecordMatchSerializer(many=True)
    record = serializers.DictField(allow_null=True, help_text="The answer for one record (see /records/{id}/).")


# --- alerts -----------------------------------------------------------------------------------------------


class RuleSerializer(serializers.Serializer):
    rule = serializers.CharField()
    label = serializers.CharField()  # type: ignore[assignment]  # a field named like a Field attribute


class AlertRulesSerializer(serializers.Serializer):
    drift_pauses_mappings = serializers.BooleanField()
    freshness_alert_minutes = serializers.IntegerField(help_text="0 switches the freshness rule off.")
    rejected_alert_threshold = serializers.IntegerField(help_text="0 switches the rejected-records rule off.")
    rules = RuleSerializer(many=True, read_only=True, help_text="The rules that raise alerts.")


class AlertChannelSerializer(serializers.ModelSerializer):
    webhook_url_set = serializers.SerializerMethodField(help_text="The webhook URL itself is write-only.")

    class Meta:
        model = AlertChannel
        fields = ["id", "kind", "name", "emails", "webhook_url_set", "enabled", "created_at"]

    def get_webhook_url_set(self, obj: AlertChannel) -> bool:
        return obj.kind == AlertChannel.Kind.WEBHOOK and bool(obj.webhook_url)


class AlertChannelInputSerializer(serializers.Serializer):
    kind = serializers.CharField(max_length=100)
    name = serializers.CharField(max_length=1000)
    emails = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    webhook_url = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="", write_only=True)


class AlertSerializer(serializers.ModelSerializer):
    class Meta:
        model = Alert
        fields = ["id", "channel", "kind", "rule", "text", "status", "created_at", "sent_at"]


class AlertStateSerializer(serializers.ModelSerializer):
    label = serializers.SerializerMethodField()  # type: ignore[assignment]  # a field named like a Field attribute

    class Meta:
        model = AlertState
        fields = ["id", "key", "rule", "label", "subject", "is_open", "opened_at", "closed_at", "detail"]

    def get_label(self, obj: AlertState) -> str:
        return RULE_LABELS.get(obj.rule, obj.rule)


# --- runs started -----------------------------------------------------------------------------------------


class StartedSerializer(serializers.Serializer):
    run = serializers.IntegerField(allow_null=True)
    detail = serializers.CharField()
