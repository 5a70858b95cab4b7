from __future__ import annotations

from django.urls import path, re_path

from . import views

app_name = "sandbox_segment"
urlpatterns = [
    path("", views.index, name="index"),
    # The Tracking API: same paths as https://api.segment.io, under /sandbox/segment/.
    path("v1/_check", views.check_key, name="check"),
    re_path(
        r"^v1/(?P<endpoint>batch|import|identify|group|track|page|screen|alias)/?$", views.track_endpoint, name="api"
    ),
    path("inbox/<slug:write_key>/", views.inbox_page, name="inbox"),
    path("inbox/<slug:write_key>.json", views.inbox_json, name="inbox_json"),
    path("inbox/<slug:write_key>/knobs", views.knobs_form, name="knobs"),
    path("inbox/<slug:write_key>/knobs.json", views.knobs_json, name="knobs_json"),
    path("inbox/<slug:write_key>/clear", views.clear_form, name="clear"),
    path("inbox/<slug:write_key>/clear.json", views.clear_json, name="clear_json"),
]
