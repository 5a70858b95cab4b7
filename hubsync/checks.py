"""Deployment checks (`manage.py check --deploy`): what a production configuration must not get wrong."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, Tags, register

# Caches each process keeps for itself: counters kept there are per gunicorn worker and per machine.
PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
}


@register(Tags.security, Tags.caches, deploy=True)
def shared_cache(app_configs=None, **kwargs) -> list[Error]:
    """allauth's login-failure counters, its rate limits and the memory of used TOTP codes live in the cache. A
    per-process cache multiplies the allowed failures by the number of web processes (5 allowed became 15 with
    3 gunicorn workers) and lets a TOTP code be replayed on another process."""
    if settings.DEBUG:
        return []
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend not in PER_PROCESS_CACHES:
        return []
    return [
        Error(
            f"The default cache ({backend.rsplit('.', 1)[-1]}) is per process, so login lock-outs, rate limits and "
            "used-TOTP memory are not shared between web processes.",
            hint="Set REDIS_URL, or HUBSYNC_CACHE=database and run `python manage.py createcachetable`.",
            id="hubsync.E001",
        )
    ]


@register(Tags.security, deploy=True)
def sandbox_off(app_configs=None, **kwargs) -> list[Error]:
    """The simulators' JSON endpoints need no login and are CSRF-exempt: fine on a developer's machine, not on a
    production server."""
    if settings.DEBUG or not settings.SANDBOX:
        return []
    return [
        Error(
            "SANDBOX is on while DEBUG is off: the HubSpot and Segment simulators under /sandbox/ are reachable "
            "without logging in, and anyone can change their data and fault knobs.",
            hint="Unset SANDBOX (or set SANDBOX=false) in production.",
            id="hubsync.E002",
        )
    ]
