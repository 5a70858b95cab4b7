"""The record debugger's answer for a record, and alerts: rules (the workspace's monitoring settings and
channels) and events (open problems, the messages sent). Same services and forms as the pages."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from hubsync import workspaces
from hubsync.forms import AlertChannelForm
from hubsync.models import Alert, AlertChannel, AlertState, WorkspaceSettings
from hubsync.redact import redact
from monitoring import alerts, services
from monitoring.debugger import explain, look_up
from sources.models import Record

from .. import serializers as s
from ..problems import Conflict
from .base import ApiView, ListView, actor, check, get, invalid, parse, workspace

# --- the record debugger ----------------------------------------------------------------------------------


def _answer(record: Record) -> dict[str, Any]:
    """The debugger page's answer for one record, as JSON."""
    found = explain(record)
    return {
        "id": record.pk,
        "source": record.source_id,
        "collection": record.collection,
        "object_id": record.object_id,
        "archived": record.archived,
        "label": found["label"],
        "summary": found["summary"],
        "properties": dict(found["properties"]),
        "changes": [
            {"change_seq": c.change_seq, "seen_at": c.seen_at, "run": c.run_id, "changes": c.changes}
            for c in found["changes"]
        ],
        "mappings": [
            {
                "mapping": v.mapping.pk,
                "name": str(v.mapping),
                "kind": v.kind,
                "headline": v.headline,
                "details": v.details,
                "profile": v.profile,
                "would_send": v.would_send,
                "would_send_error": v.would_send_error,
                "would_send_note": v.would_send_note,
                "delivered": v.delivered_payload,
                "same_as_delivered": v.same_as_delivered,
                "traits": [
                    {"trait": t.trait, "column": t.column, "value": t.value, "current": t.current} for t in v.traits
                ],
            }
            for v in found["verdicts"]
        ],
    }


class RecordSearch(ApiView):
    @extend_schema(
        parameters=[
            OpenApiParameter("q", str, required=True, description="A HubSpot record id or an e-mail address."),
            OpenApiParameter("mapping", int, description="Several records share the id: the one this mapping reads."),
        ],
        responses=s.DebuggerSerializer,
        operation_id="records_search",
    )
    def get(self, request: Request, workspace_id: int) -> Response:
        """The record debugger: why a record did (not) reach Segment, per mapping that reads it."""
        query = (request.query_params.get("q") or "").strip()
        if not query:
            raise invalid("q", "Enter a HubSpot record id (a number, e.g. 51) or an email address.")
        found = look_up(workspace(request), query, mapping_id=request.query_params.get("mapping", ""))
        if found.bad_query:  # the request is wrong, not the data
            raise invalid("q", found.problem)
        matches, problem, gone = found.matches, found.problem, found.gone
        answer = _answer(matches[0]) if len(matches) == 1 else None
        return Response(
            {
                "query": query,
                "problem": problem,
                "gone": gone,
                "matches": s.RecordMatchSerializer(matches, many=True).data,
                "record": answer,
            }
        )


class RecordDetail(ApiView):
    @extend_schema(responses=s.DebuggerSerializer)
    def get(self, request: Request, workspace_id: int, record_id: int) -> Response:
        record = get(request, Record.objects.select_related("source"), pk=record_id)
        matches = s.RecordMatchSerializer([record], many=True).data
        return Response({"query": "", "problem": "", "gone": "", "matches": matches, "record": _answer(record)})


# --- alerts -----------------------------------------------------------------------------------------------


def _settings(request: Request) -> dict[str, Any]:
    conf = WorkspaceSettings.for_workspace(workspace(request).pk)
    return {name: getattr(conf, name) for name in workspaces.MONITORING_SETTINGS}


def _rules(request: Request) -> dict[str, Any]:
    rules = [{"rule": rule, "label": label} for rule, label in alerts.RULE_LABELS.items()]
    return {**_settings(request), "rules": rules}


