"""Records permanently deleted in HubSpot, in Chromium: delete records on the sandbox's portal page (as a user
would in HubSpot), read the Full sync confirmation, start the full sync, see the deletions on the run page and
ask the record debugger about a deleted id. Screenshots in test-artifacts/screenshots/deleted_records/."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from mappings.models import DeliveryState
from sources.extraction import execute_run
from sources.models import Record, SyncRun
from tests.browser.conftest import log_in
from tests.factories import (
    DataModelFactory,
    DeliveryStateFactory,
    DestinationFactory,
    MappingFactory,
    ProfileSpaceFactory,
)
from tests.sources.extract_helpers import PORTAL, make_source, sync

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SHOTS = Path(django_settings.BASE_DIR) / "test-artifacts" / "screenshots" / "deleted_records"


def shot(page, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_a_full_sync_removes_records_deleted_in_hubspot(hubspot_sandbox, page, owner, workspace, settings):
    base = hubspot_sandbox.server_url
    settings.BASE_URL = base
    settings.HUBSPOT_API_BASE = ""
    settings.HUBSPOT_RATE_LIMIT = 0
    settings.HUBSPOT_SEARCH_RATE_LIMIT = 0
    hubspot_sandbox.set_knobs(rate_limits=False)
    hubspot_sandbox.seed(PORTAL, contacts=250, companies=0, deals=0, tickets=0)
    source = make_source(workspace, hubspot_sandbox, enabled=True)
    assert sync(source, SyncRun.Trigger.FIRST).status == SyncRun.Status.SUCCEEDED
    ids = list(Record.objects.filter(source=source).order_by("object_id").values_list("object_id", flat=True))
    doomed = [ids[2], ids[120], ids[-1]]
    destination = DestinationFactory(workspace=workspace, name="Segment")
    space = ProfileSpaceFactory(destination=destination, name="Marketing", write_key="wk", region="sandbox")
    model = DataModelFactory(source=source, collection="contacts", name="Contacts", columns=["email"])
    mapping = MappingFactory(
        destination=destination,
        data_model=model,
        profile_space=space,
        name="Contacts to profiles",
        identifiers={"user_id": "email"},
        traits=[["email", "email"]],
    )
    DeliveryStateFactory(
        mapping=mapping,
        object_id=doomed[0],
        delivered_hash="h" * 64,
        status=DeliveryState.Status.REJECTED,
        error="Segment refused it",
        last_payload={"userId": "someone@example.com"},
    )

    # In "HubSpot" (the sandbox's portal page): delete three records permanently.
    page.goto(f"{hubspot_sandbox.base_url}/portals/{PORTAL}/")
    form = page.locator("form[action$='/mutate']")
    form.locator("select[name=collection]").select_option("contacts")
    form.locator("input[name=purge_ids]").fill(", ".join(map(str, doomed)))
    form.locator("button[type=submit]").click()
    page.wait_for_load_state()
    assert "permanently deleted 3 contacts" in page.content()
    shot(page, "01_sandbox_deleted")

    log_in(page, owner, base)
    page.goto(f"{base}/sources/{source.pk}/full-sync/")
    note = page.locator("#full-sync-deletions")
    assert "permanently deleted" in note.inner_text() and "removes them from the mirror" in note.inner_text()
    shot(page, "02_confirm_full_sync")
    page.get_by_role("button", name="Start full sync").click()
    page.wait_for_url(f"**/sources/{source.pk}/")
    run = SyncRun.objects.filter(source=source, trigger=SyncRun.Trigger.FULL).get()
    finished = execute_run(run_id=run.pk)  # what a worker would do
    assert finished.status == SyncRun.Status.SUCCEEDED, finished.error
    assert finished.counts["contacts"]["deleted"] == 3

    page.goto(f"{base}/sources/{source.pk}/runs/{run.pk}/")
    table = page.locator("#run-collections")
    headers = [h.strip() for h in table.locator("th").all_inner_texts()]
    cells = [c.strip() for c in table.locator("tbody tr").first.locator("td").all_inner_texts()]
    assert headers[-1].lower() == "deleted" and cells[-1] == "3"
    shot(page, "03_run_page")
    page.goto(f"{base}/sources/{source.pk}/")
    assert "deleted" in page.locator("#source-runs thead").inner_text().lower()
    shot(page, "04_source_runs")

    page.goto(f"{base}/debug/records/?q={doomed[0]}")
    notice = page.locator("#debug-deleted")
    assert "deleted in HubSpot" in notice.inner_text() and "Contacts to profiles" in notice.inner_text()
    assert page.get_by_role("alert").count() == 0  # an explanation, not an error
    shot(page, "05_debugger")
    assert not Record.objects.filter(source=source, object_id__in=doomed).exists()
    assert DeliveryState.objects.get(mapping=mapping, object_id=doomed[0]).last_payload is None
