"""A mapping's rejected records: a filterable, paged list with the reason for each, and "retry" for one record, a
selection, or everything the filter matches (after the user fixed the mapping, the data, or Segment recovered).

The page says what a rejection does to a profile delivered before (an identifier emptied or removed in HubSpot):
nothing, the profile stays as it was last delivered; hubsync never clears or deletes profiles.

Retry goes through `mappings.services.retry_rejected`: the records get status "retry" and the next delivery
(enqueued at once) reconsiders exactly them, without rewinding the mapping's watermark.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from hubsync.access import WorkspaceRequest, get_for_workspace, workspace_view
from hubsync.models import Role

from . import services
from .models import DeliveryState, Mapping
from .selectors import filter_rejected, rejected_filters, rejected_states, rejected_summary

PAGE_SIZE = 50


def _mapping(request: HttpRequest, mapping_id: int) -> Mapping:
    return get_for_workspace(
        request, Mapping.objects.select_related("data_model", "profile_space", "destination"), pk=mapping_id
    )


@workspace_view()
def rejected_list(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    mapping = _mapping(request, mapping_id)
    filters = rejected_filters(request.GET)
    qs, problems = filter_rejected(mapping, filters)
    page = Paginator(qs.order_by("-updated_at", "object_id"), PAGE_SIZE).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in filters.items() if v})
    context = {
        "mapping": mapping,
        "page": page,
        "filters": filters,
        "filtered": any(filters.values()),
        "problems": problems,
        "query": query,
        "total": rejected_states(mapping).count() if any(filters.values()) else page.paginator.count,
        "can_change": request.membership.allows(Role.ADMIN),
        "retrying": DeliveryState.objects.filter(mapping=mapping, status=DeliveryState.Status.RETRY).count(),
        "rejected_summary": rejected_summary(mapping),
    }
    return render(request, "mappings/rejected_list.html", context)


@workspace_view(role=Role.ADMIN)
@require_POST
def rejected_retry(request: WorkspaceRequest, mapping_id: int) -> HttpResponse:
    """POST `one=<id>` (that record), `action=selected` with `selected=<id>` (a selection), or `action=all` (every
    rejected record matching the filters sent along)."""
    mapping = _mapping(request, mapping_id)
    filters = rejected_filters(request.POST)
    back = reverse("mappings:rejected", args=[mapping.pk])
    query = urlencode({k: v for k, v in filters.items() if v})
    if query:
        back += "?" + query
    action = request.POST.get("action", "")
    one = request.POST.get("one", "")
    if one:
        scope, ids = "one", [one]
    elif action == "selected":
        scope, ids = "selection", request.POST.getlist("selected")
    elif action == "all":
        scope, ids = "all", None
    else:
        messages.error(request, "Choose what to retry.")
        return redirect(back)
    if ids is not None:
        ids = [x for x in ids if x.strip().isdigit()]
        if not ids:
            messages.error(request, "Select at least one record to retry.")
            return redirect(back)
    qs, problems = filter_rejected(mapping, filters)
    if problems and scope == "all":
        messages.error(request, " ".join(problems))
        return redirect(back)
    chosen = [int(x) for x in ids] if ids is not None else None
    scoped = qs.filter(object_id__in=chosen) if chosen is not None else qs
    marked = services.retry_rejected(mapping=mapping, states=scoped, scope=scope, filters=filters, actor=request.user)
    if marked:
        when = "now" if mapping.delivers else "as soon as the mapping is enabled (and not paused)"
        messages.success(
            request,
            f"{marked} rejected record{'s' if marked != 1 else ''} will be retried: a delivery reconsiders "
            f"{'them' if marked != 1 else 'it'} {when}.",
        )
    else:
        messages.info(request, "Nothing to retry: those records are no longer rejected.")
    return redirect(back)
