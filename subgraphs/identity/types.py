from __future__ import annotations

from datetime import datetime
from typing import Annotated, cast

import strawberry
from strawberry.scalars import JSON

from klikkflow.kit.graphql import Error, ForbiddenError, NotFoundError, PageInfo, ValidationError
from subgraphs.identity.api_keys import ApiKeyDocument
from subgraphs.identity.audit import AuditEntryDocument, AuditFilter, encode_cursor
from subgraphs.identity.models import OrganizationDocument, UserDocument
from subgraphs.identity.saml import SamlConfigDocument
from subgraphs.identity.sso import OidcConfigDocument


@strawberry.federation.type(keys=["id"], description="A person who can sign in.")
class User:
    id: strawberry.ID = strawberry.field(description="Stable identifier.")
    email: str = strawberry.field(description="Sign-in e-mail address, lower-case.")
    name: str = strawberry.field(description="Display name.")
    created_at: datetime = strawberry.field(description="When the account was created.")
    email_verified: bool = strawberry.field(description="Whether the address was confirmed.")
    mfa: strawberry.Private[bool] = False

    @strawberry.field(description="Whether MFA is on; told only to the user themself.")
    def mfa_enabled(self, info: strawberry.Info) -> bool | None:
        viewer = info.context.viewer
        return self.mfa if viewer is not None and viewer.user_id == str(self.id) else None

    @classmethod
    def from_model(cls, m: UserDocument) -> User:
        return cls(
            id=strawberry.ID(str(m.id)),
            email=m.email,
            name=m.name,
            created_at=m.created_at,
            email_verified=m.email_verified_at is not None,
            mfa=m.mfa.enabled,
        )

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
    require_mfa: bool = strawberry.field(description="Whether members must use MFA.")

    @classmethod
    def from_model(cls, m: OrganizationDocument) -> Organization:
        return cls(
            id=strawberry.ID(str(m.id)),
            name=m.name,
            slug=m.slug,
            created_at=m.created_at,
            require_mfa=m.require_mfa,
        )


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


@strawberry.type(description="One event in your organization's tamper-evident audit log.")
class AuditEntry:
    seq: int = strawberry.field(description="Position in the organization's chain, from 1.")
    at: datetime = strawberry.field(description="When it happened (UTC).")
    actor_kind: str = strawberry.field(description="user, api_key, system or anonymous.")
    actor_id: str | None = strawberry.field(description="The user or API key that acted.")
    action: str = strawberry.field(description="What happened, e.g. auth.login.failed.")
    target_kind: str | None = strawberry.field(description="Kind of object acted on.")
    target_id: str | None = strawberry.field(description="Id of the object acted on.")
    ip: str | None = strawberry.field(description="Client address, when known.")
    data: JSON = strawberry.field(description="Details of the event (never secrets).")
    prev_hash: str = strawberry.field(description="The previous entry's hash (hex).")
    hash: str = strawberry.field(description="This entry's HMAC-SHA256 chain hash (hex).")

    @classmethod
    def from_model(cls, m: AuditEntryDocument) -> AuditEntry:
        return cls(
            seq=m.seq,
            at=m.at,
            actor_kind=m.actor_kind,
            actor_id=m.actor_id,
            action=m.action,
            target_kind=m.target_kind,
            target_id=m.target_id,
            ip=m.ip,
            data=cast(JSON, m.data),
            prev_hash=m.prev_hash,
            hash=m.hash,
        )


@strawberry.type(description="An audit entry and its cursor.")
class AuditEntryEdge:
    cursor: str = strawberry.field(description="Pass as `after` to continue after this entry.")
    node: AuditEntry = strawberry.field(description="The entry.")


@strawberry.type(description="A page of audit entries, newest first.")
class AuditEntryConnection:
    edges: list[AuditEntryEdge] = strawberry.field(description="The entries of this page.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")

    @classmethod
    def from_page(
        cls, entries: list[AuditEntryDocument], next_cursor: str | None
    ) -> AuditEntryConnection:
        edges = [
            AuditEntryEdge(cursor=encode_cursor(e.seq), node=AuditEntry.from_model(e))
            for e in entries
        ]
        return cls(
            edges=edges,
            page_info=PageInfo(has_next_page=next_cursor is not None, end_cursor=next_cursor),
        )


