"""The source page's Models tab, rendered from here so the list's queries live with the data models."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Prefetch
from django.urls import NoReverseMatch, reverse

from models_app.models import DataModel

register = template.Library()

# What the mapping editor may call a mapping's page (it lands in parallel); the first that resolves is linked.
MAPPING_PAGES = ("mappings:mapping_detail", "mappings:mapping_edit", "mappings:mapping")


def _url(*names: str, args: tuple = ()) -> str:
    """The first of `names` that resolves, or "". The destinations and mapping pages land separately: link to
    them only when they exist."""
    for name in names:
        try:
            return reverse(name, args=args)
        except NoReverseMatch:
            continue
    return ""


@register.inclusion_tag("models_app/_models_tab.html")
def models_tab(source: Any, can_change: bool) -> dict[str, Any]:
    from mappings.models import Mapping

    data_models = list(
        DataModel.objects.filter(source=source).prefetch_related(
            Prefetch("mappings", queryset=Mapping.objects.select_related("destination").order_by("name", "id"))
        )
    )
    selected = dict(source.collections.values_list("collection", "selected"))
    mapping_new = _url("mappings:mapping_new")
    rows = []
    for m in data_models:
        mappings = list(m.mappings.all())
        rows.append(
            {
                "model": m,
                "column_count": len(m.all_columns),
                "mappings": [{"mapping": x, "url": _url(*MAPPING_PAGES, args=(x.pk,))} for x in mappings],
                "unselected": not selected.get(m.collection, False),
                "add_mapping_url": f"{mapping_new}?data_model={m.pk}" if mapping_new else "",
            }
        )
    return {
        "source": source,
        "rows": rows,
        "can_change": can_change,
        "new_url": reverse("models_app:new", args=[source.pk]),
        "destination_new_url": _url("mappings:destination_new"),
        "has_collections": bool(selected),
    }
