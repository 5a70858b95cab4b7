"""What every request under /api/ gets before and after Django's own handling."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from .problems import API_PREFIX, django_problem


class ApiMiddleware:
    """Under /api/:

    * a route named without its trailing slash (`/api/v1/workspaces/1/sources`) is served as the route with it,
      instead of Django's redirect (which loses a POST's body, or fails with DEBUG on): scripts are written both
      ways;
    * any error Django answers by itself (no such URL, method not allowed outside DRF, a NUL byte, an unhandled
      exception) becomes a problem document instead of an HTML page.

    It sits outside every other middleware but the security headers, so it sees their answers too."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        _add_slash(request)
        response = self.get_response(request)
        if response.status_code < 400 or "json" in response.get("Content-Type", ""):
            return response
        problem = django_problem(response.status_code)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if header in response:
                problem[header] = response[header]
        return problem


def _add_slash(request: HttpRequest) -> None:
    path = request.path_info
    if path.endswith("/"):
        return
    try:
        resolve(path)
        return  # a route without a slash of its own
    except Resolver404:
        pass
    try:
        resolve(path + "/")
    except Resolver404:
        return
    request.path_info = path + "/"
    request.path = request.path + "/"