@strawberry.input(description="Which audit entries to list.")
class AuditLogFilter:
    actions: list[str] | None = strawberry.field(
        default=None, description='Only these actions, e.g. ["auth.login.failed"].'
    )
    actor_id: str | None = strawberry.field(default=None, description="Only this actor's.")
    since: datetime | None = strawberry.field(default=None, description="At or after (UTC).")
    until: datetime | None = strawberry.field(default=None, description="Before (UTC).")

    def to_domain(self) -> AuditFilter:
        return AuditFilter(self.actions, self.actor_id, self.since, self.until)


SignUpResult = Annotated[
    AuthPayload | ValidationError, strawberry.union("SignUpResult", description="Sign-up outcome.")
]


@strawberry.type(
    description="Too many attempts for this account or from this address: wait, then try again."
)
class TooManyAttemptsError(Error):
    retry_after_seconds: int = strawberry.field(description="Seconds to wait.")


@strawberry.type(description="The password was right; send the second factor to verifyMfa.")
class MfaRequired:
    challenge: str = strawberry.field(description="Pass to verifyMfa with the code.")
    expires_in: int = strawberry.field(description="Seconds the challenge stays valid.")


@strawberry.input(description="The second factor of a log-in.")
class VerifyMfaInput:
    challenge: str = strawberry.field(description="From MfaRequired.")
    code: str = strawberry.field(description="A 6-digit app code or a recovery code.")


@strawberry.type(description="Scan the QR code (or type the secret) into an authenticator.")
class MfaEnrolment:
    secret: str = strawberry.field(description="The TOTP secret, base32; shown once.")
    otpauth_uri: str = strawberry.field(description="otpauth:// URI the QR code encodes.")
    qr_svg: str = strawberry.field(description="The QR code as inline SVG.")


@strawberry.input(description="A code from the authenticator app (or a recovery code).")
class MfaCodeInput:
    code: str = strawberry.field(description="The code.")


@strawberry.type(description="MFA is on; keep these one-time recovery codes safe.")
class MfaEnabled:
    recovery_codes: list[str] = strawberry.field(description="Shown once, each works once.")


@strawberry.type(description="MFA is off.")
class MfaDisabled:
    ok: bool = strawberry.field(description="Always true.")


@strawberry.type(description="The code is wrong, expired or already used.")
class InvalidCodeError(Error):
    pass


@strawberry.type(description="An API key (its secret is shown only when created).")
class ApiKey:
    id: strawberry.ID = strawberry.field(description="Key id.")
    name: str = strawberry.field(description="What it is for.")
    prefix: str = strawberry.field(description="Visible start of the key, e.g. kf_1a2b3c4d.")
    role: str = strawberry.field(description="The role it acts with.")
    created_at: datetime = strawberry.field(description="When it was created.")
    expires_at: datetime | None = strawberry.field(description="When it stops working.")
    last_used_at: datetime | None = strawberry.field(description="Last use (minute precision).")
    revoked: bool = strawberry.field(description="Whether it was revoked.")

    @classmethod
    def from_model(cls, m: ApiKeyDocument) -> ApiKey:
        return cls(
            id=strawberry.ID(str(m.id)),
            name=m.name,
            prefix=m.prefix,
            role=m.role,
            created_at=m.created_at,
            expires_at=m.expires_at,
            last_used_at=m.last_used_at,
            revoked=m.revoked_at is not None,
        )


@strawberry.input(description="A new API key for your organization.")
class CreateApiKeyInput:
    name: str = strawberry.field(description="What it is for.")
    role: str = strawberry.field(description="owner, admin, editor or viewer (at most yours).")
    expires_in_days: int | None = strawberry.field(
        default=None, description="Lifetime in days; none means until revoked."
    )


@strawberry.type(description="The key was created: copy the secret now, it is not shown again.")
class CreateApiKeySuccess:
    api_key: ApiKey = strawberry.field(description="The key's details.")
    secret: str = strawberry.field(description="The whole key, for Authorization: Bearer.")


@strawberry.input(description="An API key to revoke.")
class RevokeApiKeyInput:
    id: strawberry.ID = strawberry.field(description="The key's id.")


@strawberry.type(description="The key was revoked.")
class RevokeApiKeySuccess:
    id: strawberry.ID = strawberry.field(description="The revoked key.")


