from __future__ import annotations

from collections.abc import Mapping
from typing import IO, Any

from rest_framework.parsers import BaseParser, JSONParser


class AnyJSONParser(BaseParser):
    """A body is read as JSON whatever its declared type (`curl -d '{…}'` sends form-encoded): the API takes
    tokens, never cookies, so no browser form can post to it on a user's behalf, and invalid JSON is a 400.
    Not a JSONParser subclass, so the OpenAPI document lists application/json only."""

    media_type = "*/*"

    def parse(
        self, stream: IO[Any], media_type: str | None = None, parser_context: Mapping[str, Any] | None = None
    ) -> Any:
        return JSONParser().parse(stream, "application/json", parser_context)
