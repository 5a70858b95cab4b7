"""Destinations, Profile Spaces (write keys write-only) and mappings (create, update, test with a record,
enable/disable, resync, sample mode, rejected records and their retry), and delivery runs: the same forms and
services as the destination and mapping pages."""

from __future__ import annotations

import json
from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response

from mappings import services, tester
from mappings.forms import DestinationForm, MappingForm, ProfileSpaceForm, RenameForm
from mappings.models import DeliveryRun, DeliveryStateCount, Destination, Mapping, ProfileSpace
from mappings.selectors import filter_rejected, rejected_filters
from monitoring import dashboard

from .. import serializers as s
from ..problems import Conflict
from .base import (
    ApiView,
    ListView,
    actor,
    check,
    form_errors,
    get,
    invalid,
    parse,
    progress_dict,
    redacted,
    workspace,
)

# --- destinations -----------------------------------------------------------------------------------------


def _destinations(request: Request) -> Any:
    return Destination.objects.filter(workspace=workspace(request)).prefetch_related("profile_spaces")


class DestinationList(ListView):
    serializer_class = s.DestinationSerializer

    def get_queryset(self) -> Any:
        return _destinations(self.request)

    @extend_schema(request=s.DestinationCreateSerializer, responses={201: s.DestinationSerializer})
    def post(self, request: Request, workspace_id: int) -> Response:
        """Add a destination, and with `profile_space` the Profile Space it sends to (as the Add destination
        page does); without it, add spaces afterwards."""
        raw = parse(s.DestinationCreateSerializer, request)
        space = raw.get("profile_space") or {}
        fields = {
            "kind": raw["kind"],
            "name": raw["name"],
            "space_name": space.get("name", ""),
            "write_key": space.get("write_key", ""),
            "region": space.get("region") or ProfileSpace.Region.US,
            "endpoint": space.get("endpoint", ""),
            "use_default_sandbox": space.get("use_default_sandbox", False),
        }
        form = DestinationForm(fields)
        data = check(form, {"space_name": "profile_space.name", **{k: f"profile_space.{k}" for k in SPACE_FIELDS}})
        destination = services.create_destination(
            workspace=workspace(request),
            name=data["name"],
            kind=data["kind"],
            space=data["space"],
            actor=actor(request),
        )
        return Response(
            s.DestinationSerializer(_destinations(request).get(pk=destination.pk)).data, status=status.HTTP_201_CREATED
        )


class DestinationDetail(ApiView):
    @extend_schema(responses=s.DestinationSerializer)
    def get(self, request: Request, workspace_id: int, destination_id: int) -> Response:
        return Response(s.DestinationSerializer(get(request, _destinations(request), pk=destination_id)).data)

    @extend_schema(request=s.DestinationUpdateSerializer, responses=s.DestinationSerializer)
    def patch(self, request: Request, workspace_id: int, destination_id: int) -> Response:
        destination = get(request, Destination, pk=destination_id)
        data = check(RenameForm(parse(s.DestinationUpdateSerializer, request)))
        services.rename_destination(destination=destination, name=data["name"], actor=actor(request))
        return Response(s.DestinationSerializer(_destinations(request).get(pk=destination.pk)).data)

    @extend_schema(responses={204: None, 409: None})
    def delete(self, request: Request, workspace_id: int, destination_id: int) -> Response:
        """Refused (409) while mappings send to it."""
        destination = get(request, Destination, pk=destination_id)
        try:
            services.delete_destination(destination=destination, actor=actor(request))
        except services.MappingsError as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- profile spaces ---------------------------------------------------------------------------------------

SPACE_FIELDS = ("write_key", "region", "endpoint", "use_default_sandbox")


def _space(data: dict[str, Any]) -> dict[str, Any]:
    """What the space services take of the Profile Space form's cleaned data."""
    return {key: data[key] for key in ("name", "write_key", "region", "endpoint")}


class ProfileSpaceList(ListView):
    serializer_class = s.ProfileSpaceSerializer
    pagination_class = None

    def get_queryset(self) -> Any:
        destination = get(self.request, Destination, pk=self.kwargs["destination_id"])
        return ProfileSpace.objects.filter(destination=destination)

    @extend_schema(request=s.ProfileSpaceInputSerializer, responses={201: s.ProfileSpaceSerializer})
    def post(self, request: Request, workspace_id: int, destination_id: int) -> Response:
        """Add a Profile Space: its name, region and write key (write-only: never returned)."""
        destination = get(request, Destination, pk=destination_id)
        raw = parse(s.ProfileSpaceInputSerializer, request)
        data = check(ProfileSpaceForm({"name": "", "region": ProfileSpace.Region.US, "write_key": "", **raw}))
        space = services.create_profile_space(destination=destination, actor=actor(request), **_space(data))
        return Response(s.ProfileSpaceSerializer(space).data, status=status.HTTP_201_CREATED)