LogInResult = Annotated[
    AuthPayload | MfaRequired | InvalidCredentialsError | TooManyAttemptsError,
    strawberry.union("LogInResult", description="Log-in outcome."),
]
RefreshTokenResult = Annotated[
    AuthPayload | InvalidTokenError | TooManyAttemptsError,
    strawberry.union("RefreshTokenResult", description="Refresh outcome."),
]
RevokeSessionResult = Annotated[
    RevokeSessionSuccess | NotFoundError,
    strawberry.union("RevokeSessionResult", description="Outcome of revokeSession."),
]
VerifyMfaResult = Annotated[
    AuthPayload | InvalidCodeError | TooManyAttemptsError,
    strawberry.union("VerifyMfaResult", description="Outcome of verifyMfa."),
]
ConfirmMfaResult = Annotated[
    MfaEnabled | InvalidCodeError,
    strawberry.union("ConfirmMfaResult", description="Outcome of confirmMfaEnrolment."),
]
DisableMfaResult = Annotated[
    MfaDisabled | InvalidCodeError,
    strawberry.union("DisableMfaResult", description="Outcome of disableMfa."),
]
CreateApiKeyResult = Annotated[
    CreateApiKeySuccess | ValidationError | ForbiddenError,
    strawberry.union("CreateApiKeyResult", description="Outcome of createApiKey."),
]
RevokeApiKeyResult = Annotated[
    RevokeApiKeySuccess | NotFoundError | ForbiddenError,
    strawberry.union("RevokeApiKeyResult", description="Outcome of revokeApiKey."),
]


@strawberry.type(description="A member of your organization.")
class Member:
    user: User = strawberry.field(description="The person.")
    role: str = strawberry.field(description="owner, admin, editor or viewer.")
    joined_at: datetime = strawberry.field(description="When they joined.")


@strawberry.type(description="An organization you belong to.")
class OrganizationMembership:
    organization: Organization = strawberry.field(description="The organization.")
    role: str = strawberry.field(description="Your role there.")


@strawberry.type(description="An invitation sent by e-mail.")
class Invitation:
    id: strawberry.ID = strawberry.field(description="Invitation id.")
    email: str = strawberry.field(description="Who was invited.")
    role: str = strawberry.field(description="The role they get.")
    expires_at: datetime = strawberry.field(description="When the link stops working.")


@strawberry.input(description="Invite someone by e-mail.")
class InviteMemberInput:
    email: str = strawberry.field(description="Their e-mail address.")
    role: str = strawberry.field(description="The role they get (at most yours).")


@strawberry.type(description="The invitation was sent.")
class InviteMemberSuccess:
    invitation: Invitation = strawberry.field(description="The invitation.")


@strawberry.input(description="Accept an invitation from its e-mail link.")
class AcceptInvitationInput:
    token: str = strawberry.field(description="The token from the link.")
    password: str = strawberry.field(description="Your password (a new one if you are new).")
    name: str = strawberry.field(default="", description="Your name, if you are new here.")


@strawberry.input(description="Change a member's role.")
class ChangeMemberRoleInput:
    user_id: strawberry.ID = strawberry.field(description="The member.")
    role: str = strawberry.field(description="The new role.")


@strawberry.type(description="The role was changed.")
class ChangeMemberRoleSuccess:
    member: Member = strawberry.field(description="The member, as now.")


@strawberry.input(description="Remove a member from your organization.")
class RemoveMemberInput:
    user_id: strawberry.ID = strawberry.field(description="The member.")


@strawberry.type(description="The member was removed and their sessions ended.")
class RemoveMemberSuccess:
    user_id: strawberry.ID = strawberry.field(description="Who was removed.")


@strawberry.input(description="Act in another organization you belong to.")
class SwitchOrganizationInput:
    organization_id: strawberry.ID = strawberry.field(description="The organization.")


InviteMemberResult = Annotated[
    InviteMemberSuccess | ValidationError | ForbiddenError,
    strawberry.union("InviteMemberResult", description="Outcome of inviteMember."),
]
AcceptInvitationResult = Annotated[
    AuthPayload | ValidationError | InvalidTokenError,
    strawberry.union("AcceptInvitationResult", description="Outcome of acceptInvitation."),
]
ChangeMemberRoleResult = Annotated[
    ChangeMemberRoleSuccess | ValidationError | ForbiddenError,
    strawberry.union("ChangeMemberRoleResult", description="Outcome of changeMemberRole."),
]
RemoveMemberResult = Annotated[
    RemoveMemberSuccess | ValidationError | ForbiddenError,
    strawberry.union("RemoveMemberResult", description="Outcome of removeMember."),
]
SwitchOrganizationResult = Annotated[
    AuthPayload | ValidationError | ForbiddenError,
    strawberry.union("SwitchOrganizationResult", description="Outcome of switchOrganization."),
]


