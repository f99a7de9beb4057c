"""Reading the router's answers to form submissions: union results and their errors."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from web.graphql_client import JSON, GraphQLResponse

# Selections of the error members of a mutation's result union. Every expected failure
# implements ``Error``; only unions that have a ValidationError may ask for its fields.
ERROR_MESSAGE = "... on Error { message }"
ERROR_FIELDS = ERROR_MESSAGE + " ... on ValidationError { fields { path message } }"


@dataclass
class Outcome:
    """One mutation's answer: the result object, or what to show next to the form."""

    typename: str | None = None
    result: JSON = field(default_factory=dict)
    message: str | None = None  # a form-level error
    fields: dict[str, str] = field(default_factory=dict)  # input field -> its error

    @property
    def ok(self) -> bool:
        return self.message is None and not self.fields

    def other_fields(self, *shown: str) -> dict[str, str]:
        """Field errors the form has no input for, to list in its banner."""
        return {k: v for k, v in self.fields.items() if k not in shown}

    def get(self, key: str, default: Any = None) -> Any:
        return self.result.get(key, default)


def outcome(response: GraphQLResponse, root_field: str, *success: str) -> Outcome:
    """Read ``root_field`` of a mutation whose result is a union; ``success`` lists the
    typenames that mean it worked. Any other member is an error with a ``message``."""
    result = (response.data or {}).get(root_field)
    if not isinstance(result, dict):
        return Outcome(message=error_text(response) or "The request failed.")
    typename = str(result.get("__typename") or "")
    if typename in success or (not success and not typename.endswith("Error")):
        return Outcome(typename, result)
    fields = {
        str(f.get("path", "")).split(".")[-1]: str(f.get("message", ""))
        for f in result.get("fields") or []
        if isinstance(f, dict)
    }
    message = str(result.get("message") or "The request was refused.")
    return Outcome(typename, result, message=message, fields=fields)


def error_text(response: GraphQLResponse) -> str:
    """The router's top-level error messages, for a banner."""
    return "; ".join(str(e.get("message") or e) for e in response.errors)
