"""Configuration as code at scale: a workspace with N data models and N mappings (default 500). Prints the export's
and the plan's time and query count next to those of a workspace a tenth of the size (aim: the same number of
queries whatever the size, time linear), and the time per object of applying the export to a fresh workspace
(every object through the pages' form and service). Run with `make bench`."""

from __future__ import annotations

import os
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from api.config import COMMAND_LINE, apply_yaml, export_yaml, plan_yaml
from hubsync.models import Workspace
from mappings.models import Destination, Mapping, ProfileSpace
from models_app.models import DataModel
from sources.models import Source, SourceCollection

pytestmark = pytest.mark.bench

N = int(os.environ.get("BENCH_CONFIG_OBJECTS", "500"))
PROPERTIES = {n: {"label": n, "type": "string"} for n in ("email", "firstname", "lastname", "city")}


def _source(workspace: Workspace) -> Source:
    source = Source.objects.create(
        workspace=workspace, name="HubSpot", schema_name="hubspot", hub_id=4242, token="t", scopes=["oauth"]
    )
    SourceCollection.objects.create(source=source, collection="contacts", properties=PROPERTIES)
    return source


def _workspace(name: str, n: int) -> Workspace:
    workspace = Workspace.objects.create(name=name)
    source = _source(workspace)
    destination = Destination.objects.create(workspace=workspace, name="Segment")
    space = ProfileSpace.objects.create(destination=destination, name="Production", write_key="wk_bench_12345")
    models = DataModel.objects.bulk_create(
        DataModel(source=source, collection="contacts", name=f"Contacts {i:04d}", columns=["email", "firstname"])
        for i in range(n)
    )
    Mapping.objects.bulk_create(
        Mapping(
            destination=destination,
            data_model=m,
            profile_space=space,
            name=f"Mapping {i:04d}",
            identifiers={"user_id": "email", "anonymous_id": None, "group_id": None},
            traits=[["email", "email"], ["firstname", "first_name"]],
            options={"empty_values": "null", "identifier_format": "lower"},
        )
        for i, m in enumerate(models)
    )
    return workspace


def _measure(fn):
    with CaptureQueriesContext(connection) as queries:
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
    return result, elapsed, len(queries.captured_queries)


@pytest.mark.django_db
def test_bench_config_export_plan_apply(monkeypatch):
    small, large = _workspace("Small", max(1, N // 10)), _workspace("Large", N)
    figures = {}
    for label, ws in (("small", small), ("large", large)):
        text, t_export, q_export = _measure(lambda ws=ws: export_yaml(workspace=ws))
        plan, t_plan, q_plan = _measure(lambda ws=ws, text=text: plan_yaml(workspace=ws, text=text))
        assert plan.changes == [] and plan.problems == []
        figures[label] = (text, t_export, q_export, t_plan, q_plan)
    s, big = figures["small"], figures["large"]
    print(
        f"\nexport: {N // 10} mappings {s[1] * 1000:.0f} ms / {s[2]} queries; {N} mappings {big[1] * 1000:.0f} ms / "
        f"{big[2]} queries (time ratio {big[1] / s[1]:.1f} for 10x the objects)"
    )
    print(
        f"self-plan: {N // 10} mappings {s[3] * 1000:.0f} ms / {s[4]} queries; {N} mappings {big[3] * 1000:.0f} ms / "
        f"{big[4]} queries (time ratio {big[3] / s[3]:.1f})"
    )
    assert big[2] == s[2] and big[4] == s[4]  # queries do not grow with the configuration

    monkeypatch.setenv("SEGMENT_WRITE_KEY_PRODUCTION", "wk_bench_12345")
    fresh = Workspace.objects.create(name="Large")
    _source(fresh)
    plan, t_apply, q_apply = _measure(lambda: apply_yaml(workspace=fresh, text=big[0], actor=COMMAND_LINE, via="bench"))
    objects = sum(plan.counts().values())
    assert export_yaml(workspace=fresh) == big[0]
    print(
        f"apply to a fresh workspace: {objects} objects in {t_apply:.1f} s = {t_apply / objects * 1000:.1f} ms and "
        f"{q_apply / objects:.1f} queries per object (forms, services and audit events included)"
    )