@strawberry.input(description="Ask for a password-reset link by e-mail.")
class RequestPasswordResetInput:
    email: str = strawberry.field(description="The account's address.")


@strawberry.input(description="Set a new password with the link's token.")
class ResetPasswordInput:
    token: str = strawberry.field(description="From the mailed link.")
    password: str = strawberry.field(description="The new password.")


@strawberry.type(description="The password was changed; every session was signed out.")
class ResetPasswordSuccess:
    ok: bool = strawberry.field(description="Always true.")


@strawberry.input(description="Confirm an e-mail address with the link's token.")
class VerifyEmailInput:
    token: str = strawberry.field(description="From the mailed link.")


@strawberry.type(description="The address is confirmed.")
class VerifyEmailSuccess:
    user: User = strawberry.field(description="The account.")


@strawberry.type(description="If the address has an account, a reset link is on its way.")
class RequestPasswordResetSuccess:
    ok: bool = strawberry.field(description="Always true, whether or not the address is known.")


RequestPasswordResetResult = Annotated[
    RequestPasswordResetSuccess | TooManyAttemptsError,
    strawberry.union("RequestPasswordResetResult", description="Outcome of requestPasswordReset."),
]
ResetPasswordResult = Annotated[
    ResetPasswordSuccess | ValidationError | InvalidTokenError,
    strawberry.union("ResetPasswordResult", description="Outcome of resetPassword."),
]
VerifyEmailResult = Annotated[
    VerifyEmailSuccess | InvalidTokenError,
    strawberry.union("VerifyEmailResult", description="Outcome of verifyEmail."),
]


@strawberry.input(description="Your organization's security settings.")
class UpdateOrganizationSecurityInput:
    require_mfa: bool = strawberry.field(description="Require two-factor log-in of members.")


UpdateOrganizationSecurityResult = Annotated[
    Organization | ForbiddenError,
    strawberry.union(
        "UpdateOrganizationSecurityResult", description="Outcome of updateOrganizationSecurity."
    ),
]


@strawberry.input(description="Your organization's OpenID Connect provider.")
class ConfigureOidcInput:
    issuer: str = strawberry.field(description="The provider's issuer URL.")
    client_id: str = strawberry.field(description="Client id registered at the provider.")
    client_secret: str = strawberry.field(description="Client secret (stored sealed).")
    role_claim: str = strawberry.field(default="groups", description="Claim that maps roles.")
    role_mapping: JSON = strawberry.field(
        default_factory=dict, description='Claim value -> role, e.g. {"admins": "admin"}.'
    )
    default_role: str = strawberry.field(default="viewer", description="Role when none maps.")
    allowed_domains: list[str] = strawberry.field(
        default_factory=list, description="E-mail domains allowed to sign in (empty: any)."
    )


@strawberry.type(description="Single sign-on settings (the secret is never shown).")
class OidcConfig:
    issuer: str = strawberry.field(description="The provider's issuer URL.")
    client_id: str = strawberry.field(description="Client id.")
    role_claim: str = strawberry.field(description="Claim that maps roles.")
    default_role: str = strawberry.field(description="Role when none maps.")
    allowed_domains: list[str] = strawberry.field(description="Allowed e-mail domains.")
    role_mapping: JSON = strawberry.field(description="Claim value -> role.")
    updated_at: datetime = strawberry.field(description="When the settings last changed.")

    @classmethod
    def from_model(cls, m: OidcConfigDocument) -> OidcConfig:
        return cls(
            issuer=m.issuer,
            client_id=m.client_id,
            role_claim=m.role_claim,
            default_role=m.default_role,
            allowed_domains=list(m.allowed_domains),
            role_mapping=cast(JSON, dict(m.role_mapping)),
            updated_at=m.updated_at,
        )


@strawberry.input(description="Begin signing in through your organization's provider.")
class StartOidcLoginInput:
    organization_slug: str = strawberry.field(description="The organization's slug.")
    redirect_uri: str = strawberry.field(description="Where the provider sends the code.")


@strawberry.type(description="Send the browser here.")
class OidcLoginStart:
    authorization_url: str = strawberry.field(description="The provider's sign-in page.")


@strawberry.input(description="Finish signing in with what the provider sent back.")
class CompleteOidcLoginInput:
    state: str = strawberry.field(description="The state parameter.")
    code: str = strawberry.field(description="The authorization code.")


@strawberry.type(description="Single sign-on failed.")
class SsoError(Error):
    pass


