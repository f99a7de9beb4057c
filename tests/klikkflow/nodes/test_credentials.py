from typing import Any

import pytest

from klikkflow.kit.errors import InvalidInput
from klikkflow.nodes.credentials import (
    UnknownCredentialType,
    credential_type,
    credential_types,
    masked,
    validate,
)
from klikkflow.nodes.http import HttpRequest

SECRETS = {
    "httpBasicAuth": {"password"},
    "httpDigestAuth": {"password"},
    "httpHeaderAuth": {"value"},
    "httpQueryAuth": {"value"},
    "httpBearerAuth": {"token"},
    "oAuth2Api": {"clientSecret"},
}


def test_every_credential_type_the_http_node_accepts_is_defined() -> None:
    assert set(HttpRequest.credential_types) <= set(credential_types())


@pytest.mark.parametrize(("type_name", "secrets"), SECRETS.items())
def test_schemas_mark_exactly_the_secret_fields(type_name: str, secrets: set[str]) -> None:
    kind = credential_type(type_name)
    schema = kind.json_schema()
    marked = {
        name
        for name, field in schema["properties"].items()
        if field.get("writeOnly") is True and field.get("format") == "password"
    }
    assert marked == secrets == kind.secret_fields
    assert schema["title"] == kind.display_name
    assert schema["additionalProperties"] is False


def test_schemas_use_the_field_names_the_http_node_reads() -> None:
    assert set(credential_type("oAuth2Api").json_schema()["properties"]) == {
        "grantType",
        "accessTokenUrl",
        "clientId",
        "clientSecret",
        "scope",
        "authentication",
    }
    assert set(credential_type("httpHeaderAuth").json_schema()["properties"]) == {"name", "value"}


@pytest.mark.parametrize(
    ("type_name", "values", "normalised"),
    [
        ("httpBasicAuth", {"user": "sk_live_key"}, {"user": "sk_live_key", "password": ""}),
        (
            "httpHeaderAuth",
            {"name": "X-API-Key", "value": "k"},
            {"name": "X-API-Key", "value": "k"},
        ),
        ("httpQueryAuth", {"name": "api key", "value": "k"}, {"name": "api key", "value": "k"}),
        ("httpBearerAuth", {"token": "t"}, {"token": "t"}),
        (
            "oAuth2Api",
            {"accessTokenUrl": "https://idp.example/token", "clientId": "c", "clientSecret": "s"},
            {
                "grantType": "clientCredentials",
                "accessTokenUrl": "https://idp.example/token",
                "clientId": "c",
                "clientSecret": "s",
                "scope": "",
                "authentication": "header",
            },
        ),
    ],
)
def test_valid_values_come_back_with_defaults_filled_in(
    type_name: str, values: dict[str, Any], normalised: dict[str, Any]
) -> None:
    assert validate(type_name, values) == normalised


def test_every_bad_field_is_named_by_its_path() -> None:
    values = {
        "grantType": "authorizationCode",
        "accessTokenUrl": "ftp://idp.example/token",
        "clientSecret": "",
        "authentication": "query",
        "clientSecretTypo": "hunter2-hunter2",
    }
    with pytest.raises(InvalidInput) as refused:
        validate("oAuth2Api", values)
    assert refused.value.problems == {
        "grantType": "Input should be 'clientCredentials'",
        "accessTokenUrl": "must be an http:// or https:// URL",
        "clientId": "is required",
        "clientSecret": "is required",
        "authentication": "Input should be 'header' or 'body'",
        "clientSecretTypo": "is not a field of this credential type",
    }
    assert "hunter2" not in str(refused.value)


def test_header_credentials_cannot_smuggle_other_headers() -> None:
    with pytest.raises(InvalidInput) as refused:
        validate("httpHeaderAuth", {"name": "Authorization: Bearer", "value": "a\r\nX-Admin: 1"})
    assert set(refused.value.problems) == {"name", "value"}
    assert "X-Admin" not in str(refused.value)


def test_a_value_of_the_wrong_type_is_refused_without_repeating_it() -> None:
    with pytest.raises(InvalidInput) as refused:
        validate("httpBearerAuth", {"token": 123456789012345})
    assert refused.value.problems == {"token": "Input should be a valid string"}


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(InvalidInput) as refused:
        validate("smtp", {})
    assert refused.value.problems == {"type": "unknown credential type 'smtp'"}
    with pytest.raises(UnknownCredentialType):
        masked("smtp", {})


@pytest.mark.parametrize(
    ("secret", "hint"),
    [
        ("abcdefgh1234", "••••1234"),  # 12 characters: the last 4 may show
        ("a-long-api-key-9876", "••••9876"),
        ("abcdefg1234", "••••"),  # 11 characters: nothing shows
        ("x", "••••"),
        ("", ""),  # not set
    ],
)
def test_secrets_are_masked(secret: str, hint: str) -> None:
    assert masked("httpBasicAuth", {"user": "ada", "password": secret}) == {
        "user": "ada",
        "password": hint,
    }


def test_masking_shows_only_known_fields_and_non_secrets_as_they_are() -> None:
    values = validate(
        "oAuth2Api",
        {"accessTokenUrl": "https://idp/t", "clientId": "app", "clientSecret": "s" * 40},
    )
    shown = masked("oAuth2Api", {**values, "stray": "leak-me"})
    assert shown == {
        "grantType": "clientCredentials",
        "accessTokenUrl": "https://idp/t",
        "clientId": "app",
        "clientSecret": "••••ssss",
        "scope": "",
        "authentication": "header",
    }


def test_secret_values_stay_out_of_reprs() -> None:
    fields = credential_type("httpBearerAuth").fields.model_validate({"token": "tok-abc-123"})
    assert "tok-abc-123" not in repr(fields)
