from __future__ import annotations

app_name = "sources"
urlpatterns: list = []
