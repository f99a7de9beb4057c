from __future__ import annotations

import logging
import math

import strawberry
from strawberry.tools import merge_types

from klikkflow.kit.asgi import service_health
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput, NotAllowed
from klikkflow.kit.forwarded import FORWARDED_FOR, client_address
from klikkflow.kit.graphql import (
    FEDERATION_VERSION,
    ForbiddenError,
    NotFoundError,
    PublicError,
    ServiceHealth,
    mask_errors,
    validation_error,
)
from klikkflow.kit.mail import MailNotSent
from subgraphs.identity import audit, mfa
from subgraphs.identity.api_keys import ApiKeysForbidden
from subgraphs.identity.api_keys import api_keys as api_key_service
from subgraphs.identity.loaders import user_loader
from subgraphs.identity.members import InvitationInvalid
from subgraphs.identity.members import members as member_service
from subgraphs.identity.recovery import LinkInvalid, recovery
from subgraphs.identity.saml import SamlConfigDocument, acs_url, saml, sp_entity_id
from subgraphs.identity.service import (
    Client,
    InvalidCredentials,
    InvalidRefreshToken,
    MfaPending,
    TooManyAttempts,
)
from subgraphs.identity.service import Session as SignedIn
from subgraphs.identity.service import identity as identity_service
from subgraphs.identity.sso import SsoFailed, oidc
from subgraphs.identity.types import (
    AcceptInvitationInput,
    AcceptInvitationResult,
    ApiKey,
    AuditEntryConnection,
    AuditLogFilter,
    AuthPayload,
    ChangeMemberRoleInput,
    ChangeMemberRoleResult,
    ChangeMemberRoleSuccess,
    CompleteOidcLoginInput,
    CompleteOidcLoginResult,
    CompleteSamlLoginInput,
    CompleteSamlLoginResult,
    ConfigureOidcInput,
    ConfigureOidcResult,
    ConfigureSamlInput,
    ConfigureSamlResult,
    ConfirmMfaResult,
    CreateApiKeyInput,
    CreateApiKeyResult,
    CreateApiKeySuccess,
    DisableMfaResult,
    InvalidCodeError,
    InvalidCredentialsError,
    InvalidTokenError,
    Invitation,
    InviteMemberInput,
    InviteMemberResult,
    InviteMemberSuccess,
    LogInInput,
    LogInResult,
    Member,
    MfaCodeInput,
    MfaDisabled,
    MfaEnabled,
    MfaEnrolment,
    MfaRequired,
    OidcConfig,
    OidcLoginStart,
    Organization,
    OrganizationMembership,
    RefreshTokenInput,
    RefreshTokenResult,
    RemoveMemberInput,
    RemoveMemberResult,
    RemoveMemberSuccess,
    RequestPasswordResetInput,
    RequestPasswordResetResult,
    RequestPasswordResetSuccess,
    ResetPasswordInput,
    ResetPasswordResult,
    ResetPasswordSuccess,
    RevokeApiKeyInput,
    RevokeApiKeyResult,
    RevokeApiKeySuccess,
    RevokeInvitationInput,
    RevokeInvitationResult,
    RevokeInvitationSuccess,
    RevokeSessionInput,
    RevokeSessionResult,
    RevokeSessionSuccess,
    SamlConfig,
    SamlLoginStart,
    Session,
    SignUpInput,
    SignUpResult,
    SsoError,
    StartOidcLoginInput,
    StartOidcLoginResult,
    StartSamlLoginInput,
    StartSamlLoginResult,
    SwitchOrganizationInput,
    SwitchOrganizationResult,
    TooManyAttemptsError,
    UpdateOrganizationSecurityInput,
    UpdateOrganizationSecurityResult,
    User,
    VerifyEmailInput,
    VerifyEmailResult,
    VerifyEmailSuccess,
    VerifyMfaInput,
    VerifyMfaResult,
)

log = logging.getLogger("klikkflow.identity")


