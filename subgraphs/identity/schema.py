from __future__ import annotations

import strawberry

from klikkflow.kit.asgi import service_health
from klikkflow.kit.graphql import (
    FEDERATION_VERSION,
    FieldError,
    ServiceHealth,
    ValidationError,
    mask_errors,
)
from subgraphs.identity.loaders import user_loader
from subgraphs.identity.service import InvalidCredentials, InvalidInput, Session
from subgraphs.identity.service import identity as identity_service
from subgraphs.identity.types import (
    AuthPayload,
    InvalidCredentialsError,
    LogInInput,
    LogInResult,
    Organization,
    SignUpInput,
    SignUpResult,
    User,
)


def _payload(session: Session) -> AuthPayload:
    return AuthPayload(
        access_token=session.access_token,
        user=User.from_model(session.user),
        organization=Organization.from_model(session.organization),
        role=session.role,
    )


@strawberry.type
class Query:
    identity_health: ServiceHealth | None = strawberry.field(
        resolver=service_health, description="Health of the identity subgraph and its stores."
    )

    @strawberry.field(description="The signed-in user.")
    async def me(self, info: strawberry.Info) -> User | None:
        viewer = info.context.require_viewer()
        found = await user_loader(info.context).load(viewer.user_id)
        return User.from_model(found) if found else None

    @strawberry.field(description="A member of your organization, by id.")
    async def user(self, info: strawberry.Info, id: strawberry.ID) -> User | None:
        found = await user_loader(info.context).load(str(id))
        return User.from_model(found) if found else None

    @strawberry.field(description="Your organization, by id.")
    async def organization(self, info: strawberry.Info, id: strawberry.ID) -> Organization | None:
        viewer = info.context.require_viewer()
        found = await identity_service.organization(viewer, str(id))
        return Organization.from_model(found) if found else None


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Create an account with its first organization.")
    async def sign_up(self, info: strawberry.Info, input: SignUpInput) -> SignUpResult:
        try:
            session = await identity_service.sign_up(
                info.context.settings,
                input.email,
                input.name,
                input.password,
                input.organization_name,
            )
        except InvalidInput as exc:
            fields = [FieldError(path=k, message=v) for k, v in exc.problems.items()]
            return ValidationError(message="sign-up refused", fields=fields)
        return _payload(session)

    @strawberry.mutation(description="Sign in with e-mail and password.")
    async def log_in(self, info: strawberry.Info, input: LogInInput) -> LogInResult:
        try:
            session = await identity_service.log_in(
                info.context.settings, input.email, input.password
            )
        except InvalidCredentials:
            return InvalidCredentialsError(message="invalid e-mail or password")
        return _payload(session)


schema = strawberry.federation.Schema(
    query=Query,
    mutation=Mutation,
    types=[User, Organization],
    federation_version=FEDERATION_VERSION,
    extensions=[mask_errors],
)
