from __future__ import annotations

import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from subgraphs.identity import mfa
from subgraphs.identity.mfa import (
    EnrolmentNotStarted,
    InvalidCode,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    MfaState,
    SealedSecretInvalid,
)

NOW = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
KEY = mfa.mfa_key("test-platform-secret")
# The shared secret of RFC 6238 appendix B (SHA1), as an authenticator app would hold it.
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode("ascii")
STEP = timedelta(seconds=mfa.PERIOD_SECONDS)


@pytest.mark.parametrize(
    ("unix_time", "expected"),
    [
        (59, "94287082"),
        (1111111109, "07081804"),
        (1111111111, "14050471"),
        (1234567890, "89005924"),
        (2000000000, "69279037"),
        (20000000000, "65353130"),
    ],
)
def test_rfc6238_sha1_vectors(unix_time: int, expected: str) -> None:
    when = datetime.fromtimestamp(unix_time, UTC)

    assert mfa.code_at(RFC_SECRET, when, digits=8) == expected
    assert mfa.verify_code(RFC_SECRET, expected, when, None, digits=8) == unix_time // 30


def test_new_secret_is_160_random_bits_of_base32() -> None:
    secret = mfa.new_secret()

    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert len(base64.b32decode(secret)) == 20
    assert mfa.new_secret() != secret


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_codes_within_one_step_are_accepted(offset: int) -> None:
    secret = mfa.new_secret()
    code = mfa.code_at(secret, NOW + offset * STEP)

    assert mfa.verify_code(secret, code, NOW, None) == mfa.time_step(NOW) + offset


@pytest.mark.parametrize("offset", [-2, 2])
def test_codes_two_steps_away_are_refused(offset: int) -> None:
    secret = mfa.new_secret()
    code = mfa.code_at(secret, NOW + offset * STEP)

    assert mfa.verify_code(secret, code, NOW, None) is None


def test_code_with_spaces_is_accepted() -> None:
    secret = mfa.new_secret()
    code = mfa.code_at(secret, NOW)

    assert mfa.verify_code(secret, f" {code[:3]} {code[3:]} ", NOW, None) is not None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "１２３４５６"])
def test_malformed_codes_are_refused(code: str) -> None:
    assert mfa.verify_code(mfa.new_secret(), code, NOW, None) is None


def _wrong_code(secret: str, when: datetime) -> str:
    """A well-formed code that no step within the window around ``when`` produces."""
    valid = {mfa.code_at(secret, when + offset * STEP) for offset in (-1, 0, 1)}
    return next(c for c in (f"{n:06d}" for n in range(4)) if c not in valid)


def test_wrong_code_is_refused() -> None:
    secret = mfa.new_secret()

    assert mfa.verify_code(secret, _wrong_code(secret, NOW), NOW, None) is None


def test_replay_of_the_same_or_an_older_step_is_refused() -> None:
    secret = mfa.new_secret()
    step = mfa.verify_code(secret, mfa.code_at(secret, NOW), NOW, None)
    assert step is not None

    assert mfa.verify_code(secret, mfa.code_at(secret, NOW), NOW, step) is None
    assert mfa.verify_code(secret, mfa.code_at(secret, NOW - STEP), NOW, step) is None
    assert mfa.verify_code(secret, mfa.code_at(secret, NOW + STEP), NOW, step) == step + 1


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        mfa.verify_code(mfa.new_secret(), "123456", datetime(2026, 1, 1), None)


def test_provisioning_uri_carries_what_authenticator_apps_read() -> None:
    secret = mfa.new_secret()

    parts = urlsplit(mfa.provisioning_uri(secret, "ada+mfa@example.com"))
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}

    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/KlikkFlow:ada+mfa@example.com"
    assert query == {
        "secret": secret,
        "issuer": "KlikkFlow",
        "algorithm": "SHA1",
        "digits": "6",
        "period": "30",
    }


