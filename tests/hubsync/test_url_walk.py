"""Walk EVERY URL pattern of the project as an anonymous visitor, an outsider and a viewer (invariant 7).

The walk is data-driven so it covers URLs that apps add later without editing this file:

* every pattern is collected from the root resolver, recursively, with its path converters;
* the victim workspace ("Acme") gets one object of every model of the project apps that can be built
  automatically (required fields filled by type, foreign keys followed, the workspace FK pointed at Acme);
  a model that needs special care can be registered in FACTORIES;
* int kwargs are filled with the pk of a victim object of the model the kwarg names (`source_id` -> Source,
  `run_id` -> SyncRun/DeliveryRun, `pk` -> guessed from the URL name), and with a nonexistent id (999999);
  other converters get a nonexistent value.

Then: anonymous requests are sent to the login page; the outsider (owner of another workspace) gets 404 for
every URL that names a victim object, and no victim marker ever appears in what the outsider sees; for every
POST a viewer gets 403 (or 405) and nothing in the database changes; secret values never appear in any page a
member sees. A second test fails if a project view lacks the `workspace_view` marker.

Convention this relies on: name int URL kwargs after their model (`<int:source_id>`) or use `pk` in a URL
named after it (`sources:source_detail`).
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, converters, get_resolver
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils import timezone

from hubsync.fields import EncryptedTextField
from hubsync.models import Role, Workspace

# Routes (by path prefix) that are not ours to guard with workspace_view: allauth's own pages (it guards its
# account pages itself; see test_allauth_account_pages_need_login), the Django admin (staff only, through
# allauth's login), the simulators, static files, the health check, the API (guarded by its tokens, walked by
# tests/api/test_api_walk.py) and HubSpot's webhook receiver (its v3 signature is the credential;
# tests/sources/test_live_receiver.py).
ALLOWLIST_PREFIXES = ("accounts/", "admin/", "sandbox/", "static/", "healthz", "api/v1/", "hooks/")
# Views that need a logged-in user but no workspace; they touch only the user's own memberships.
LOGIN_ONLY = {"workspace_new", "workspace_switch"}
# Views reachable without logging in: the invitation link (the token is the credential).
PUBLIC = {"invitation_accept"}

PROJECT_APPS = ("hubsync", "sources", "models_app", "mappings", "api")
NONEXISTENT_ID = 999999
MARKER = "zqvictim"  # in every text field of the victim's objects: must never reach an outsider
SECRET_MARKER = "zqsecret"  # in every encrypted field: must never reach any page at all


# Models that the generic builder cannot make (or makes wrongly): label -> f(workspace, owner) -> instance.
def _member(workspace: Workspace, owner: Any) -> models.Model:
    from hubsync.models import Membership

    user = get_user_model().objects.create_user(username=f"{MARKER}-member", email=f"{MARKER}-member@acme.test")
    return Membership.objects.create(user=user, workspace=workspace, role=Role.VIEWER)


FACTORIES: dict[str, Callable[[Workspace, Any], models.Model]] = {"hubsync.Membership": _member}

# Tables a request may legitimately write without changing anything that matters.
IGNORED_TABLES = {"sessions.Session", "admin.LogEntry"}


# --- collecting the routes ---------------------------------------------------------------------------------


@dataclass
class Route:
    route: str  # path() syntax, prefixes joined
    name: str
    callback: Callable
    converters: dict[str, Any] = field(default_factory=dict)
    regex_groups: bool = False

    @property
    def id(self) -> str:
        return f"{self.name or '-'} /{self.route}"

    @property
    def allowlisted(self) -> bool:
        return self.route.startswith(ALLOWLIST_PREFIXES)


def _pattern_string(pattern: Any) -> tuple[str, bool]:
    if isinstance(pattern, RoutePattern):
        return str(pattern._route), False
    if isinstance(pattern, RegexPattern):
        regex = pattern._regex
        has_groups = bool(re.search(r"\((?!\?:)", regex))
        literal = regex.lstrip("^").rstrip("$").replace("\\", "")
        return literal, has_groups
    return str(pattern), True


def collect_routes() -> list[Route]:
    routes: list[Route] = []

    def walk(patterns: list, prefix: str, convs: dict[str, Any], namespace: str, groups: bool) -> None:
        for p in patterns:
            text, has_groups = _pattern_string(p.pattern)
            here = {**convs, **getattr(p.pattern, "converters", {})}
            if isinstance(p, URLResolver):
                ns = f"{namespace}{p.namespace}:" if p.namespace else namespace
                walk(p.url_patterns, prefix + text, here, ns, groups or has_groups)
            elif isinstance(p, URLPattern):
                name = f"{namespace}{p.name}" if p.name else ""
                routes.append(Route(prefix + text, name, p.callback, here, groups or has_groups))

    walk(get_resolver().url_patterns, "", {}, "", False)
    return routes


ROUTES = collect_routes()
PROJECT_ROUTES = [r for r in ROUTES if not r.allowlisted]


def _is_int(conv: Any) -> bool:
    return isinstance(conv, converters.IntConverter)


def _placeholder(conv: Any) -> str:
    """A value the converter accepts that names nothing."""
    if isinstance(conv, converters.UUIDConverter):
        return str(uuid.UUID(int=NONEXISTENT_ID))
    for candidate in ("zq-nonexistent", str(NONEXISTENT_ID), "x"):
        if re.fullmatch(conv.regex, candidate):
            return candidate
    return "x"


def build_url(route: Route, values: dict[str, Any]) -> str:
    def sub(match: re.Match) -> str:
        return str(values[match.group("name")])

    return "/" + re.sub(r"<(?:(?P<conv>[^>:]+):)?(?P<name>[^>]+)>", sub, route.route)


# --- the victim's objects ----------------------------------------------------------------------------------


class _Builder:
    """Builds one object of every project model inside the victim workspace, filling required fields by type."""

    def __init__(self, workspace: Workspace, owner: Any) -> None:
        self.workspace = workspace
        self.owner = owner
        self.made: dict[type[models.Model], models.Model | None] = {Workspace: workspace}
        self.counter = itertools.count(1)

    def value_for(self, f: models.Field) -> Any:
        n = next(self.counter)
        if f.choices:
            return f.choices[0][0]
        if isinstance(f, EncryptedTextField):
            return f"{SECRET_MARKER}-{n}"
        if isinstance(f, models.EmailField):
            return f"{MARKER}{n}@acme.test"
        if isinstance(f, models.URLField):
            return f"https://{MARKER}{n}.acme.test/"
        if isinstance(f, models.SlugField):
            return f"{MARKER}-{n}"[: f.max_length or 50]
        if isinstance(f, models.CharField | models.TextField):
            return f"{MARKER}-{n}"[: f.max_length or 200]
        if isinstance(f, models.BooleanField):
            return False
        if isinstance(f, models.IntegerField | models.BigIntegerField | models.PositiveIntegerField):
            return n
        if isinstance(f, models.FloatField):
            return float(n)
        if isinstance(f, models.DecimalField):
            return Decimal(1)
        if isinstance(f, models.DateTimeField):
            return timezone.now()
        if isinstance(f, models.DateField):
            return date.today()
        if isinstance(f, models.TimeField):
            return time(0, 0)
        if isinstance(f, models.DurationField):
            return timedelta(hours=1)
        if isinstance(f, models.UUIDField):
            return uuid.uuid4()
        if isinstance(f, models.JSONField):
            return {}
        if isinstance(f, models.BinaryField):
            return b""
        return None

    def build(self, model: type[models.Model]) -> models.Model | None:
        if model in self.made:
            return self.made[model]
        if model is get_user_model():
            return self.owner
        self.made[model] = None  # a cycle back here gives up instead of recursing forever
        label = model._meta.label
        kwargs: dict[str, Any] = {}
        try:
            if label in FACTORIES:
                with transaction.atomic():
                    obj = FACTORIES[label](self.workspace, self.owner)
            else:
                for f in model._meta.concrete_fields:
                    if f.primary_key or getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False):
                        continue
                    if f.is_relation:
                        if f.null:
                            continue
                        target = self.build(f.related_model)
                        if target is None:
                            return None
                        kwargs[f.name] = target
                    elif isinstance(f, models.CharField | models.TextField) and not f.has_default():
                        kwargs[f.name] = self.value_for(f)  # also blank ones: more text to spot in a leak
                    elif f.has_default() or f.null:
                        continue
                    else:
                        value = self.value_for(f)
                        if value is not None:
                            kwargs[f.name] = value
                with transaction.atomic():
                    obj = model._default_manager.create(**kwargs)
        except Exception:  # a model the generic builder cannot make: register it in FACTORIES
            return None
        self.made[model] = obj
        return obj

    def build_all(self) -> dict[type[models.Model], models.Model]:
        for model in apps.get_models():
            if model._meta.app_label in PROJECT_APPS and not model._meta.abstract and not model._meta.proxy:
                self.build(model)
        return {m: o for m, o in self.made.items() if o is not None}


def _candidates(route: Route, kwarg: str, objects: dict[type[models.Model], models.Model]) -> list[int]:
    """Victim pks for an int kwarg: of the model the kwarg (or, for pk/id, the URL name) names."""
    base = re.sub(r"_(id|pk)$", "", kwarg).replace("_", "")
    if base in ("pk", "id"):
        words = [w for w in re.split(r"[^a-z]+", route.name.lower()) if w]
        matched = [o.pk for m, o in objects.items() if m._meta.model_name in words]
    else:
        matched = [o.pk for m, o in objects.items() if m._meta.model_name == base]
        if not matched:
            matched = [o.pk for m, o in objects.items() if m._meta.model_name.endswith(base)]
    return matched or [o.pk for o in objects.values()]


def fillings(route: Route, objects: dict[type[models.Model], models.Model]) -> Iterator[dict[str, Any]]:
    """Kwarg values to try: nonexistent ids first, then combinations of victim objects' pks."""
    ints = [k for k, c in route.converters.items() if _is_int(c)]
    others = {k: _placeholder(c) for k, c in route.converters.items() if not _is_int(c)}
    yield {**others, **dict.fromkeys(ints, NONEXISTENT_ID)}
    if ints and objects:
        pools = [sorted(set(_candidates(route, k, objects))) for k in ints]
        for combo in itertools.islice(itertools.product(*pools), 40):
            yield {**others, **dict(zip(ints, combo, strict=True))}


