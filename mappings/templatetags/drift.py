"""Schema-drift fragments any page can include (the mapping page, the dashboard, the source page):

{% load drift %}
{% drift_panel mapping=mapping %}   {# one mapping's open issues, or nothing #}
{% drift_panel %}                   {# every open issue of the current workspace (dashboard) #}
{% new_properties source %}         {# properties HubSpot added recently, and model columns it no longer has #}
"""

from __future__ import annotations

from typing import Any

from django import template

from mappings.drift import fix_choices, missing_columns, new_properties
from mappings.models import MappingIssue
from models_app.models import DataModel
from sources.models import SourceCollection

register = template.Library()


@register.inclusion_tag("mappings/_drift.html", takes_context=True)
def drift_panel(context: Any, mapping: Any = None) -> dict[str, Any]:
    request = context.get("request")
    workspace = getattr(request, "workspace", None)
    issues: list[MappingIssue] = []
    if workspace is not None:
        qs = MappingIssue.objects.filter(
            resolved_at__isnull=True, mapping__destination__workspace=workspace
        ).select_related("mapping__data_model", "mapping__destination")
        if mapping is not None:
            qs = qs.filter(mapping=mapping)
        issues = list(qs.order_by("mapping_id", "detected_at"))
    for issue in issues:
        issue.fixes = fix_choices(issue)
    membership = getattr(request, "membership", None)
    return {
        "issues": issues,
        "single": mapping is not None,
        "can_fix": membership is not None and membership.allows("admin"),
        "next": request.get_full_path() if request is not None else "",
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("mappings/_new_properties.html", name="new_properties")
def new_properties_panel(source: Any) -> dict[str, Any]:

    collections = list(SourceCollection.objects.filter(source=source).order_by("collection"))
    models = list(DataModel.objects.filter(source=source).order_by("name"))
    rows = []
    for sc in collections:
        added = new_properties(sc)
        missing = [
            {"model": m, "columns": cols}
            for m in models
            if m.collection == sc.collection and (cols := missing_columns(m, sc.properties or {}))
        ]
        if added or missing:
            rows.append({"collection": sc.collection, "added": added, "missing": missing})
    return {"rows": rows}
