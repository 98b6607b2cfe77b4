"""The OpenAPI schema (drf-spectacular) says what the API really answers, errors included."""

from drf_spectacular import openapi
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_basic_type, build_parameter_type
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter
from rest_framework import serializers
from rest_framework.permissions import AllowAny

# Path variables that are object ids: always UUIDs (anything else is a 404). drf-spectacular
# names `pk` "id" (SCHEMA_COERCE_PATH_PK).
ID_VARIABLES = ("pk", "id", "item_id")


class ErrorOutput(serializers.Serializer):
    """The one error shape (tagger.api.errors); some errors add fields, e.g. `errors`."""

    code = serializers.CharField()
    message = serializers.CharField()


class AutoSchema(openapi.AutoSchema):
    """Adds the error responses every view can give, so clients and schema checks see them:
    401 without credentials, 404 for an unknown or foreign id (or a page past the end), 400
    for invalid input, 429 when throttled. Views add their own (409, 413, 503) with
    @extend_schema."""

    def _resolve_path_parameters(self, variables):
        ids = [v for v in variables if v in ID_VARIABLES]
        rest = [v for v in variables if v not in ID_VARIABLES]
        return [
            build_parameter_type(
                name=v, location=OpenApiParameter.PATH, schema=build_basic_type(OpenApiTypes.UUID)
            )
            for v in ids
        ] + super()._resolve_path_parameters(rest)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code in self._error_codes():
            responses.setdefault(
                str(code), self._get_response_for_code(ErrorOutput, str(code), direction=direction)
            )
        return responses

    def _error_codes(self) -> list[int]:
        codes = []
        if (
            self.method in ("POST", "PUT", "PATCH")
            or self._get_filter_parameters()
            or any(p["in"] == "query" for p in self._get_parameters())
        ):
            codes.append(400)
        if not all(isinstance(p, AllowAny) for p in self.view.get_permissions()):
            codes.append(401)
        if "{" in self.path or (self._is_list_view() and self._get_paginator()):
            codes.append(404)  # an unknown id, or a page past the end ("Invalid page.")
        if self.view.get_throttles():
            codes.append(429)
        return codes


class SignedLinkScheme(OpenApiAuthenticationExtension):
    """Signed links and tile tokens (`?token=`), on the routes that accept them."""

    target_class = "tagger.api.auth.SignedLinkAuthentication"
    name = "signedLink"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The token of a signed link (download-link) or of a TileJSON's tiles.",
        }


class UserLinkScheme(OpenApiAuthenticationExtension):
    """Event-stream links (`?token=` from POST /api/v1/events/link)."""

    target_class = "tagger.api.auth.UserLinkAuthentication"
    name = "eventsLink"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "query",
            "name": "token",
            "description": "The token of an event-stream link (POST /api/v1/events/link).",
        }