def snapshot() -> dict[str, list[tuple]]:
    data = {}
    for model in apps.get_models():
        label = model._meta.label
        if label in IGNORED_TABLES or model._meta.proxy or not model._meta.managed:
            continue
        data[label] = list(model._default_manager.order_by("pk").values_list())
    return data


def _diff(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> list[str]:
    return [label for label in before if before[label] != after.get(label)]


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
def victim_objects(workspace, owner, viewer) -> dict[type[models.Model], models.Model]:
    return _Builder(workspace, owner).build_all()


def _login_redirect(response) -> bool:
    return response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def _route_params(routes: list[Route]) -> list:
    return [pytest.param(r, id=r.id) for r in routes]


# --- the walk ---------------------------------------------------------------------------------------------


def test_the_walk_sees_the_project_routes():
    names = {r.name for r in ROUTES}
    assert {"dashboard", "members", "member_role", "audit_log", "workspace_settings", "account_login"} <= names
    assert all(not r.regex_groups for r in PROJECT_ROUTES), "use path() converters, the walk fills them"


def test_victim_objects_cover_the_project_models(victim_objects):
    """Every project model gets an object (or a FACTORIES entry), so every id in a URL can name one."""
    built = {m._meta.label for m in victim_objects}
    missing = [
        m._meta.label
        for m in apps.get_models()
        if m._meta.app_label in PROJECT_APPS and not m._meta.proxy and m._meta.label not in built
    ]
    assert not missing, f"register these in FACTORIES so the walk can use their ids: {missing}"


def check_anonymous(route: Route, objects: dict) -> None:
    client = Client()
    for values in fillings(route, objects):
        url = build_url(route, values)
        for method in ("get", "post"):
            response = getattr(client, method)(url)
            if route.name in PUBLIC:
                assert response.status_code < 500, f"{method.upper()} {url}"
            else:
                assert _login_redirect(response) or response.status_code == 405, (
                    f"anonymous {method.upper()} {url} -> {response.status_code}"
                )


def check_outsider(route: Route, objects: dict, client: Client) -> None:
    before = snapshot()
    for values in fillings(route, objects):
        url = build_url(route, values)
        for method in ("get", "post"):
            if method == "post" and (route.name in LOGIN_ONLY or not route.converters):
                continue  # a POST without ids acts on the outsider's own workspace (or account): not a leak
            response = getattr(client, method)(url)
            body = response.content.decode(errors="replace")
            assert MARKER not in body and SECRET_MARKER not in body, f"outsider {method.upper()} {url} leaks"
            if route.converters and route.name not in PUBLIC:
                assert response.status_code in (404, 405), (
                    f"outsider {method.upper()} {url} -> {response.status_code}, expected 404"
                )
            else:
                assert response.status_code < 500, f"outsider {method.upper()} {url} -> {response.status_code}"
    changed = _diff(before, snapshot())
    assert not changed, f"outsider requests to /{route.route} changed {changed}"


def check_viewer(route: Route, objects: dict, client: Client) -> None:
    required = getattr(route.callback, "required_role", Role.VIEWER)
    write_role = getattr(route.callback, "write_role", Role.ADMIN)
    for values in fillings(route, objects):
        url = build_url(route, values)
        response = client.get(url)
        body = response.content.decode(errors="replace")
        assert response.status_code < 500, f"viewer GET {url} -> {response.status_code}"
        assert SECRET_MARKER not in body, f"viewer GET {url} shows a secret value"
        if required == Role.VIEWER:
            assert response.status_code != 403, f"viewers can see everything, but GET {url} -> 403"
        else:
            assert response.status_code == 403, f"GET {url} needs {required}, viewer got {response.status_code}"
        before = snapshot()
        response = client.post(url)
        if write_role != Role.VIEWER:
            assert response.status_code in (403, 405), f"viewer POST {url} -> {response.status_code}, expected 403"
        assert response.status_code < 500, f"viewer POST {url} -> {response.status_code}"
        changed = _diff(before, snapshot())
        assert not changed, f"viewer POST {url} changed {changed}"


@pytest.mark.django_db
@pytest.mark.parametrize("route", _route_params(PROJECT_ROUTES))
def test_anonymous_is_sent_to_login(route, victim_objects):
    check_anonymous(route, victim_objects)


@pytest.mark.django_db
@pytest.mark.parametrize("route", _route_params(PROJECT_ROUTES))
def test_outsider_cannot_reach_the_victims_objects(route, victim_objects, outsider_client):
    check_outsider(route, victim_objects, outsider_client)


@pytest.mark.django_db
@pytest.mark.parametrize("route", _route_params([r for r in PROJECT_ROUTES if r.name not in LOGIN_ONLY | PUBLIC]))
def test_viewer_reads_but_changes_nothing(route, victim_objects, viewer_client):
    check_viewer(route, victim_objects, viewer_client)


def unguarded_routes(routes: list[Route]) -> list[str]:
    unguarded = []
    for route in routes:
        cb = route.callback
        if route.name in LOGIN_ONLY:
            ok = getattr(cb, "login_view", False)
        elif route.name in PUBLIC:
            ok = getattr(cb, "public_view", False)
        else:
            ok = getattr(cb, "workspace_view", False)
        if not ok:
            unguarded.append(route.id)
    return unguarded


def test_every_project_view_goes_through_the_access_check():
    unguarded = unguarded_routes(PROJECT_ROUTES)
    assert not unguarded, f"decorate these with @workspace_view(role=...) from hubsync/access.py: {unguarded}"


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["account_change_password", "account_email", "mfa_index", "mfa_activate_totp"])
def test_allauth_account_pages_need_login(client, name):
    from django.urls import reverse

    assert _login_redirect(client.get(reverse(name)))


