"""GraphQL pieces every subgraph shares: context, error types, health types, masking."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from starlette.requests import Request
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.dataloader import DataLoader
from strawberry.extensions import MaskErrors
from strawberry.types.unset import UNSET, UnsetType

from klikkflow.kit.auth import (
    MFA_ENROLMENT_ONLY,
    InvalidToken,
    JwksVerifier,
    Viewer,
    check_organization,
    find_organization,
    find_token,
)
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.health import StoreStatus
from klikkflow.kit.settings import AuthSettings

FEDERATION_VERSION = "2.9"
K = TypeVar("K")
V = TypeVar("V")


class PublicError(Exception):
    """An error whose message is safe to show in `errors` (everything else is masked)."""


class NotAuthenticated(PublicError):
    def __init__(self, reason: str = "authentication required") -> None:
        super().__init__(reason)


def _should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None:  # syntax and validation errors are about the client's query
        return False
    return not isinstance(original, PublicError)


def mask_errors() -> MaskErrors:
    return MaskErrors(should_mask_error=_should_mask, error_message="Internal server error")


@dataclass
class Context:
    """Per-request (or per-WebSocket) context. The viewer is established from the token
    before any resolver runs: at request start over HTTP, at `connection_init` over
    graphql-transport-ws (the token travels in its payload). A token used for another
    organization than its own (X-KlikkFlow-Organization) is refused like a bad one."""

    request: Request | WebSocket
    response: Any
    settings: AuthSettings
    state: Any
    connection_params: dict[str, Any] | None = None
    loaders: dict[str, Any] = field(default_factory=dict)
    token_error: str | None = None
    _viewer: Viewer | None = None

    async def authenticate(self, verifier: JwksVerifier) -> None:
        sources = (self.request.headers, self.connection_params)
        token = find_token(*sources)
        self._viewer, self.token_error = None, None
        if token is None:
            return
        try:
            viewer = await verifier.verify(token)
            check_organization(viewer, find_organization(*sources))
            self._viewer = viewer
        except InvalidToken as exc:
            self.token_error = str(exc)
            verifier.report_refusal(self.token_error, self.state.service_name)

    @property
    def viewer(self) -> Viewer | None:
        if self.token_error is not None:  # a bad credential is refused, not anonymous
            raise NotAuthenticated(f"invalid token: {self.token_error}")
        return self._viewer

    def loader(
        self, name: str, load: Callable[[Viewer, list[K]], Awaitable[list[V]]]
    ) -> DataLoader[K, V]:
        """This request's DataLoader `name`, batching `load` for the signed-in viewer."""
        if name not in self.loaders:
            viewer = self.require_viewer()

            async def batch(keys: list[K]) -> list[V]:
                return await load(viewer, keys)

            self.loaders[name] = DataLoader(load_fn=batch)
        found: DataLoader[K, V] = self.loaders[name]
        return found

    def require_viewer(self, *, enrolment_ok: bool = False) -> Viewer:
        viewer = self.viewer
        if viewer is None:
            raise NotAuthenticated()
        if MFA_ENROLMENT_ONLY in viewer.scopes and not enrolment_ok:
            raise NotAuthenticated(
                "your organization requires two-factor authentication: enrol first "
                "(startMfaEnrolment, confirmMfaEnrolment), then sign in again"
            )
        return viewer


class SubgraphGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI app with our context (settings, app state and the viewer)."""

    def __init__(self, schema: Any, settings: AuthSettings, **kwargs: Any) -> None:
        super().__init__(schema, keep_alive=True, keep_alive_interval=15, **kwargs)
        self.settings = settings
        self.verifier = JwksVerifier(settings)

    async def get_context(self, request: Request | WebSocket, response: Any) -> Context:
        context = Context(request, response, self.settings, request.app.state)
        await context.authenticate(self.verifier)
        return context

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        await context.authenticate(self.verifier)
        return UNSET


@strawberry.federation.interface(description="Every expected failure implements Error.")
class Error:
    message: str = strawberry.field(description="What went wrong, for a person to read.")


@strawberry.federation.type(shareable=True, description="A field that failed validation.")
class FieldError:
    path: str = strawberry.field(description="Dotted path of the offending field.")
    message: str = strawberry.field(description="Why the value was refused.")


@strawberry.federation.type(shareable=True, description="The input was refused.")
class ValidationError(Error):
    fields: list[FieldError] = strawberry.field(description="Every problem found, by field.")


def validation_error(exc: InvalidInput, message: str) -> ValidationError:
    """The schema's answer to a refused input: every problem, by field path."""
    fields = [FieldError(path=k, message=v) for k, v in exc.problems.items()]
    return ValidationError(message=message, fields=fields)


@strawberry.federation.type(shareable=True, description="No such object is visible to you.")
class NotFoundError(Error):
    id: strawberry.ID = strawberry.field(description="The id that was looked up.")


@strawberry.federation.type(shareable=True, description="Your role does not allow this.")
class ForbiddenError(Error):
    pass


@strawberry.federation.type(shareable=True, description="Where a page of a connection ends.")
class PageInfo:
    has_next_page: bool = strawberry.field(description="Whether another page follows.")
    end_cursor: str | None = strawberry.field(description="Pass as `after` for the next page.")


@strawberry.federation.type(shareable=True, description="A store a service depends on.")
class StoreHealth:
    name: str = strawberry.field(description="mongo, postgres or redis.")
    ok: bool = strawberry.field(description="Whether the store answered a ping.")
    latency_ms: float | None = strawberry.field(description="Ping round trip in milliseconds.")
    error: str | None = strawberry.field(description="Why the ping failed, if it did.")

    @classmethod
    def from_status(cls, status: StoreStatus) -> StoreHealth:
        return cls(name=status.name, ok=status.ok, latency_ms=status.latency_ms, error=status.error)


@strawberry.federation.type(shareable=True, description="Health of one subgraph service.")
class ServiceHealth:
    service: str = strawberry.field(description="The subgraph's name.")
    ok: bool = strawberry.field(description="True when every store it needs answers.")
    version: str = strawberry.field(description="The running KlikkFlow version.")
    stores: list[StoreHealth] = strawberry.field(description="Each store's status.")

    @classmethod
    def from_statuses(cls, service: str, statuses: list[StoreStatus]) -> ServiceHealth:
        from klikkflow import __version__

        return cls(
            service=service,
            ok=all(s.ok for s in statuses),
            version=__version__,
            stores=[StoreHealth.from_status(s) for s in statuses],
        )