ConfigureOidcResult = Annotated[
    OidcConfig | ValidationError | ForbiddenError,
    strawberry.union("ConfigureOidcResult", description="Outcome of configureOidc."),
]
StartOidcLoginResult = Annotated[
    OidcLoginStart | SsoError,
    strawberry.union("StartOidcLoginResult", description="Outcome of startOidcLogin."),
]
CompleteOidcLoginResult = Annotated[
    AuthPayload | SsoError,
    strawberry.union("CompleteOidcLoginResult", description="Outcome of completeOidcLogin."),
]


@strawberry.input(description="Your organization's SAML 2.0 identity provider.")
class ConfigureSamlInput:
    idp_entity_id: str = strawberry.field(description="The provider's entity id.")
    idp_sso_url: str = strawberry.field(description="Its single sign-on URL (HTTP-Redirect).")
    idp_certificate: str = strawberry.field(description="Its signing certificate, PEM.")
    role_attribute: str = strawberry.field(default="groups", description="Attribute for roles.")
    email_attribute: str = strawberry.field(default="email", description="Attribute for e-mail.")
    role_mapping: JSON = strawberry.field(
        default_factory=dict, description='Attribute value -> role, e.g. {"admins": "admin"}.'
    )
    default_role: str = strawberry.field(default="viewer", description="Role when none maps.")
    allowed_domains: list[str] = strawberry.field(
        default_factory=list, description="E-mail domains allowed to sign in (empty: any)."
    )


@strawberry.type(description="SAML settings, and what to register at the provider.")
class SamlConfig:
    idp_entity_id: str = strawberry.field(description="The provider's entity id.")
    idp_sso_url: str = strawberry.field(description="Its single sign-on URL.")
    email_attribute: str = strawberry.field(description="Attribute for e-mail.")
    role_attribute: str = strawberry.field(description="Attribute for roles.")
    role_mapping: JSON = strawberry.field(description="Attribute value -> role.")
    default_role: str = strawberry.field(description="Role when none maps.")
    allowed_domains: list[str] = strawberry.field(description="Allowed e-mail domains.")
    updated_at: datetime = strawberry.field(description="When the settings last changed.")
    sp_entity_id: str = strawberry.field(description="Our entity id (audience).")
    acs_url: str = strawberry.field(description="Our assertion consumer service URL.")

    @classmethod
    def from_model(cls, m: SamlConfigDocument, sp_entity_id: str, acs_url: str) -> SamlConfig:
        return cls(
            idp_entity_id=m.idp_entity_id,
            idp_sso_url=m.idp_sso_url,
            email_attribute=m.email_attribute,
            role_attribute=m.role_attribute,
            role_mapping=cast(JSON, dict(m.role_mapping)),
            default_role=m.default_role,
            allowed_domains=list(m.allowed_domains),
            updated_at=m.updated_at,
            sp_entity_id=sp_entity_id,
            acs_url=acs_url,
        )


@strawberry.input(description="Begin a SAML sign-in.")
class StartSamlLoginInput:
    organization_slug: str = strawberry.field(description="The organization's slug.")


@strawberry.type(description="Send the browser here.")
class SamlLoginStart:
    redirect_url: str = strawberry.field(description="The provider URL with the request.")


@strawberry.input(description="Finish a SAML sign-in with the posted response.")
class CompleteSamlLoginInput:
    organization_slug: str = strawberry.field(description="From RelayState.")
    saml_response: str = strawberry.field(description="The SAMLResponse form field (base64).")


ConfigureSamlResult = Annotated[
    SamlConfig | ValidationError | ForbiddenError,
    strawberry.union("ConfigureSamlResult", description="Outcome of configureSaml."),
]
StartSamlLoginResult = Annotated[
    SamlLoginStart | SsoError,
    strawberry.union("StartSamlLoginResult", description="Outcome of startSamlLogin."),
]
CompleteSamlLoginResult = Annotated[
    AuthPayload | SsoError,
    strawberry.union("CompleteSamlLoginResult", description="Outcome of completeSamlLogin."),
]


@strawberry.input(description="An invitation to withdraw.")
class RevokeInvitationInput:
    id: strawberry.ID = strawberry.field(description="The invitation's id.")


@strawberry.type(description="The invitation was withdrawn; its link no longer works.")
class RevokeInvitationSuccess:
    id: strawberry.ID = strawberry.field(description="The withdrawn invitation.")


RevokeInvitationResult = Annotated[
    RevokeInvitationSuccess | NotFoundError | ForbiddenError,
    strawberry.union("RevokeInvitationResult", description="Outcome of revokeInvitation."),
]
