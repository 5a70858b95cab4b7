"""A URLconf of deliberately broken views, so test_url_walk can prove its checks catch each kind of hole."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

from hubsync.access import get_for_workspace, workspace_view
from hubsync.models import Role
from sources.models import Source


@workspace_view()
def good_detail(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=source_id)
    if request.method == "POST":
        source.enabled = not source.enabled
        source.save(update_fields=["enabled"])
    return HttpResponse(source.name)


@workspace_view()
def leaky_detail(request: HttpRequest, source_id: int) -> HttpResponse:
    return HttpResponse(Source.objects.get(pk=source_id).name)  # no workspace filter


@workspace_view()
def leaky_toggle(request: HttpRequest, source_id: int) -> HttpResponse:
    if request.method == "POST":
        Source.objects.filter(pk=source_id).update(enabled=True)  # changes another workspace's object
    return HttpResponse(status=404)


@workspace_view(write_role=Role.VIEWER)
def viewer_writes(request: HttpRequest, source_id: int) -> HttpResponse:
    source = get_for_workspace(request, Source, pk=source_id)
    if request.method == "POST":
        source.enabled = not source.enabled
        source.save(update_fields=["enabled"])
    return HttpResponse("ok")


@workspace_view()
def shows_secret(request: HttpRequest, source_id: int) -> HttpResponse:
    return HttpResponse(get_for_workspace(request, Source, pk=source_id).token)


def unguarded(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


urlpatterns = [
    path("good/<int:source_id>/", good_detail, name="good_detail"),
    path("leaky/<int:source_id>/", leaky_detail, name="leaky_detail"),
    path("toggle/<int:source_id>/", leaky_toggle, name="leaky_toggle"),
    path("writes/<int:source_id>/", viewer_writes, name="viewer_writes"),
    path("secret/<int:source_id>/", shows_secret, name="shows_secret"),
    path("unguarded/", unguarded, name="unguarded"),
    path("", include("hubsync.urls")),  # the layout links to the product's pages
]
