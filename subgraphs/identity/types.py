from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from klikkflow.kit.graphql import Error, NotFoundError, ValidationError
from subgraphs.identity.models import OrganizationDocument, UserDocument


@strawberry.federation.type(keys=["id"], description="A person who can sign in.")
class User:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    email: str = strawberry.field(description="Sign-in e-mail address, lower-case.")
    name: str = strawberry.field(description="Display name.")
    created_at: datetime = strawberry.field(description="When the account was created.")

    @classmethod
    def from_model(cls, m: UserDocument) -> User:
        return cls(id=strawberry.ID(str(m.id)), email=m.email, name=m.name, created_at=m.created_at)

    @classmethod
    async def resolve_reference(cls, info: strawberry.Info, id: strawberry.ID) -> User | None:
        from subgraphs.identity.loaders import user_loader

        found = await user_loader(info.context).load(str(id))
        return cls.from_model(found) if found else None


@strawberry.federation.type(keys=["id"], description="A tenant: owns workflows and members.")
class Organization:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    name: str = strawberry.field(description="Display name.")
    slug: str = strawberry.field(description="URL-safe unique name.")
    created_at: datetime = strawberry.field(description="When the organization was created.")

    @classmethod
    def from_model(cls, m: OrganizationDocument) -> Organization:
        return cls(id=strawberry.ID(str(m.id)), name=m.name, slug=m.slug, created_at=m.created_at)


@strawberry.input(description="A new account and its first organization.")
class SignUpInput:
    email: str = strawberry.field(description="E-mail address to sign in with.")
    name: str = strawberry.field(description="Display name.")
    password: str = strawberry.field(description="At least 10 characters.")
    organization_name: str = strawberry.field(description="Name of the first organization.")


@strawberry.input(description="Credentials to sign in with.")
class LogInInput:
    email: str = strawberry.field(description="E-mail address.")
    password: str = strawberry.field(description="Password.")


@strawberry.type(description="A signed-in session.")
class AuthPayload:
    access_token: str = strawberry.field(description="Bearer token for the Authorization header.")
    expires_in: int = strawberry.field(description="Seconds until the access token expires.")
    refresh_token: str = strawberry.field(
        description="Trade it for a new pair with refreshToken; it works once."
    )
    user: User = strawberry.field(description="The signed-in user.")
    organization: Organization = strawberry.field(description="The active organization.")
    role: str = strawberry.field(description="The user's role in that organization.")


@strawberry.type(description="E-mail or password is wrong (the answer never says which).")
class InvalidCredentialsError(Error):
    pass


@strawberry.type(description="A device you are signed in on.")
class Session:
    id: strawberry.ID = strawberry.field(description="Session id (revokeSession takes it).")
    created_at: datetime = strawberry.field(description="When you signed in.")
    last_used_at: datetime = strawberry.field(description="When its token was last refreshed.")
    expires_at: datetime = strawberry.field(description="When it ends unless refreshed.")
    user_agent: str = strawberry.field(description="The client that signed in.")
    current: bool = strawberry.field(description="Whether this request comes from it.")


@strawberry.input(description="A refresh token to trade for a new token pair.")
class RefreshTokenInput:
    refresh_token: str = strawberry.field(description="The refresh token last received.")


@strawberry.input(description="A session to end.")
class RevokeSessionInput:
    id: strawberry.ID = strawberry.field(description="The session's id.")


@strawberry.type(description="The refresh token is unknown, expired, revoked or spent.")
class InvalidTokenError(Error):
    pass


@strawberry.type(description="The session was ended.")
class RevokeSessionSuccess:
    id: strawberry.ID = strawberry.field(description="The ended session.")


SignUpResult = Annotated[
    AuthPayload | ValidationError, strawberry.union("SignUpResult", description="Sign-up outcome.")
]


@strawberry.type(description="Too many attempts for this account: wait, then try again.")
class TooManyAttemptsError(Error):
    retry_after_seconds: int = strawberry.field(description="Seconds to wait.")


LogInResult = Annotated[
    AuthPayload | InvalidCredentialsError | TooManyAttemptsError,
    strawberry.union("LogInResult", description="Log-in outcome."),
]
RefreshTokenResult = Annotated[
    AuthPayload | InvalidTokenError,
    strawberry.union("RefreshTokenResult", description="Refresh outcome."),
]
RevokeSessionResult = Annotated[
    RevokeSessionSuccess | NotFoundError,
    strawberry.union("RevokeSessionResult", description="Outcome of revokeSession."),
]