class ProfileSpaceDetail(ApiView):
    @extend_schema(responses=s.ProfileSpaceSerializer)
    def get(self, request: Request, workspace_id: int, profile_space_id: int) -> Response:
        return Response(s.ProfileSpaceSerializer(get(request, ProfileSpace, pk=profile_space_id)).data)

    @extend_schema(request=s.ProfileSpaceInputSerializer, responses=s.ProfileSpaceSerializer)
    def patch(self, request: Request, workspace_id: int, profile_space_id: int) -> Response:
        """Change the name or region, or replace the write key (left out or empty: the saved one stays)."""
        space = get(request, ProfileSpace.objects.select_related("destination"), pk=profile_space_id)
        raw = parse(s.ProfileSpaceInputSerializer, request)
        raw.pop("use_default_sandbox", None)  # a saved space keeps its key unless a new one is given
        current = {"name": space.name, "region": space.region, "endpoint": space.endpoint, "write_key": ""}
        data = check(ProfileSpaceForm({**current, **raw}, instance=space))
        services.update_profile_space(space=space, actor=actor(request), **_space(data))
        return Response(s.ProfileSpaceSerializer(space).data)

    @extend_schema(responses={204: None, 409: None})
    def delete(self, request: Request, workspace_id: int, profile_space_id: int) -> Response:
        space = get(request, ProfileSpace.objects.select_related("destination"), pk=profile_space_id)
        try:
            services.delete_profile_space(space=space, actor=actor(request))
        except services.MappingsError as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- mappings ---------------------------------------------------------------------------------------------


def _mappings(request: Request) -> Any:
    return Mapping.objects.filter(destination__workspace=workspace(request)).select_related(
        "destination", "data_model__source", "profile_space", "last_run"
    )


def _form_data(data: dict[str, Any], mapping: Mapping | None) -> QueryDict:
    """The editor's form fields from the JSON body; on an update, what the body leaves out stays as it is."""
    current: dict[str, Any] = {}
    if mapping is not None:
        current = {
            "name": mapping.name,
            "data_model": mapping.data_model_id,
            "profile_space": mapping.profile_space_id,
            "action": mapping.action,
            "identifiers": {k: mapping.identifier(k) for k in Mapping.IDENTIFIER_KEYS},
            "traits": [{"column": c, "trait": t} for c, t in mapping.traits or []],
            "empty_values": mapping.empty_values,
            "identifier_format": mapping.identifier_format,
            "archived_behaviour": mapping.archived_behaviour,
            "archived_trait": mapping.archived_trait,
        }
    merged = {**current, **data}
    form = QueryDict(mutable=True)
    for key in ("name", "data_model", "profile_space", "action", "empty_values", "identifier_format"):
        if merged.get(key) is not None:
            form[key] = str(merged[key])
    form["archived_behaviour"] = str(merged.get("archived_behaviour") or "")
    form["archived_trait"] = str(merged.get("archived_trait") or "")
    identifiers = {**current.get("identifiers", {}), **(data.get("identifiers") or {})}
    for key in Mapping.IDENTIFIER_KEYS:
        form[key] = identifiers.get(key) or ""
    traits = merged.get("traits") or []
    form.setlist("trait_column", [t["column"] for t in traits])
    form.setlist("trait_name", [t["trait"] for t in traits])
    return form


def _check_mapping(form: MappingForm) -> dict[str, Any]:
    """The editor's cleaned data, or its errors named after the JSON body: `identifiers.user_id`, `traits[1]`."""
    if form.is_valid():
        return form.cleaned_data
    errors = form_errors(form, {key: f"identifiers.{key}" for key in Mapping.IDENTIFIER_KEYS})
    for index, row in enumerate(form.trait_rows):
        if row.errors:
            errors[f"traits[{index}]"] = list(row.errors)
    raise exceptions.ValidationError(errors)


