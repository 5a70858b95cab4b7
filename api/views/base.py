"""What every API view shares: token authentication, the workspace and role check, the rate limit, an audit
event for every call that may change something, and small helpers that turn form errors into problem details."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from django.db.models import Model, QuerySet
from django.forms import Form
from rest_framework import exceptions, generics
from rest_framework.permissions import SAFE_METHODS
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.serializers import Serializer
from rest_framework.views import APIView

from hubsync.access import get_for_workspace
from hubsync.models import Role, Workspace
from hubsync.redact import redact

from .. import services
from ..auth import token_of

M = TypeVar("M", bound=Model)


# Marks a view as an API view of a workspace (the API URL walk checks for it) and audits every call with a method
# that may change something, whatever its outcome (pages audit their actions the same way). A comment, not a
# docstring: the OpenAPI document takes a view's description from the first docstring of its classes.
class AuditedMixin:
    api_view = True
    write_role = Role.ADMIN

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        token = token_of(request)
        if token is not None and request.method not in SAFE_METHODS:
            services.record_call(
                token=token, method=request.method or "", path=request.path, status=response.status_code
            )
        return response


class ApiView(AuditedMixin, APIView):
    pass


class ListView(AuditedMixin, generics.ListAPIView):
    pass


def workspace(request: Request) -> Workspace:
    return request.workspace  # type: ignore[attr-defined]  # set by WorkspaceTokenPermission


def actor(request: Request) -> Any:
    return request.user


def get(request: Request, model_or_qs: type[M] | QuerySet[M], **lookup: Any) -> M:
    """One object of the token's workspace, or a 404 problem (also for another workspace's object)."""
    return get_for_workspace(request, model_or_qs, **lookup)


def parse(serializer_class: type[Serializer], request: Request, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=request.data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def form_errors(form: Form, rename: dict[str, str] | None = None) -> dict[str, list[str]]:
    rename = {"__all__": "non_field_errors", **(rename or {})}
    return {
        rename.get(field, field): [str(error["message"]) for error in errors]
        for field, errors in form.errors.get_json_data().items()
    }


def check(form: Form, rename: dict[str, str] | None = None) -> dict[str, Any]:
    """The form's cleaned data, or a 400 problem with its errors per field (the pages' own messages)."""
    if not form.is_valid():
        raise exceptions.ValidationError(form_errors(form, rename))
    return form.cleaned_data


def invalid(field: str, message: str) -> exceptions.ValidationError:
    return exceptions.ValidationError({field: [message]})


def progress_dict(progress: Any) -> dict[str, Any]:
    return {
        "done": progress.done,
        "total": progress.total,
        "percent": progress.percent,
        "eta_seconds": int(progress.eta.total_seconds()) if progress.eta is not None else None,
        "finished": progress.finished,
    }


def secrets_of(*objects: Any) -> list[str]:
    """Secret values to hide in error texts (decrypted only for that; a key problem must not hide the run)."""
    found: list[str] = []
    for obj in objects:
        for name in ("token", "access_token", "write_key"):
            try:
                value = getattr(obj, name, "")
            except Exception:
                continue
            if value:
                found.append(value)
    return found


def redacted(text: str, objects: Iterable[Any]) -> str:
    return redact(text, secrets_of(*objects))