def _payload(session: SignedIn) -> AuthPayload:
    return AuthPayload(
        access_token=session.access_token,
        expires_in=session.expires_in,
        refresh_token=session.refresh_token,
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
        viewer = info.context.require_viewer(enrolment_ok=True)
        # Not through the request's user loader: that one is for full tokens only, and a
        # token that may only enrol must still be able to say who it belongs to.
        [found] = await identity_service.users(viewer, [viewer.user_id])
        return User.from_model(found) if found else None

    @strawberry.field(description="Your organization's API keys (owners and admins).")
    async def api_keys(self, info: strawberry.Info) -> list[ApiKey]:
        viewer = info.context.require_viewer()
        try:
            found = await api_key_service.list(viewer)
        except ApiKeysForbidden as exc:
            raise PublicError(str(exc)) from exc
        return [ApiKey.from_model(k) for k in found]

    @strawberry.field(description="Your active sessions, most recently used first.")
    async def sessions(self, info: strawberry.Info) -> list[Session]:
        viewer = info.context.require_viewer()
        return [
            Session(
                id=strawberry.ID(str(s.id)),
                created_at=s.created_at,
                last_used_at=s.last_used_at,
                expires_at=s.expires_at,
                user_agent=s.user_agent,
                current=str(s.id) == viewer.session_id,
            )
            for s in await identity_service.sessions(viewer)
        ]

    @strawberry.field(description="A member of your organization, by id.")
    async def user(self, info: strawberry.Info, id: strawberry.ID) -> User | None:
        found = await user_loader(info.context).load(str(id))
        return User.from_model(found) if found else None

    @strawberry.field(description="Your organization, by id.")
    async def organization(self, info: strawberry.Info, id: strawberry.ID) -> Organization | None:
        viewer = info.context.require_viewer()
        found = await identity_service.organization(viewer, str(id))
        return Organization.from_model(found) if found else None

    @strawberry.field(
        description="Your organization's audit log, newest first. Owners and admins only."
    )
    async def audit_log(
        self,
        info: strawberry.Info,
        first: int = 50,
        after: str | None = None,
        filter: AuditLogFilter | None = None,
    ) -> AuditEntryConnection:
        viewer = info.context.require_viewer()
        log = audit.audit_log(info.context.settings)
        try:
            entries, next_cursor = await log.page(
                viewer, first, after, filter.to_domain() if filter else None
            )
        except audit.AuditAccessDenied as exc:
            raise PublicError("only owners and admins can read the audit log") from exc
        except audit.InvalidAuditCursor as exc:
            raise PublicError("invalid cursor") from exc
        return AuditEntryConnection.from_page(entries, next_cursor)


async def _send_verification(info: strawberry.Info, session: SignedIn) -> None:
    try:
        await recovery.send_verification(info.context.settings, session.user)
    except MailNotSent:  # the account stands; the user can ask for another link
        log.exception("verification mail not sent")


def _client(info: strawberry.Info) -> Client:
    """Who is asking: the address behind our trusted proxies (router, dashboard)."""
    request = info.context.request
    peer = request.client.host if request.client else ""
    trusted = info.context.state.trusted_proxies
    ip = client_address(peer, request.headers.get(FORWARDED_FOR), trusted) if peer else ""
    return Client(user_agent=request.headers.get("user-agent", ""), ip=ip)


def _too_many(exc: TooManyAttempts) -> TooManyAttemptsError:
    return TooManyAttemptsError(
        message=str(exc), retry_after_seconds=max(1, math.ceil(exc.retry_after))
    )


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
                _client(info),
            )
            await _send_verification(info, session)
        except InvalidInput as exc:
            return validation_error(exc, "sign-up refused")
        return _payload(session)

    @strawberry.mutation(description="Sign in with e-mail and password.")
    async def log_in(self, info: strawberry.Info, input: LogInInput) -> LogInResult:
        try:
            session = await identity_service.log_in(
                info.context.settings, input.email, input.password, _client(info)
            )
            if isinstance(session, MfaPending):
                return MfaRequired(challenge=session.challenge, expires_in=session.expires_in)
        except InvalidCredentials:
            return InvalidCredentialsError(message="invalid e-mail or password")
        except TooManyAttempts as exc:
            return _too_many(exc)
        return _payload(session)

    @strawberry.mutation(description="Finish a log-in that needs a second factor.")
    async def verify_mfa(self, info: strawberry.Info, input: VerifyMfaInput) -> VerifyMfaResult:
        try:
            session = await identity_service.verify_mfa(
                info.context.settings, input.challenge, input.code, _client(info)
            )
        except InvalidCredentials:
            return InvalidCodeError(message="invalid or expired code")
        except TooManyAttempts:
            return TooManyAttemptsError(
                message="too many wrong codes: log in again", retry_after_seconds=1
            )
        return _payload(session)

    @strawberry.mutation(description="Begin turning on MFA: returns the secret to scan.")
    async def start_mfa_enrolment(self, info: strawberry.Info) -> MfaEnrolment:
        viewer = info.context.require_viewer(enrolment_ok=True)
        try:
            enrolment = await identity_service.start_mfa_enrolment(info.context.settings, viewer)
        except mfa.MfaError as exc:
            raise PublicError(str(exc) or "MFA is already on") from exc
        return MfaEnrolment(
            secret=enrolment.secret, otpauth_uri=enrolment.uri, qr_svg=enrolment.qr_svg
        )

    @strawberry.mutation(description="Finish turning on MFA with a code from the app.")
    async def confirm_mfa_enrolment(
        self, info: strawberry.Info, input: MfaCodeInput
    ) -> ConfirmMfaResult:
        viewer = info.context.require_viewer(enrolment_ok=True)
        try:
            codes = await identity_service.confirm_mfa_enrolment(
                info.context.settings, viewer, input.code
            )
        except mfa.MfaError:
            return InvalidCodeError(message="invalid code, or no enrolment started")
        return MfaEnabled(recovery_codes=codes)

    @strawberry.mutation(description="Turn MFA off; takes a current code or a recovery code.")
    async def disable_mfa(self, info: strawberry.Info, input: MfaCodeInput) -> DisableMfaResult:
        viewer = info.context.require_viewer()
        try:
            await identity_service.disable_mfa(info.context.settings, viewer, input.code)
        except mfa.MfaError:
            return InvalidCodeError(message="invalid code")
        return MfaDisabled(ok=True)

    @strawberry.mutation(description="Create an API key (owners and admins).")
    async def create_api_key(
        self, info: strawberry.Info, input: CreateApiKeyInput
    ) -> CreateApiKeyResult:
        viewer = info.context.require_viewer()
        try:
            created, secret = await api_key_service.create(
                info.context.settings, viewer, input.name, input.role, input.expires_in_days
            )
        except InvalidInput as exc:
            return validation_error(exc, "API key refused")
        except ApiKeysForbidden as exc:
            return ForbiddenError(message=str(exc))
        return CreateApiKeySuccess(api_key=ApiKey.from_model(created), secret=secret)

    @strawberry.mutation(description="Revoke an API key; it stops working within 30 s.")
    async def revoke_api_key(
        self, info: strawberry.Info, input: RevokeApiKeyInput
    ) -> RevokeApiKeyResult:
        viewer = info.context.require_viewer()
        try:
            found = await api_key_service.revoke(info.context.settings, viewer, str(input.id))
        except ApiKeysForbidden as exc:
            return ForbiddenError(message=str(exc))
        if not found:
            return NotFoundError(message=f"API key {input.id} not found", id=input.id)
        return RevokeApiKeySuccess(id=input.id)

    @strawberry.mutation(description="Trade a refresh token for a new token pair.")
    async def refresh_token(
        self, info: strawberry.Info, input: RefreshTokenInput
    ) -> RefreshTokenResult:
        try:
            session = await identity_service.refresh(
                info.context.settings, input.refresh_token, _client(info)
            )
        except InvalidRefreshToken:
            return InvalidTokenError(message="invalid refresh token")
        except TooManyAttempts as exc:
            return _too_many(exc)
        return _payload(session)

    @strawberry.mutation(description="Sign out: end the session of the token in use.")
    async def log_out(self, info: strawberry.Info) -> bool:
        viewer = info.context.require_viewer(enrolment_ok=True)
        if viewer.session_id is None:
            return False
        return await identity_service.revoke_session(viewer, viewer.session_id, "logged out")

    @strawberry.mutation(description="End one of your sessions (a lost device, say).")
    async def revoke_session(
        self, info: strawberry.Info, input: RevokeSessionInput
    ) -> RevokeSessionResult:
        viewer = info.context.require_viewer()
        if await identity_service.revoke_session(viewer, str(input.id), "revoked by user"):
            return RevokeSessionSuccess(id=input.id)
        return NotFoundError(message=f"session {input.id} not found", id=input.id)


