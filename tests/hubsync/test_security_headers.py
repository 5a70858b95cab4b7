"""Response headers (Content-Security-Policy, Permissions-Policy), templates without inline script, and the
NUL-byte guard that answers 400 before any view runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
REQUIRED_CSP = ["default-src 'self'", "object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'"]


def _directives(header: str) -> dict[str, str]:
    return {d.strip().split(" ", 1)[0]: d.strip() for d in header.split(";") if d.strip()}


@pytest.mark.parametrize("who", ["owner_client", "client"])
@pytest.mark.parametrize("url", ["/", "/members/", "/accounts/login/", "/no-such-page/", "/healthz"])
def test_every_response_carries_csp_and_permissions_policy(request, who, url):
    response = request.getfixturevalue(who).get(url)
    csp = response["Content-Security-Policy"]
    directives = _directives(csp)
    for required in REQUIRED_CSP:
        assert directives[required.split()[0]] == required, csp
    # Scripts and styles only from our own files: no 'unsafe-inline', no 'unsafe-eval' anywhere.
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    permissions = response["Permissions-Policy"]
    for feature in ("camera=()", "microphone=()", "geolocation=()", "payment=()"):
        assert feature in permissions


def test_templates_hold_no_inline_script_handler_or_style():
    """What the policy forbids must not be in the templates: every behaviour is in static/js (data- attributes,
    delegated listeners), every style in static/css."""
    offences = []
    patterns = {
        "inline handler": re.compile(r"""\son[a-z]+\s*=\s*["']""", re.I),
        "inline script": re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I),
        "style attribute": re.compile(r"""\sstyle\s*=\s*["']""", re.I),
        "javascript: URL": re.compile(r"javascript:", re.I),
        "htmx eval": re.compile(r"""hx-on|hx-vars|hx-vals\s*=\s*["']\s*js:|hx-trigger="[^"]*\[""", re.I),
    }
    for path in sorted(TEMPLATES.rglob("*.html")):
        text = path.read_text()
        for what, pattern in patterns.items():
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                offences.append(f"{path.relative_to(TEMPLATES)}:{line}: {what}")
    assert not offences, "\n".join(offences)


def test_htmx_is_told_not_to_inject_styles_or_eval(owner_client):
    page = owner_client.get("/").content.decode()
    assert """<meta name="htmx-config" content='{"includeIndicatorStyles": false, "allowEval": false}'>""" in page
    assert "/static/js/app.js" in page


@pytest.mark.parametrize(
    "method,url,data",
    [
        ("get", "/debug/records/", {"q": "a\x00b"}),
        ("get", "/debug/records/?a%00=1", None),
        ("post", "/workspaces/new/", {"name": "a\x00b"}),
        ("post", "/members/", {"email": "x@example.com", "role": "viewer", "note": ["ok", "\x00"]}),
        ("get", "/invitations/a%00b/", None),
    ],
)
def test_a_nul_byte_anywhere_is_a_400(owner_client, method, url, data):
    response = getattr(owner_client, method)(url, data) if data is not None else getattr(owner_client, method)(url)
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_nul_guard_leaves_json_bodies_to_their_views(owner_client):
    # A JSON body is not parsed by the guard (the view still reads request.body).
    response = owner_client.post(
        reverse("sandbox_segment:api", args=["batch"]), b'{"batch": []}', content_type="application/json"
    )
    assert response.status_code != 400 or b"NUL" not in response.content
