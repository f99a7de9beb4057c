"""Multi-factor authentication: TOTP (RFC 6238), sealed secrets and recovery codes.

Pure building blocks: no database and no GraphQL. The identity service keeps an
``MfaState`` in the user document, calls these functions, and saves the returned state.
Argon2 hashing is CPU-bound: call the recovery-code functions (and so
``confirm_enrolment`` and ``check_second_factor``) through ``asyncio.to_thread``.
"""

from __future__ import annotations

import base64
import hmac
import re
import secrets
from datetime import datetime

import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.hashes import SHA1
from cryptography.hazmat.primitives.twofactor.totp import TOTP
from pydantic import BaseModel, ConfigDict, Field

from klikkflow.kit import crypto
from klikkflow.kit.crypto import derive_key

# What authenticator apps expect; most ignore other values in the provisioning URI.
DIGITS = 6
PERIOD_SECONDS = 30
SECRET_BYTES = 20  # 160 bits, the shared-secret length RFC 4226 recommends
ISSUER = "KlikkFlow"

SEAL_VERSION = "v1"
SEAL_ASSOCIATED_DATA = b"klikkflow-mfa-v1"
HKDF_INFO = b"klikkflow mfa"
NONCE_BYTES = 12

RECOVERY_CODE_COUNT = 10
# Crockford's base32: no i, l, o or u; typed look-alikes are mapped back on input.
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
RECOVERY_GROUPS = (4, 4, 2)  # "xxxx-xxxx-xx": 10 symbols of 5 bits = 50 bits
_RECOVERY_LOOKALIKES = str.maketrans({"i": "1", "l": "1", "o": "0"})
_RECOVERY_RE = re.compile(rf"[{RECOVERY_ALPHABET}]{{{sum(RECOVERY_GROUPS)}}}")
_TOTP_RE = re.compile(r"[0-9]+")

# Recovery codes are random (50 bits), not chosen passwords: OWASP's minimum argon2id
# parameters (19 MiB, t=2) make a stolen hash list costly to search and keep a check of
# ten hashes near a quarter of a second, where the library default would take seconds.
_recovery_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


class MfaError(Exception):
    """Base of the MFA domain errors."""


class InvalidCode(MfaError):
    def __init__(self) -> None:
        super().__init__("the code is not valid")


class SealedSecretInvalid(MfaError):
    """A sealed secret was tampered with, truncated, or sealed with another key."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"sealed MFA secret is invalid: {reason}")
        self.reason = reason


class MfaAlreadyEnabled(MfaError):
    def __init__(self) -> None:
        super().__init__("two-factor authentication is already enabled")


class MfaNotEnabled(MfaError):
    def __init__(self) -> None:
        super().__init__("two-factor authentication is not enabled")


class EnrolmentNotStarted(MfaError):
    def __init__(self) -> None:
        super().__init__("no two-factor enrolment is in progress")


# --- TOTP -------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh 160-bit TOTP secret, base32 without padding (as authenticator apps take it)."""
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii").rstrip("=")


def _secret_bytes(secret: str) -> bytes:
    compact = secret.replace(" ", "").upper()
    return base64.b32decode(compact + "=" * (-len(compact) % 8))


def _totp(secret: str, digits: int) -> TOTP:
    return TOTP(_secret_bytes(secret), digits, SHA1(), PERIOD_SECONDS)


def _timestamp(now: datetime) -> int:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return int(now.timestamp())


def time_step(now: datetime) -> int:
    return _timestamp(now) // PERIOD_SECONDS


def code_at(secret: str, now: datetime, *, digits: int = DIGITS) -> str:
    """The code an authenticator app shows at ``now``."""
    return _totp(secret, digits).generate(_timestamp(now)).decode("ascii")


def provisioning_uri(secret: str, account_email: str, issuer: str = ISSUER) -> str:
    """The ``otpauth://totp/...`` URI an authenticator app scans from the QR code."""
    return _totp(secret, DIGITS).get_provisioning_uri(account_email, issuer)


def qr_svg(uri: str) -> str:
    """Inline SVG markup of a QR code for ``uri``, rendered locally (no external requests)."""
    return segno.make(uri, error="m").svg_inline(scale=4, border=4)


def verify_code(
    secret: str,
    code: str,
    now: datetime,
    last_used_step: int | None,
    window: int = 1,
    *,
    digits: int = DIGITS,
) -> int | None:
    """The time step ``code`` belongs to, within ``window`` steps of ``now``, or None.

    Steps at or before ``last_used_step`` are refused, so a code (or an older one) can
    be used only once; store the returned step as the next ``last_used_step``.
    """
    candidate = "".join(code.split())
    if len(candidate) != digits or not _TOTP_RE.fullmatch(candidate):
        return None
    totp = _totp(secret, digits)
    current = time_step(now)
    for step in range(current - window, current + window + 1):
        if last_used_step is not None and step <= last_used_step:
            continue
        expected = totp.generate(step * PERIOD_SECONDS)
        if hmac.compare_digest(expected, candidate.encode("ascii")):
            return step
    return None


