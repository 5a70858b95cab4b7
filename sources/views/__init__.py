"""Connections → Sources: the wizard (sources.views.wizard) and the source page (sources.views.detail)."""