class AlertRules(ApiView):
    # Read-only here: only owners change these settings (Settings page), and API tokens act at most as admins.
    @extend_schema(responses=s.AlertRulesSerializer)
    def get(self, request: Request, workspace_id: int) -> Response:
        """The alert rules, their thresholds (0 switches a rule off) and whether schema drift pauses mappings.
        Owners change them on the Settings page; where alerts go (channels) is below."""
        return Response(_rules(request))


class AlertChannelList(ListView):
    serializer_class = s.AlertChannelSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        return AlertChannel.objects.filter(workspace=workspace(self.request))

    @extend_schema(request=s.AlertChannelInputSerializer, responses={201: s.AlertChannelSerializer})
    def post(self, request: Request, workspace_id: int) -> Response:
        """Add an e-mail channel (verified addresses of members only) or a webhook (Slack-compatible; the URL is
        write-only). The token's creator must have a verified e-mail address, as on the page."""
        raw = parse(s.AlertChannelInputSerializer, request)
        form = AlertChannelForm(raw, member_emails=alerts.member_addresses(workspace(request).pk))
        if not alerts.has_verified_email(actor(request)):
            raise Conflict(
                "The token's creator has no verified e-mail address: alert channels can only be added from a "
                "verified account."
            )
        data = check(form)
        channel = services.create_channel(workspace=workspace(request), actor=actor(request), **data)
        return Response(s.AlertChannelSerializer(channel).data, status=status.HTTP_201_CREATED)


class AlertChannelDetail(ApiView):
    @extend_schema(responses=s.AlertChannelSerializer)
    def get(self, request: Request, workspace_id: int, alertchannel_id: int) -> Response:
        return Response(s.AlertChannelSerializer(get(request, AlertChannel, pk=alertchannel_id)).data)

    @extend_schema(request=s.EnabledSerializer, responses=s.AlertChannelSerializer)
    def patch(self, request: Request, workspace_id: int, alertchannel_id: int) -> Response:
        """Pause (`enabled: false`) or resume a channel."""
        channel = get(request, AlertChannel, pk=alertchannel_id)
        wanted = parse(s.EnabledSerializer, request)["enabled"]
        if wanted != channel.enabled:
            services.toggle_channel(channel=channel, actor=actor(request))
        return Response(s.AlertChannelSerializer(channel).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_id: int, alertchannel_id: int) -> Response:
        services.delete_channel(channel=get(request, AlertChannel, pk=alertchannel_id), actor=actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AlertChannelTest(ApiView):
    @extend_schema(request=None, responses={202: s.AlertSerializer, 429: None})
    def post(self, request: Request, workspace_id: int, alertchannel_id: int) -> Response:
        """Queue a test message; its outcome appears in the events."""
        channel = get(request, AlertChannel, pk=alertchannel_id)
        if not alerts.has_verified_email(actor(request)):
            raise Conflict("The token's creator has no verified e-mail address: test messages need one.")
        try:
            alert = services.send_test(channel=channel)
        except services.SendTestLimited as exc:
            raise Conflict(f"No test message sent: {exc}") from None
        return Response(s.AlertSerializer(alert).data, status=status.HTTP_202_ACCEPTED)


class AlertEventList(ListView):
    serializer_class = s.AlertSerializer

    def get_queryset(self) -> Any:
        return Alert.objects.filter(workspace=workspace(self.request)).order_by("-created_at", "-id")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        response = super().list(request, *args, **kwargs)
        for item in response.data["results"]:
            item["text"] = redact(item["text"])  # stored redacted; rows from before that are cleaned here
        return response


class AlertProblemList(ListView):
    serializer_class = s.AlertStateSerializer

    @extend_schema(parameters=[OpenApiParameter("open", bool, description="Only open (true) or closed (false).")])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Failure streaks per rule and object: opened on the first failure, closed on recovery."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        qs = AlertState.objects.filter(workspace=workspace(self.request)).order_by("-opened_at", "-id")
        wanted = self.request.query_params.get("open", "")
        if wanted in ("true", "1"):
            qs = qs.filter(is_open=True)
        elif wanted in ("false", "0"):
            qs = qs.filter(is_open=False)
        return qs