# --- Secrets at rest --------------------------------------------------------------------


def mfa_key(secret_key: str) -> bytes:
    """The 32-byte AES key for MFA secrets, derived from the platform's secret key."""
    return derive_key(secret_key, "mfa")


def seal(secret: str, key: bytes) -> str:
    """``secret`` encrypted with AES-256-GCM (klikkflow.kit.crypto's sealed format)."""
    return crypto.seal(secret.encode("utf-8"), key, SEAL_ASSOCIATED_DATA)


def unseal(token: str, key: bytes) -> str:
    """The secret sealed in ``token``; raises ``SealedSecretInvalid`` if it was altered."""
    try:
        return crypto.unseal(token, key, SEAL_ASSOCIATED_DATA).decode("utf-8")
    except crypto.SealError as exc:
        raise SealedSecretInvalid(str(exc)) from exc


# --- Recovery codes ---------------------------------------------------------------------


def _recovery_code() -> str:
    groups = (
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(size)) for size in RECOVERY_GROUPS
    )
    return "-".join(groups)


def new_recovery_codes(n: int = RECOVERY_CODE_COUNT) -> list[str]:
    """``n`` distinct single-use codes shaped ``xxxx-xxxx-xx`` (50 random bits each)."""
    codes: list[str] = []
    while len(codes) < n:
        code = _recovery_code()
        if code not in codes:
            codes.append(code)
    return codes


def _normalise_recovery_code(code: str) -> str:
    compact = "".join(code.split()).replace("-", "").lower()
    return compact.translate(_RECOVERY_LOOKALIKES)


def hash_recovery_codes(codes: list[str]) -> list[str]:
    return [_recovery_hasher.hash(_normalise_recovery_code(code)) for code in codes]


def use_recovery_code(hashes: list[str], code: str) -> list[str] | None:
    """The hashes left after consuming the one matching ``code``, or None if none matches."""
    candidate = _normalise_recovery_code(code)
    if not _RECOVERY_RE.fullmatch(candidate):
        return None
    for index, stored in enumerate(hashes):
        try:
            _recovery_hasher.verify(stored, candidate)
        except (VerificationError, InvalidHashError):
            continue
        return hashes[:index] + hashes[index + 1 :]
    return None


# --- State ------------------------------------------------------------------------------


class MfaState(BaseModel):
    """Two-factor settings of one user, embedded in the user document."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = False
    secret_sealed: str | None = None
    last_step: int | None = None
    recovery_hashes: list[str] = Field(default_factory=list)
    enrolled_at: datetime | None = None
    pending_secret_sealed: str | None = None


def start_enrolment(
    state: MfaState, key: bytes, account_email: str, issuer: str = ISSUER
) -> tuple[MfaState, str, str]:
    """A pending secret to show once (as text and QR code); replaces any earlier one."""
    if state.enabled:
        raise MfaAlreadyEnabled()
    secret = new_secret()
    pending = state.model_copy(update={"pending_secret_sealed": seal(secret, key)})
    return pending, secret, provisioning_uri(secret, account_email, issuer)


def confirm_enrolment(
    state: MfaState, key: bytes, code: str, now: datetime
) -> tuple[MfaState, list[str]]:
    """Turns MFA on once the app shows a valid code; returns the recovery codes to show."""
    if state.enabled:
        raise MfaAlreadyEnabled()
    if state.pending_secret_sealed is None:
        raise EnrolmentNotStarted()
    step = verify_code(unseal(state.pending_secret_sealed, key), code, now, None)
    if step is None:
        raise InvalidCode()
    codes = new_recovery_codes()
    enabled = MfaState(
        enabled=True,
        secret_sealed=state.pending_secret_sealed,
        last_step=step,
        recovery_hashes=hash_recovery_codes(codes),
        enrolled_at=now,
    )
    return enabled, codes


def check_second_factor(state: MfaState, key: bytes, code: str, now: datetime) -> MfaState:
    """The state after accepting a TOTP code or consuming a recovery code.

    The caller must save the returned state before treating the login as complete, and
    save it conditionally on the old ``last_step`` / hashes so two concurrent logins
    cannot both spend the same code.
    """
    if not state.enabled or state.secret_sealed is None:
        raise MfaNotEnabled()
    compact = "".join(code.split())
    if len(compact) == DIGITS and _TOTP_RE.fullmatch(compact):
        secret = unseal(state.secret_sealed, key)
        step = verify_code(secret, code, now, state.last_step)
        if step is None:
            raise InvalidCode()
        return state.model_copy(update={"last_step": step})
    remaining = use_recovery_code(state.recovery_hashes, code)
    if remaining is None:
        raise InvalidCode()
    return state.model_copy(update={"recovery_hashes": remaining})


def disable(state: MfaState) -> MfaState:
    """MFA off, secret and recovery codes forgotten."""
    return MfaState()
