"""Serve the sandbox (HubSpot and Segment simulators) on its own port.

    python manage.py sandbox_serve --port 8300 [--host 127.0.0.1] [--threads 8]

Same paths as inside the product (/sandbox/hubspot/..., /sandbox/segment/...). It runs gunicorn with one worker
process and a few threads (the rate-limit counters are per process, so one process keeps them exact). With
--port 0 the OS picks a free port; the first line on stdout is always "sandbox listening on http://HOST:PORT".
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sandbox.hubspot.realism import ARRIVED


class Command(BaseCommand):
    help = "Serve the HubSpot and Segment sandboxes on their own port (gunicorn, threaded)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8300)
        parser.add_argument("--threads", type=int, default=8)
        parser.add_argument("--access-log", action="store_true", help="log every request to stderr")

    def handle(self, *args: Any, **opts: Any) -> None:
        if not settings.SANDBOX:
            raise CommandError("The sandbox is off (SANDBOX=false); set SANDBOX=1 to serve it.")
        from django.core.wsgi import get_wsgi_application
        from gunicorn.app.base import BaseApplication

        settings.ROOT_URLCONF = "sandbox.serve_urls"
        # Only what sandbox pages and APIs use (no hubsync workspaces or allauth here): the list endpoint is
        # benchmarked through this server, so every middleware counts.
        keep = {
            "django.middleware.security.SecurityMiddleware",
            "whitenoise.middleware.WhiteNoiseMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
            "django_htmx.middleware.HtmxMiddleware",
        }
        settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if m in keep]
        django_app = get_wsgi_application()
        host = opts["host"]

        def application(environ, start_response):
            # HubSpot counts a request against its rate limits when it arrives: note the time before Django's
            # request handling and middleware, whose scheduling under load is this server's, not the client's.
            environ[ARRIVED] = time.monotonic()
            return django_app(environ, start_response)

        def when_ready(server) -> None:
            sock = server.LISTENERS[0].sock
            print(f"sandbox listening on http://{host}:{sock.getsockname()[1]}", flush=True)

        options = {
            "bind": f"{host}:{opts['port']}",
            "workers": 1,
            "worker_class": "gthread",
            "threads": opts["threads"],
            "timeout": 120,
            "graceful_timeout": 5,
            "keepalive": 30,
            # HubSpot answers long URLs with 414 at ~8,000 characters; gunicorn's own limit (4,094) would
            # answer 400 first, so lift it and let the sandbox decide.
            "limit_request_line": 0,
            "limit_request_field_size": 16384,
            "accesslog": "-" if opts["access_log"] else None,
            "errorlog": "-",
            "loglevel": "warning",
            "when_ready": when_ready,
        }

        class SandboxApp(BaseApplication):
            def load_config(self) -> None:
                for key, value in options.items():
                    self.cfg.set(key, value)

            def load(self):
                return application

        sys.argv = [sys.argv[0]]  # gunicorn must not parse manage.py's arguments
        SandboxApp().run()
