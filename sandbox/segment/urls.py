from __future__ import annotations

app_name = "sandbox_segment"
urlpatterns: list = []
