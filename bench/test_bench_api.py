"""The API's own cost per request, against the pages that show the same objects, in the same run: token lookup,
role check, rate limit (in Redis when REDIS_URL is set) and JSON, versus session, membership and HTML. 50 sources
and 50 mappings; each list is asked REQUESTS times; prints server time per request and the ratio API / page, and
the queries of each. Run with `make bench`."""

from __future__ import annotations

import os
import statistics
import time

import pytest
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from api import services
from api.models import ApiToken
from hubsync.models import Membership, Role, Workspace
from mappings.models import Destination, Mapping, ProfileSpace
from models_app.models import DataModel
from sources.models import Source, SourceCollection

pytestmark = [pytest.mark.bench, pytest.mark.django_db]

REQUESTS = int(os.environ.get("BENCH_API_REQUESTS", "200"))
OBJECTS = 50


def _setup():
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username="bench", email="bench@acme.test", password="x" * 12)
    workspace = Workspace.objects.create(name="Bench")
    Membership.objects.create(user=user, workspace=workspace, role=Role.OWNER)
    destination = Destination.objects.create(workspace=workspace, name="Segment")
    space = ProfileSpace.objects.create(destination=destination, name="Prod", write_key="wk_bench_123", region="us")
    for n in range(OBJECTS):
        source = Source.objects.create(workspace=workspace, name=f"S{n}", schema_name=f"s_{n}", hub_id=n)
        SourceCollection.objects.create(source=source, collection="contacts")
        model = DataModel.objects.create(source=source, collection="contacts", name="Contacts", columns=["email"])
        Mapping.objects.create(
            destination=destination,
            data_model=model,
            profile_space=space,
            identifiers={"user_id": "email"},
            traits=[["email", "email"]],
        )
    token = services.create_token(
        workspace=workspace, name="bench", role=ApiToken.Role.READ_ONLY, expires_at=None, actor=user
    )
    return user, workspace, token


def _time(call) -> tuple[float, int]:
    call()  # warm
    connection.queries_log.clear()  # a full log (DEBUG queries of the set-up) would hide the new ones
    with CaptureQueriesContext(connection) as captured:
        call()
    queries = len(captured)
    samples = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        response = call()
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return statistics.median(samples), queries


def test_api_cost_against_the_pages(settings):
    settings.HUBSYNC_API_RATE = "1000000/minute"
    cache.clear()
    user, workspace, token = _setup()
    page = Client()
    page.force_login(user)
    api = Client(headers={"Authorization": f"Bearer {token.token}"})
    base = f"/api/v1/workspaces/{workspace.pk}/"
    print()
    for name, api_path, page_path in (("sources", "sources/", "/sources/"), ("mappings", "mappings/", "/mappings/")):
        api_ms, api_q = _time(lambda p=api_path: api.get(base + p))
        page_ms, page_q = _time(lambda p=page_path: page.get(p))
        print(
            f"{name} ({OBJECTS}): API {api_ms:.1f} ms/request ({api_q} queries), page {page_ms:.1f} ms ({page_q} "
            f"queries), API/page = {api_ms / page_ms:.2f}"
        )
