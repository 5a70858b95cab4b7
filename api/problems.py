"""Errors of the API as problem details (RFC 9457, `application/problem+json`): type, title, status, detail, and
for invalid input `errors` ({field: [messages]}). Never an HTML page: DRF's errors go through
`exception_handler`; what Django answers itself under /api/ (no such URL, a crash) through api.middleware."""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from django.http import HttpResponse
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

PROBLEM_JSON = "application/problem+json"
API_PREFIX = "/api/"

VALIDATION = "urn:hubsync:problem:validation"
RATE_LIMITED = "urn:hubsync:problem:rate-limited"
CONFLICT = "urn:hubsync:problem:conflict"


def body(status: int, detail: str = "", *, type_: str = "about:blank", title: str = "", **extra: Any) -> dict:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    problem = {"type": type_, "title": title or phrase, "status": status, "detail": detail or phrase}
    problem.update(extra)
    return problem


def _messages(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        return [m for item in value for m in _messages(item)]
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _messages(v)]
    return [str(value)]


def field_errors(detail: Any) -> dict[str, list[str]]:
    if isinstance(detail, dict):
        return {str(key): _messages(value) for key, value in detail.items()}
    return {"non_field_errors": _messages(detail)}


class Conflict(exceptions.APIException):
    """The request is valid but the current state refuses it (setup incomplete, object in use, run active)."""

    status_code = 409
    default_detail = "The current state does not allow this."
    default_code = "conflict"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.extra = extra


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # not an API error: a crash, answered as a 500 problem by the middleware
    status = response.status_code
    if isinstance(exc, exceptions.ValidationError):
        errors = field_errors(exc.detail)
        first = next(iter(errors.values()), ["Invalid input."])[0]
        detail = f"The request is invalid: {first}" if len(errors) == 1 else "The request is invalid; see errors."
        data = body(status, detail, type_=VALIDATION, title="Invalid input", errors=errors)
    elif isinstance(exc, exceptions.Throttled):
        data = body(status, str(exc.detail), type_=RATE_LIMITED, title="Too many requests")
    elif isinstance(exc, Conflict):
        data = body(status, str(exc.detail), type_=CONFLICT, title="Conflict", **exc.extra)
    else:
        raw: Any = exc.detail if isinstance(exc, exceptions.APIException) else ""
        data = body(status, "" if isinstance(raw, dict | list) else str(raw))
    response.data = data
    response.content_type = PROBLEM_JSON
    return response


def django_problem(status: int, detail: str = "") -> HttpResponse:
    defaults = {
        404: "There is no API endpoint at this address.",
        405: "This endpoint does not accept this method.",
        500: "The server failed to answer this request; the error was logged.",
    }
    return HttpResponse(
        json.dumps(body(status, detail or defaults.get(status, ""))), status=status, content_type=PROBLEM_JSON
    )