class MappingList(ListView):
    serializer_class = s.MappingSerializer

    def get_queryset(self) -> Any:
        return _mappings(self.request)

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        page = self.paginate_queryset(self.get_queryset()) or []
        counts = DeliveryStateCount.for_mappings([m.pk for m in page])
        data = self.get_serializer(page, many=True, context={"request": request, "state_counts": counts}).data
        return self.get_paginated_response(data)

    @extend_schema(request=s.MappingInputSerializer, responses={201: s.MappingSerializer})
    def post(self, request: Request, workspace_id: int) -> Response:
        """Create a mapping (disabled: test it with a record, then enable it). Needs `destination`,
        `data_model`, `profile_space`, an identifier, and traits as [{"column", "trait"}]."""
        data = parse(s.MappingInputSerializer, request)
        if "destination" not in data:
            raise invalid("destination", "Give the destination the mapping sends to.")
        destination = Destination.objects.filter(workspace=workspace(request), pk=data["destination"]).first()
        if destination is None:
            raise invalid("destination", f"This workspace has no destination {data['destination']}.")
        form = MappingForm(_form_data(data, None), workspace=workspace(request), destination=destination)
        cleaned = _check_mapping(form)
        mapping = services.save_mapping(mapping=Mapping(destination=destination), data=cleaned, actor=actor(request))
        return Response(s.MappingSerializer(_mappings(request).get(pk=mapping.pk)).data, status=status.HTTP_201_CREATED)


