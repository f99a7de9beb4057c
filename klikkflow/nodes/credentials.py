"""Credential types: the typed fields of each kind of credential nodes can use.

Field names are n8n's (what ``klikkflow.nodes.http`` reads), so imported n8n credentials
keep working. Secret fields are declared with ``Secret``: their JSON Schema says
``"writeOnly": true, "format": "password"`` and ``masked`` never shows them in full.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import ErrorDetails

from klikkflow.kit.errors import InvalidInput

SECRET_MARK = {"writeOnly": True, "format": "password"}
MASK = "••••"
# A secret's last 4 characters are shown only when enough else stays hidden.
SHOW_TAIL_FROM_LENGTH = 12

HEADER_NAME = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
ONE_LINE = r"^[^\r\n]*$"
HTTP_URL = r"^https?://\S+$"
HTTP_URL_OR_EMPTY = r"^(https?://\S+)?$"
PATTERN_MESSAGES = {
    HEADER_NAME: "must be a header name: letters, digits and -, without spaces or a colon",
    ONE_LINE: "must not contain line breaks",
    HTTP_URL: "must be an http:// or https:// URL",
    HTTP_URL_OR_EMPTY: "must be an http:// or https:// URL, or empty",
}

Secret = Annotated[str, Field(repr=False, json_schema_extra=SECRET_MARK)]
HeaderName = Annotated[str, Field(pattern=HEADER_NAME)]
HeaderValue = Annotated[str, Field(repr=False, pattern=ONE_LINE)]
HttpUrl = Annotated[str, Field(pattern=HTTP_URL)]
OptionalHttpUrl = Annotated[str, Field(pattern=HTTP_URL_OR_EMPTY)]
Required = Annotated[str, Field(min_length=1)]


class Fields(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class BasicAuthFields(Fields):
    user: Required
    password: Secret = ""


class HeaderAuthFields(Fields):
    name: HeaderName = Field(description="Header name, e.g. X-API-Key")
    value: Annotated[HeaderValue, Field(min_length=1, json_schema_extra=SECRET_MARK)]


class QueryAuthFields(Fields):
    name: Required = Field(description="Query parameter name, e.g. api_key")
    value: Annotated[Secret, Field(min_length=1)]


class BearerAuthFields(Fields):
    token: Annotated[Secret, Field(min_length=1)]


class OAuth2Fields(Fields):
    grant_type: Literal["clientCredentials"] = Field(
        "clientCredentials",
        title="Grant Type",
        description="Only the client credentials grant is supported",
    )
    access_token_url: HttpUrl = Field(title="Access Token URL")
    client_id: Required = Field(title="Client ID")
    client_secret: Annotated[Secret, Field(min_length=1, title="Client Secret")]
    scope: str = Field("", description="Space-separated scopes to request")
    authentication: Literal["header", "body"] = Field(
        "header", description="Send the client id and secret as Basic auth or in the form body"
    )


class OpenAiApiFields(Fields):
    api_key: Secret = Field(
        "", title="API Key", description="Leave empty for local servers that need none (Ollama)"
    )
    base_url: OptionalHttpUrl = Field(
        "",
        title="Base URL",
        description="Any OpenAI-compatible API, up to the version path, e.g."
        " http://localhost:11434/v1; empty for OpenAI",
    )


class AnthropicApiFields(Fields):
    api_key: Annotated[Secret, Field(min_length=1, title="API Key")]
    base_url: OptionalHttpUrl = Field("", title="Base URL", description="Empty for Anthropic's")


@dataclass(frozen=True)
class CredentialType:
    name: str
    display_name: str
    fields: type[Fields]
    test: str  # what testing such a credential does, for the UI

    @property
    def secret_fields(self) -> frozenset[str]:
        """The secret fields' names (as stored: n8n's camelCase)."""
        return frozenset(
            info.alias or name
            for name, info in self.fields.model_fields.items()
            if isinstance(info.json_schema_extra, dict)
            and info.json_schema_extra.get("writeOnly") is True
        )

    def json_schema(self) -> dict[str, Any]:
        return {**self.fields.model_json_schema(by_alias=True), "title": self.display_name}


class UnknownCredentialType(Exception):
    def __init__(self, type_name: str) -> None:
        super().__init__(f"unknown credential type {type_name!r}")
        self.type_name = type_name


_REQUEST_TEST = "Sends a request to a URL you choose with this credential"
_LLM_TEST = "Not checked here yet: the first call of an AI node that uses it tells"
_TYPES = {
    t.name: t
    for t in (
        CredentialType("httpBasicAuth", "Basic Auth", BasicAuthFields, _REQUEST_TEST),
        CredentialType("httpDigestAuth", "Digest Auth", BasicAuthFields, _REQUEST_TEST),
        CredentialType("httpHeaderAuth", "Header Auth", HeaderAuthFields, _REQUEST_TEST),
        CredentialType("httpQueryAuth", "Query Auth", QueryAuthFields, _REQUEST_TEST),
        CredentialType("httpBearerAuth", "Bearer Auth", BearerAuthFields, _REQUEST_TEST),
        CredentialType(
            "oAuth2Api", "OAuth2 API", OAuth2Fields, "Requests an access token from the token URL"
        ),
        CredentialType("openAiApi", "OpenAI-compatible API", OpenAiApiFields, _LLM_TEST),
        CredentialType("anthropicApi", "Anthropic API", AnthropicApiFields, _LLM_TEST),
    )
}


def credential_types() -> dict[str, CredentialType]:
    return dict(_TYPES)


def credential_type(type_name: str) -> CredentialType:
    try:
        return _TYPES[type_name]
    except KeyError:
        raise UnknownCredentialType(type_name) from None


def validate(type_name: str, values: dict[str, Any]) -> dict[str, Any]:
    """The values normalised (defaults filled in), or ``InvalidInput`` naming every bad
    field by path. Messages never repeat the values given."""
    try:
        fields = credential_type(type_name).fields
    except UnknownCredentialType as exc:
        raise InvalidInput({"type": str(exc)}) from None
    try:
        return fields.model_validate(values).model_dump(by_alias=True)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for error in exc.errors(include_input=False, include_url=False):
            path = ".".join(str(part) for part in error["loc"]) or "(values)"
            problems.setdefault(path, _message(error))
        raise InvalidInput(problems) from None


def _message(error: ErrorDetails) -> str:
    if error["type"] == "string_pattern_mismatch":
        return PATTERN_MESSAGES[error.get("ctx", {})["pattern"]]
    if error["type"] in ("missing", "string_too_short"):
        return "is required"
    if error["type"] == "extra_forbidden":
        return "is not a field of this credential type"
    return error["msg"]  # pydantic's messages do not quote the input


def masked(type_name: str, values: dict[str, Any]) -> dict[str, str]:
    """Hints safe to show: non-secret fields as they are, secret ones masked."""
    kind = credential_type(type_name)
    secret = kind.secret_fields
    shown: dict[str, str] = {}
    for name, info in kind.fields.model_fields.items():
        key = info.alias or name
        if key in values:
            value = str(values[key])
            shown[key] = _mask(value) if key in secret else value
    return shown


def _mask(secret: str) -> str:
    if not secret:
        return ""  # nothing is set, and saying so hides nothing
    return MASK + secret[-4:] if len(secret) >= SHOW_TAIL_FROM_LENGTH else MASK
