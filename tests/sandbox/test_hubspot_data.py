"""The HubSpot double's generated data (sandbox.hubspot.data), below its HTTP API."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from sandbox.hubspot import data


def _portal(hub_id: int) -> SimpleNamespace:
    return SimpleNamespace(
        hub_id=hub_id,
        pk=hub_id,
        created_at=None,
        seed=7,
        generated_at_ms=1_700_000_000_000,
        schema_version=0,
        size=lambda name: 1_000,
    )


def test_a_portals_first_requests_at_once_build_its_data_once(monkeypatch):
    """A sync's first requests to a portal come together (its properties and its first counts): one builds the
    portal's TypeData and the others wait for that one, rather than each building it again."""
    builds = []
    real = data._build_type_data

    def slow(portal, otype, custom_rows):
        builds.append(portal.hub_id)
        time.sleep(0.05)
        return real(portal, otype, custom_rows)

    monkeypatch.setattr(data, "_build_type_data", slow)
    portal, contacts = _portal(987_654_321), data.OBJECT_TYPES["contacts"]
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(data.type_data(portal, contacts, []))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert builds == [portal.hub_id]
    assert len(got) == 4 and all(td is got[0] for td in got)
    # Another portal (another key) builds its own.
    assert data.type_data(_portal(987_654_322), contacts, []) is not got[0]
    assert builds == [portal.hub_id, 987_654_322]