class MappingDetail(ApiView):
    @extend_schema(responses=s.MappingSerializer)
    def get(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        return Response(s.MappingSerializer(get(request, _mappings(request), pk=mapping_id)).data)

    @extend_schema(request=s.MappingInputSerializer, responses=s.MappingSerializer)
    def patch(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        """Change any part of the mapping (what the body leaves out stays); the next delivery resends exactly
        the records whose message changed."""
        mapping = get(request, _mappings(request), pk=mapping_id)
        data = parse(s.MappingInputSerializer, request)
        data.pop("destination", None)
        form = MappingForm(
            _form_data(data, mapping), workspace=workspace(request), destination=mapping.destination, instance=mapping
        )
        services.save_mapping(mapping=mapping, data=_check_mapping(form), actor=actor(request))
        return Response(s.MappingSerializer(_mappings(request).get(pk=mapping.pk)).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        """The profiles in Segment keep their traits."""
        services.delete_mapping(mapping=get(request, _mappings(request), pk=mapping_id), actor=actor(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MappingEnable(ApiView):
    enabled = True

    @extend_schema(request=None, responses=s.MappingSerializer)
    def post(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        mapping = get(request, _mappings(request), pk=mapping_id)
        services.set_mapping_enabled(mapping=mapping, enabled=self.enabled, actor=actor(request))
        return Response(s.MappingSerializer(_mappings(request).get(pk=mapping.pk)).data)


class MappingDisable(MappingEnable):
    enabled = False


def _test_answer(test: dict[str, Any]) -> dict[str, Any]:
    return {
        "record": test.get("record_id"),
        "label": test.get("record_label", ""),
        "archived": bool(test.get("record_archived")),
        "message": json.loads(test["message_json"]) if "message_json" in test else None,
        "rejected": str(test.get("rejected") or ""),
        "note": test.get("archived_note", ""),
        "error": test.get("error", ""),
        "sent": test.get("sent"),
    }


class MappingTest(ApiView):
    """Test the mapping with real HubSpot data: the record is read from HubSpot now and its message built as a
    sync would (GET); POST also sends it to the Profile Space (a real write, as on the mapping page)."""

    @extend_schema(parameters=[OpenApiParameter("record", int, required=True)], responses=s.MappingTestSerializer)
    def get(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        mapping = get(request, _mappings(request), pk=mapping_id)
        record = request.query_params.get("record", "")
        if not record.isdigit():
            raise invalid("record", "Give the HubSpot id of a record of the model's collection (a number).")
        return Response(_test_answer(tester.mapping_test(mapping, object_id=int(record))))

    @extend_schema(request=s.MappingTestInputSerializer, responses=s.MappingTestSerializer)
    def post(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        mapping = get(request, _mappings(request), pk=mapping_id)
        object_id = parse(s.MappingTestInputSerializer, request)["record"]
        return Response(
            _test_answer(tester.send_mapping_test(mapping=mapping, object_id=object_id, actor=actor(request)))
        )


class MappingResync(ApiView):
    @extend_schema(request=None, responses=s.MappingSerializer)
    def post(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        """Resend every record (at once when the mapping is enabled)."""
        mapping = get(request, _mappings(request), pk=mapping_id)
        services.resync_mapping(mapping=mapping, actor=actor(request))
        return Response(s.MappingSerializer(_mappings(request).get(pk=mapping.pk)).data)


class MappingSample(ApiView):
    @extend_schema(request=s.SampleInputSerializer, responses=s.MappingSerializer)
    def post(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        """Sample mode: deliver only the first N records (`sample_size`: N), or all records (null)."""
        mapping = get(request, _mappings(request), pk=mapping_id)
        size = parse(s.SampleInputSerializer, request)["sample_size"]
        try:
            services.set_sample_size(mapping=mapping, sample_size=size, actor=actor(request))
        except services.MappingsError as exc:
            raise invalid("sample_size", str(exc)) from None
        return Response(s.MappingSerializer(_mappings(request).get(pk=mapping.pk)).data)


FILTERS = [
    OpenApiParameter("reason", str, description="Only rejections whose reason contains this."),
    OpenApiParameter("object_id", int),
    OpenApiParameter("since", str, description="A date, e.g. 2026-11-29."),
    OpenApiParameter("until", str, description="A date, e.g. 2026-11-30."),
]


def _rejected(request: Request, mapping: Mapping, params: Any) -> Any:
    filters = rejected_filters(params)
    qs, problems = filter_rejected(mapping, filters)
    if problems:
        raise invalid("filters", " ".join(problems))
    return qs, filters


class RejectedList(ListView):
    serializer_class = s.RejectedSerializer

    @extend_schema(parameters=FILTERS)
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The mapping's rejected records, newest first, each with its reason."""
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> Any:
        mapping = get(self.request, Mapping, pk=self.kwargs["mapping_id"])
        qs, _filters = _rejected(self.request, mapping, self.request.query_params)
        return qs.order_by("-updated_at", "object_id")


class RejectedRetry(ApiView):
    @extend_schema(request=s.RetryInputSerializer, responses=s.CountSerializer)
    def post(self, request: Request, workspace_id: int, mapping_id: int) -> Response:
        """Retry rejected records: `object_ids`, or all of them (optionally only those whose reason contains
        `reason`). The next delivery, enqueued at once, reconsiders them."""
        mapping = get(request, _mappings(request), pk=mapping_id)
        data = parse(s.RetryInputSerializer, request)
        qs, filters = _rejected(request, mapping, {"reason": data.get("reason", "")})
        ids = data.get("object_ids")
        scope = "all" if ids is None else ("one" if len(ids) == 1 else "selection")
        scoped = qs if ids is None else qs.filter(object_id__in=ids)
        marked = services.retry_rejected(
            mapping=mapping, states=scoped, scope=scope, filters=filters, actor=actor(request)
        )
        return Response({"count": marked})


# --- delivery runs ----------------------------------------------------------------------------------------


def _delivery_context() -> dict[str, Any]:
    return {
        "progress": lambda run: progress_dict(dashboard.delivery_progress(run)),
        "redact": lambda run: redacted(run.error, [run.mapping.profile_space, run.mapping.data_model.source]),
    }


def _delivery_runs(request: Request) -> Any:
    return DeliveryRun.objects.filter(mapping__destination__workspace=workspace(request)).select_related(
        "mapping__profile_space", "mapping__data_model__source"
    )


class DeliveryRunList(ListView):
    serializer_class = s.DeliveryRunSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("mapping", int, description="Only this mapping's runs."),
            OpenApiParameter("sync_run", int, description="Only the deliveries of this sync run."),
        ]
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), **_delivery_context()}

    def get_queryset(self) -> Any:
        qs = _delivery_runs(self.request)
        for param, field in (("mapping", "mapping_id"), ("sync_run", "sync_run_id")):
            value = self.request.query_params.get(param, "")
            if value:
                if not value.isdigit():
                    raise invalid(param, "An id is a number.")
                qs = qs.filter(**{field: int(value)})
        return qs.order_by("-created_at", "-id")


class DeliveryRunDetail(ApiView):
    @extend_schema(responses=s.DeliveryRunSerializer)
    def get(self, request: Request, workspace_id: int, delivery_run_id: int) -> Response:
        run = get(request, _delivery_runs(request), pk=delivery_run_id)
        return Response(s.DeliveryRunSerializer(run, context=_delivery_context()).data)