def test_qr_svg_is_well_formed_markup_with_a_path() -> None:
    svg = mfa.qr_svg(mfa.provisioning_uri(mfa.new_secret(), "ada@example.com"))

    root = ET.fromstring(svg)
    assert root.tag.rpartition("}")[2] == "svg"
    assert any(element.tag.rpartition("}")[2] == "path" for element in root.iter())
    assert "http" not in svg.replace("http://www.w3.org/", "")


def test_mfa_key_is_32_bytes_and_depends_on_the_platform_secret() -> None:
    assert len(KEY) == 32
    assert mfa.mfa_key("test-platform-secret") == KEY
    assert mfa.mfa_key("another-platform-secret") != KEY


def test_seal_round_trips_with_a_fresh_nonce_each_time() -> None:
    secret = mfa.new_secret()

    first, second = mfa.seal(secret, KEY), mfa.seal(secret, KEY)

    assert first.startswith("v1.")
    assert re.fullmatch(r"v1\.[A-Za-z0-9_=-]+", first)
    assert secret not in first
    assert first != second
    assert mfa.unseal(first, KEY) == mfa.unseal(second, KEY) == secret


def _flip_byte(token: str, index: int) -> str:
    version, _, payload = token.partition(".")
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[index] ^= 0x01
    return f"{version}.{base64.urlsafe_b64encode(bytes(raw)).decode('ascii')}"


@pytest.mark.parametrize("index", [0, 12, -1], ids=["nonce", "ciphertext", "tag"])
def test_tampered_sealed_secret_is_detected(index: int) -> None:
    token = mfa.seal(mfa.new_secret(), KEY)

    with pytest.raises(SealedSecretInvalid, match="tampered with"):
        mfa.unseal(_flip_byte(token, index), KEY)


@pytest.mark.parametrize("token", ["", "v2.AAAA", "v1.", "v1.not*base64", "v1.AAAAAAAAAAAAAAAA"])
def test_malformed_sealed_secret_is_refused(token: str) -> None:
    with pytest.raises(SealedSecretInvalid):
        mfa.unseal(token, KEY)


def test_secret_sealed_under_another_key_is_refused() -> None:
    token = mfa.seal(mfa.new_secret(), mfa.mfa_key("another-platform-secret"))

    with pytest.raises(SealedSecretInvalid):
        mfa.unseal(token, KEY)


def test_recovery_codes_are_distinct_and_unambiguous() -> None:
    codes = mfa.new_recovery_codes()

    assert len(codes) == 10
    assert len(set(codes)) == 10
    for code in codes:
        assert re.fullmatch(
            r"[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{4}-[0-9a-hjkmnp-tv-z]{2}", code
        )
    assert len(mfa.new_recovery_codes(3)) == 3


def test_recovery_code_is_single_use() -> None:
    codes = mfa.new_recovery_codes(3)
    hashes = mfa.hash_recovery_codes(codes)

    remaining = mfa.use_recovery_code(hashes, codes[1])

    assert remaining == [hashes[0], hashes[2]]
    assert mfa.use_recovery_code(remaining, codes[1]) is None
    assert mfa.use_recovery_code(remaining, codes[0]) == [hashes[2]]


def test_recovery_codes_are_stored_as_argon2id_hashes() -> None:
    codes = mfa.new_recovery_codes(2)

    hashes = mfa.hash_recovery_codes(codes)

    assert all(h.startswith("$argon2id$") for h in hashes)
    assert not any(code in h or code.replace("-", "") in h for code in codes for h in hashes)


@pytest.mark.parametrize(
    "typed",
    ["0111-abcd-ef", "0111ABCDEF", " 0111 abcd ef ", "OIL1-abcd-ef", "0111--ABCD-EF"],
)
def test_recovery_code_ignores_case_dashes_spaces_and_lookalikes(typed: str) -> None:
    hashes = mfa.hash_recovery_codes(["0111-abcd-ef"])

    assert mfa.use_recovery_code(hashes, typed) == []


@pytest.mark.parametrize("typed", ["0111-abcd-eg", "0111-abcd-e", "", "0111-abcd-ef-0"])
def test_unknown_recovery_code_is_refused(typed: str) -> None:
    hashes = mfa.hash_recovery_codes(["0111-abcd-ef"])

    assert mfa.use_recovery_code(hashes, typed) is None