@pytest.mark.django_db
def test_admin_needs_staff(client, outsider_client):
    chain = client.get("/admin/", follow=True).redirect_chain
    assert chain[-1][0].startswith("/accounts/login/")
    assert outsider_client.get("/admin/").status_code in (302, 403)
    assert outsider_client.get("/admin/hubsync/workspace/").status_code in (302, 403)


# --- the walk catches what it should (run against a URLconf with deliberately broken views) ------------


@pytest.mark.django_db
@pytest.mark.urls("tests.hubsync.walk_broken_urls")
def test_the_walk_catches_broken_views(victim_objects, outsider_client, viewer_client):
    routes = {r.name: r for r in collect_routes()}
    # A broken view may crash (500) instead of answering 404: count that as the failure it is.
    outsider_client.raise_request_exception = viewer_client.raise_request_exception = False
    check_outsider(routes["good_detail"], victim_objects, outsider_client)
    check_viewer(routes["good_detail"], victim_objects, viewer_client)
    check_anonymous(routes["good_detail"], victim_objects)
    with pytest.raises(AssertionError, match="leaks|expected 404"):
        check_outsider(routes["leaky_detail"], victim_objects, outsider_client)
    with pytest.raises(AssertionError, match="changed"):
        check_outsider(routes["leaky_toggle"], victim_objects, outsider_client)
    with pytest.raises(AssertionError, match="changed"):
        check_viewer(routes["viewer_writes"], victim_objects, viewer_client)
    with pytest.raises(AssertionError, match="shows a secret"):
        check_viewer(routes["shows_secret"], victim_objects, viewer_client)
    with pytest.raises(AssertionError, match="anonymous"):
        check_anonymous(routes["unguarded"], victim_objects)
    assert [r.split()[0] for r in unguarded_routes([r for r in routes.values() if not r.allowlisted])] == ["unguarded"]
