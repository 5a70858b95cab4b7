"""The source page's Models tab: its data models and the mappings that use each. It lives here, above both
sources and data models, because it lists mappings."""

from __future__ import annotations

from typing import Any

from django import template
from django.db.models import Prefetch
from django.urls import reverse

from models_app.models import DataModel

from ..models import Mapping

register = template.Library()


@register.inclusion_tag("models_app/_models_tab.html")
def models_tab(source: Any, can_change: bool) -> dict[str, Any]:
    data_models = list(
        DataModel.objects.filter(source=source).prefetch_related(
            Prefetch("mappings", queryset=Mapping.objects.select_related("destination").order_by("name", "id"))
        )
    )
    selected = dict(source.collections.values_list("collection", "selected"))
    mapping_new = reverse("mappings:mapping_new")
    rows = []
    for m in data_models:
        mappings = list(m.mappings.all())
        rows.append(
            {
                "model": m,
                "column_count": m.column_count,
                "mappings": [{"mapping": x, "url": reverse("mappings:mapping_detail", args=(x.pk,))} for x in mappings],
                "unselected": not selected.get(m.collection, False),
                "add_mapping_url": f"{mapping_new}?data_model={m.pk}",
            }
        )
    return {
        "source": source,
        "rows": rows,
        "can_change": can_change,
        "new_url": reverse("models_app:new", args=[source.pk]),
        "destination_new_url": f"{reverse('mappings:destination_new')}?source={source.pk}",
        "has_collections": bool(selected),
    }