def _enrolled() -> tuple[MfaState, str, list[str]]:
    pending, secret, _ = mfa.start_enrolment(MfaState(), KEY, "ada@example.com")
    state, codes = mfa.confirm_enrolment(pending, KEY, mfa.code_at(secret, NOW), NOW)
    return state, secret, codes


def test_enrolment_flow_end_to_end() -> None:
    pending, secret, uri = mfa.start_enrolment(MfaState(), KEY, "ada@example.com")
    assert not pending.enabled
    assert pending.pending_secret_sealed is not None
    assert mfa.unseal(pending.pending_secret_sealed, KEY) == secret
    assert f"secret={secret}" in uri

    state, codes = mfa.confirm_enrolment(pending, KEY, mfa.code_at(secret, NOW), NOW)

    assert state.enabled
    assert state.pending_secret_sealed is None
    assert state.secret_sealed == pending.pending_secret_sealed
    assert state.last_step == mfa.time_step(NOW)
    assert state.enrolled_at == NOW
    assert len(codes) == len(state.recovery_hashes) == 10

    # The code used to confirm cannot log in again; the next one can, once.
    later = NOW + STEP
    with pytest.raises(InvalidCode):
        mfa.check_second_factor(state, KEY, mfa.code_at(secret, NOW), later)
    state = mfa.check_second_factor(state, KEY, mfa.code_at(secret, later), later)
    assert state.last_step == mfa.time_step(later)
    with pytest.raises(InvalidCode):
        mfa.check_second_factor(state, KEY, mfa.code_at(secret, later), later)

    # A recovery code works once, typed however.
    state = mfa.check_second_factor(state, KEY, codes[0].upper().replace("-", ""), later)
    assert len(state.recovery_hashes) == 9
    with pytest.raises(InvalidCode):
        mfa.check_second_factor(state, KEY, codes[0], later)

    assert mfa.disable(state) == MfaState()


def test_confirm_with_a_wrong_code_keeps_the_enrolment_pending() -> None:
    pending, secret, _ = mfa.start_enrolment(MfaState(), KEY, "ada@example.com")
    stale = mfa.code_at(secret, NOW - 5 * STEP)

    with pytest.raises(InvalidCode):
        mfa.confirm_enrolment(pending, KEY, stale, NOW)

    assert not pending.enabled
    state, _ = mfa.confirm_enrolment(pending, KEY, mfa.code_at(secret, NOW), NOW)
    assert state.enabled


def test_restarting_enrolment_replaces_the_pending_secret() -> None:
    first, old_secret, _ = mfa.start_enrolment(MfaState(), KEY, "ada@example.com")
    second, new_secret, _ = mfa.start_enrolment(first, KEY, "ada@example.com")

    assert new_secret != old_secret
    with pytest.raises(InvalidCode):
        mfa.confirm_enrolment(second, KEY, mfa.code_at(old_secret, NOW), NOW)


def test_wrong_second_factor_is_refused() -> None:
    state, secret, _ = _enrolled()
    wrong = _wrong_code(secret, NOW + STEP)

    for code in [wrong, "zzzz-zzzz-zz", "not a code", ""]:
        with pytest.raises(InvalidCode):
            mfa.check_second_factor(state, KEY, code, NOW + STEP)


def test_state_rules() -> None:
    state, _, _ = _enrolled()

    with pytest.raises(EnrolmentNotStarted):
        mfa.confirm_enrolment(MfaState(), KEY, "123456", NOW)
    with pytest.raises(MfaAlreadyEnabled):
        mfa.start_enrolment(state, KEY, "ada@example.com")
    with pytest.raises(MfaNotEnabled):
        mfa.check_second_factor(MfaState(), KEY, "123456", NOW)


def test_state_survives_a_json_round_trip() -> None:
    state, _, _ = _enrolled()

    assert MfaState.model_validate_json(state.model_dump_json()) == state