@strawberry.type
class MemberMutation:
    @strawberry.mutation(description="Invite someone to your organization by e-mail.")
    async def invite_member(
        self, info: strawberry.Info, input: InviteMemberInput
    ) -> InviteMemberResult:
        viewer = info.context.require_viewer()
        try:
            sent, _ = await member_service.invite(
                info.context.settings, viewer, input.email, input.role
            )
        except InvalidInput as exc:
            return validation_error(exc, "invitation refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return InviteMemberSuccess(
            invitation=Invitation(
                id=strawberry.ID(str(sent.id)),
                email=sent.email,
                role=sent.role,
                expires_at=sent.expires_at,
            )
        )

    @strawberry.mutation(description="Withdraw an invitation that was not accepted yet.")
    async def revoke_invitation(
        self, info: strawberry.Info, input: RevokeInvitationInput
    ) -> RevokeInvitationResult:
        viewer = info.context.require_viewer()
        try:
            done = await member_service.revoke_invitation(
                info.context.settings, viewer, str(input.id)
            )
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        if not done:
            return NotFoundError(message=f"invitation {input.id} not found", id=input.id)
        return RevokeInvitationSuccess(id=input.id)

    @strawberry.mutation(description="Join an organization with the token from the mail.")
    async def accept_invitation(
        self, info: strawberry.Info, input: AcceptInvitationInput
    ) -> AcceptInvitationResult:
        try:
            session = await member_service.accept(
                info.context.settings, input.token, input.name, input.password, _client(info)
            )
        except InvitationInvalid:
            return InvalidTokenError(message="invalid or expired invitation")
        except InvalidInput as exc:
            return validation_error(exc, "could not accept the invitation")
        return _payload(session)

    @strawberry.mutation(description="Change a member's role.")
    async def change_member_role(
        self, info: strawberry.Info, input: ChangeMemberRoleInput
    ) -> ChangeMemberRoleResult:
        viewer = info.context.require_viewer()
        try:
            await member_service.change_role(
                info.context.settings, viewer, str(input.user_id), input.role
            )
        except InvalidInput as exc:
            return validation_error(exc, "role change refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        member = next(
            m for m in await member_service.members(viewer) if str(m.user.id) == input.user_id
        )
        return ChangeMemberRoleSuccess(
            member=Member(
                user=User.from_model(member.user), role=member.role, joined_at=member.joined_at
            )
        )

    @strawberry.mutation(description="Remove a member; their sessions here end at once.")
    async def remove_member(
        self, info: strawberry.Info, input: RemoveMemberInput
    ) -> RemoveMemberResult:
        viewer = info.context.require_viewer()
        try:
            await member_service.remove(info.context.settings, viewer, str(input.user_id))
        except InvalidInput as exc:
            return validation_error(exc, "removal refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return RemoveMemberSuccess(user_id=input.user_id)

    @strawberry.mutation(description="Get tokens for another organization you belong to.")
    async def switch_organization(
        self, info: strawberry.Info, input: SwitchOrganizationInput
    ) -> SwitchOrganizationResult:
        viewer = info.context.require_viewer()
        try:
            session = await member_service.switch(
                info.context.settings, viewer, str(input.organization_id), _client(info)
            )
        except InvalidInput as exc:
            return validation_error(exc, "switch refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return _payload(session)


@strawberry.type
class RecoveryMutation:
    @strawberry.mutation(
        description="Mail a password-reset link if the address has an account. The answer "
        "is the same for every e-mail, so it tells nothing about which addresses exist; "
        "only too many requests from your network are refused."
    )
    async def request_password_reset(
        self, info: strawberry.Info, input: RequestPasswordResetInput
    ) -> RequestPasswordResetResult:
        try:
            await recovery.request_reset(info.context.settings, input.email, _client(info).ip)
        except MailNotSent:
            log.exception("password reset mail not sent")
        except TooManyAttempts as exc:
            return _too_many(exc)
        return RequestPasswordResetSuccess(ok=True)

    @strawberry.mutation(description="Set a new password with a mailed token.")
    async def reset_password(
        self, info: strawberry.Info, input: ResetPasswordInput
    ) -> ResetPasswordResult:
        try:
            await recovery.reset_password(info.context.settings, input.token, input.password)
        except InvalidInput as exc:
            return validation_error(exc, "password refused")
        except LinkInvalid:
            return InvalidTokenError(message="invalid or expired link")
        return ResetPasswordSuccess(ok=True)

    @strawberry.mutation(description="Confirm your e-mail address with a mailed token.")
    async def verify_email(
        self, info: strawberry.Info, input: VerifyEmailInput
    ) -> VerifyEmailResult:
        try:
            user = await recovery.verify_email(input.token)
        except LinkInvalid:
            return InvalidTokenError(message="invalid or expired link")
        return VerifyEmailSuccess(user=User.from_model(user))


@strawberry.type
class SecurityMutation:
    @strawberry.mutation(description="Require MFA of every member (owners and admins).")
    async def update_organization_security(
        self, info: strawberry.Info, input: UpdateOrganizationSecurityInput
    ) -> UpdateOrganizationSecurityResult:
        viewer = info.context.require_viewer()
        try:
            await identity_service.set_require_mfa(info.context.settings, viewer, input.require_mfa)
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        found = await identity_service.organization(viewer, viewer.organization_id)
        assert found is not None
        return Organization.from_model(found)


@strawberry.type
class SsoMutation:
    @strawberry.mutation(description="Set up OpenID Connect single sign-on (owners, admins).")
    async def configure_oidc(
        self, info: strawberry.Info, input: ConfigureOidcInput
    ) -> ConfigureOidcResult:
        viewer = info.context.require_viewer()
        mapping = input.role_mapping if isinstance(input.role_mapping, dict) else {}
        try:
            config = await oidc.configure(
                info.context.settings,
                viewer,
                issuer=input.issuer,
                client_id=input.client_id,
                client_secret=input.client_secret,
                role_claim=input.role_claim,
                role_mapping={str(k): str(v) for k, v in mapping.items()},
                default_role=input.default_role,
                allowed_domains=input.allowed_domains,
            )
        except InvalidInput as exc:
            return validation_error(exc, "single sign-on settings refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return OidcConfig.from_model(config)

    @strawberry.mutation(description="Begin an SSO sign-in: returns the provider's URL.")
    async def start_oidc_login(
        self, info: strawberry.Info, input: StartOidcLoginInput
    ) -> StartOidcLoginResult:
        org = await identity_service.organization_by_slug(input.organization_slug)
        try:
            if org is None or org.id is None:
                raise SsoFailed("single sign-on is not set up for this organization")
            url = await oidc.start(org.id, input.redirect_uri)
        except SsoFailed as exc:
            return SsoError(message=str(exc))
        return OidcLoginStart(authorization_url=url)

    @strawberry.mutation(description="Finish an SSO sign-in with the provider's code.")
    async def complete_oidc_login(
        self, info: strawberry.Info, input: CompleteOidcLoginInput
    ) -> CompleteOidcLoginResult:
        try:
            org_id, identity = await oidc.complete(info.context.settings, input.state, input.code)
        except SsoFailed as exc:
            return SsoError(message=str(exc))
        session = await member_service.sign_in_with_sso(
            info.context.settings, org_id, identity, _client(info)
        )
        return _payload(session)


async def _saml_config(
    info: strawberry.Info, viewer: Viewer, config: SamlConfigDocument
) -> SamlConfig:
    """The settings with our side of them: the entity id and ACS URL to register."""
    settings = info.context.settings
    org = await identity_service.organization(viewer, viewer.organization_id)
    slug = org.slug if org else ""
    return SamlConfig.from_model(config, sp_entity_id(settings, slug), acs_url(settings))


@strawberry.type
class SsoQuery:
    @strawberry.field(
        description="Your organization's OpenID Connect settings, if any; never "
        "the client secret (owners and admins)."
    )
    async def oidc_config(self, info: strawberry.Info) -> OidcConfig | None:
        viewer = info.context.require_viewer()
        try:
            config = await oidc.current(viewer)
        except NotAllowed as exc:
            raise PublicError(str(exc)) from exc
        return OidcConfig.from_model(config) if config else None

    @strawberry.field(
        description="Your organization's SAML settings, if any, with our entity "
        "id and ACS URL (owners and admins)."
    )
    async def saml_config(self, info: strawberry.Info) -> SamlConfig | None:
        viewer = info.context.require_viewer()
        try:
            config = await saml.current(viewer)
        except NotAllowed as exc:
            raise PublicError(str(exc)) from exc
        return await _saml_config(info, viewer, config) if config else None


@strawberry.type
class SamlMutation:
    @strawberry.mutation(description="Set up SAML 2.0 single sign-on (owners, admins).")
    async def configure_saml(
        self, info: strawberry.Info, input: ConfigureSamlInput
    ) -> ConfigureSamlResult:
        viewer = info.context.require_viewer()
        mapping = input.role_mapping if isinstance(input.role_mapping, dict) else {}
        settings = info.context.settings
        try:
            config = await saml.configure(
                settings,
                viewer,
                idp_entity_id=input.idp_entity_id,
                idp_sso_url=input.idp_sso_url,
                idp_certificate=input.idp_certificate,
                role_mapping={str(k): str(v) for k, v in mapping.items()},
                default_role=input.default_role,
                allowed_domains=input.allowed_domains,
                email_attribute=input.email_attribute,
                role_attribute=input.role_attribute,
            )
        except InvalidInput as exc:
            return validation_error(exc, "SAML settings refused")
        except NotAllowed as exc:
            return ForbiddenError(message=str(exc))
        return await _saml_config(info, viewer, config)

    @strawberry.mutation(description="Begin a SAML sign-in: returns the provider URL.")
    async def start_saml_login(
        self, info: strawberry.Info, input: StartSamlLoginInput
    ) -> StartSamlLoginResult:
        org = await identity_service.organization_by_slug(input.organization_slug)
        try:
            if org is None or org.id is None:
                raise SsoFailed("SAML sign-on is not set up for this organization")
            url = await saml.start(info.context.settings, org.id, org.slug)
        except SsoFailed as exc:
            return SsoError(message=str(exc))
        return SamlLoginStart(redirect_url=url)

    @strawberry.mutation(description="Finish a SAML sign-in with the provider's response.")
    async def complete_saml_login(
        self, info: strawberry.Info, input: CompleteSamlLoginInput
    ) -> CompleteSamlLoginResult:
        org = await identity_service.organization_by_slug(input.organization_slug)
        try:
            if org is None or org.id is None:
                raise SsoFailed("SAML sign-on is not set up for this organization")
            identity = await saml.complete(
                info.context.settings, org.id, org.slug, input.saml_response
            )
        except SsoFailed as exc:
            return SsoError(message=str(exc))
        session = await member_service.sign_in_with_sso(
            info.context.settings, org.id, identity, _client(info)
        )
        return _payload(session)


@strawberry.type
class MemberQuery:
    @strawberry.field(description="The members of your organization, oldest first.")
    async def members(self, info: strawberry.Info) -> list[Member]:
        viewer = info.context.require_viewer()
        return [
            Member(user=User.from_model(m.user), role=m.role, joined_at=m.joined_at)
            for m in await member_service.members(viewer)
        ]

    @strawberry.field(description="Invitations not yet accepted (owners and admins).")
    async def invitations(self, info: strawberry.Info) -> list[Invitation]:
        viewer = info.context.require_viewer()
        try:
            found = await member_service.pending_invitations(viewer)
        except NotAllowed as exc:
            raise PublicError(str(exc)) from exc
        return [
            Invitation(
                id=strawberry.ID(str(i.id)), email=i.email, role=i.role, expires_at=i.expires_at
            )
            for i in found
        ]

    @strawberry.field(description="The organizations you belong to, with your role in each.")
    async def my_organizations(self, info: strawberry.Info) -> list[OrganizationMembership]:
        viewer = info.context.require_viewer()
        return [
            OrganizationMembership(organization=Organization.from_model(org), role=role)
            for org, role in await member_service.memberships(viewer)
        ]


schema = strawberry.federation.Schema(
    query=merge_types("Query", (Query, MemberQuery, SsoQuery)),
    mutation=merge_types(
        "Mutation",
        (Mutation, MemberMutation, RecoveryMutation, SecurityMutation, SsoMutation, SamlMutation),
    ),
    types=[User, Organization],
    federation_version=FEDERATION_VERSION,
    extensions=[mask_errors],
)
