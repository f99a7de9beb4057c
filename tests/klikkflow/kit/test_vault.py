import base64
from collections.abc import Callable

import pytest

from klikkflow.kit.crypto import derive_key
from klikkflow.kit.vault import (
    DERIVED_KEY_ID,
    Envelope,
    LocalKeyProvider,
    VaultError,
    credential_context,
    generate_master_key,
    open_values,
    rewrap,
    seal_values,
)

SECRET_KEY = "a-platform-secret-for-tests"
OLD = generate_master_key("old")
NEW = generate_master_key("new")
VALUES = {"user": "ada", "password": "s3cret-pässword-0001", "nested": {"n": [1, 2]}}
ACME_GITHUB = credential_context("org-acme", "cred-github")


def provider(*entries: str) -> LocalKeyProvider:
    return LocalKeyProvider(",".join(entries), SECRET_KEY)


def nonce(sealed: str) -> bytes:
    return base64.urlsafe_b64decode(sealed.partition(".")[2])[:12]


def key_material(entry: str) -> str:
    return entry.partition(":")[2]


def flip_last_byte(encoded: str, *, urlsafe: bool) -> str:
    decode = base64.urlsafe_b64decode if urlsafe else base64.b64decode
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    raw = bytearray(decode(encoded))
    raw[-1] ^= 1
    return encode(bytes(raw)).decode()


async def test_sealed_values_open_to_what_was_sealed() -> None:
    vault = provider(OLD)
    envelope = await seal_values(vault, VALUES, ACME_GITHUB)
    assert envelope.key_id == "old"
    assert "s3cret" not in envelope.model_dump_json()
    stored = Envelope.model_validate(envelope.model_dump())  # as read back from MongoDB
    assert await open_values(vault, stored, ACME_GITHUB) == VALUES


async def test_each_sealing_draws_its_own_data_key_and_nonce() -> None:
    vault = provider(OLD)
    first, second = [await seal_values(vault, VALUES, ACME_GITHUB) for _ in range(2)]
    first_key = await vault.unwrap(first.wrapped(), ACME_GITHUB)
    second_key = await vault.unwrap(second.wrapped(), ACME_GITHUB)
    assert len(first_key) == 32
    assert first_key != second_key
    assert nonce(first.ciphertext) != nonce(second.ciphertext)
    assert first.ciphertext != second.ciphertext


@pytest.mark.parametrize(
    "context",
    [
        credential_context("org-acme", "cred-other"),
        credential_context("org-evil", "cred-github"),
        credential_context("org-acmecred-", "github"),
        b"",
    ],
)
async def test_values_open_only_for_the_credential_they_were_sealed_for(context: bytes) -> None:
    vault = provider(OLD)
    envelope = await seal_values(vault, VALUES, ACME_GITHUB)
    with pytest.raises(VaultError):
        await open_values(vault, envelope, context)


async def test_a_wrapped_data_key_unwraps_only_for_its_credential() -> None:
    # Rotation unwraps without opening the ciphertext, so the wrapped key must be bound too.
    vault = provider(OLD)
    envelope = await seal_values(vault, VALUES, ACME_GITHUB)
    with pytest.raises(VaultError):
        await vault.unwrap(envelope.wrapped(), credential_context("org-evil", "cred-github"))


@pytest.mark.parametrize(
    "tamper",
    [
        lambda e: {"ciphertext": e.ciphertext[:3] + flip_last_byte(e.ciphertext[3:], urlsafe=True)},
        lambda e: {"ciphertext": e.ciphertext[:-8]},
        lambda e: {"ciphertext": "v2" + e.ciphertext[2:]},
        lambda e: {"wrapped_key": flip_last_byte(e.wrapped_key, urlsafe=False)},
        lambda e: {"wrapped_key": "not base64!"},
        lambda e: {"wrapped_key": ""},
    ],
    ids=["ciphertext", "truncated", "version", "wrapped-key", "garbled-key", "no-key"],
)
async def test_tampered_envelopes_are_refused(tamper: Callable[[Envelope], dict[str, str]]) -> None:
    vault = provider(OLD)
    envelope = await seal_values(vault, VALUES, ACME_GITHUB)
    with pytest.raises(VaultError):
        await open_values(vault, envelope.model_copy(update=tamper(envelope)), ACME_GITHUB)


async def test_an_unknown_master_key_is_named_in_the_refusal() -> None:
    envelope = await seal_values(provider(OLD), VALUES, ACME_GITHUB)
    with pytest.raises(VaultError, match="'old' is not configured"):
        await open_values(provider(NEW), envelope, ACME_GITHUB)


async def test_another_key_under_a_known_id_is_refused() -> None:
    envelope = await seal_values(provider(OLD), VALUES, ACME_GITHUB)
    impostor = generate_master_key("old")
    with pytest.raises(VaultError):
        await open_values(provider(impostor), envelope, ACME_GITHUB)


async def test_rotation_rewraps_the_data_key_and_keeps_the_ciphertext() -> None:
    envelope = await seal_values(provider(OLD), VALUES, ACME_GITHUB)
    both = provider(NEW, OLD)
    assert await open_values(both, envelope, ACME_GITHUB) == VALUES  # old key still listed

    rotated = await rewrap(both, envelope, ACME_GITHUB)

    assert rotated.key_id == "new"
    assert rotated.ciphertext == envelope.ciphertext
    assert rotated.wrapped_key != envelope.wrapped_key
    assert await open_values(both, rotated, ACME_GITHUB) == VALUES
    assert await open_values(provider(NEW), rotated, ACME_GITHUB) == VALUES  # old key retired
    with pytest.raises(VaultError):
        await open_values(provider(OLD), rotated, ACME_GITHUB)


async def test_rewrap_leaves_an_envelope_under_the_current_key_alone() -> None:
    vault = provider(NEW, OLD)
    envelope = await seal_values(vault, VALUES, ACME_GITHUB)
    assert await rewrap(vault, envelope, ACME_GITHUB) == envelope


async def test_rewrap_refuses_a_wrong_context() -> None:
    envelope = await seal_values(provider(OLD), VALUES, ACME_GITHUB)
    with pytest.raises(VaultError):
        await rewrap(provider(NEW, OLD), envelope, credential_context("org-evil", "x"))


async def test_refusals_hold_no_plaintext_or_key_material() -> None:
    vault = provider(OLD)
    envelope = await seal_values(vault, VALUES, ACME_GITHUB)
    refusals = []
    for attempt in (
        open_values(vault, envelope, b"elsewhere"),
        open_values(provider(NEW), envelope, ACME_GITHUB),
        open_values(vault, envelope.model_copy(update={"ciphertext": "v1.AAAA"}), ACME_GITHUB),
        rewrap(provider(NEW, OLD), envelope, b"elsewhere"),
    ):
        with pytest.raises(VaultError) as refused:
            await attempt
        refusals.append(refused.value)
    for error in refusals:
        message = f"{error} {error!r} {error.__cause__!r} {error.__context__!r}"
        assert "s3cret" not in message
        assert "ada" not in message
        assert key_material(OLD) not in message
        assert key_material(NEW) not in message


def test_without_configured_keys_one_key_is_derived_from_the_secret() -> None:
    vault = LocalKeyProvider("", SECRET_KEY)
    assert vault.current_key_id == DERIVED_KEY_ID
    assert vault.key_ids == [DERIVED_KEY_ID]


async def test_the_derived_key_is_stable_and_can_be_listed_explicitly() -> None:
    envelope = await seal_values(LocalKeyProvider("", SECRET_KEY), VALUES, ACME_GITHUB)
    assert await open_values(LocalKeyProvider("", SECRET_KEY), envelope, ACME_GITHUB) == VALUES
    with pytest.raises(VaultError):
        await open_values(LocalKeyProvider("", "another secret"), envelope, ACME_GITHUB)
    # Moving from the derived key to configured keys: list it after the new current key.
    derived = base64.b64encode(derive_key(SECRET_KEY, "credentials")).decode()
    configured = provider(NEW, f"{DERIVED_KEY_ID}:{derived}")
    rotated = await rewrap(configured, envelope, ACME_GITHUB)
    assert await open_values(provider(NEW), rotated, ACME_GITHUB) == VALUES


def test_the_first_configured_key_is_current() -> None:
    vault = LocalKeyProvider(f" {NEW} , {OLD} ", "ignored when keys are configured")
    assert vault.current_key_id == "new"
    assert vault.key_ids == ["new", "old"]


def test_generated_master_keys_are_fresh_32_byte_entries() -> None:
    first, second = generate_master_key(), generate_master_key()
    assert first != second
    assert first.partition(":")[0] != second.partition(":")[0]
    assert len(base64.b64decode(key_material(first))) == 32
    assert LocalKeyProvider(first, SECRET_KEY).current_key_id == first.partition(":")[0]


@pytest.mark.parametrize(
    ("master_keys", "refusal"),
    [
        ("no-colon", "entry 1 is not of the form id:base64key"),
        (f"{OLD},:{key_material(NEW)}", "entry 2 is not of the form id:base64key"),
        (f"{OLD},{OLD}", "'old' is listed twice"),
        ("short:" + base64.b64encode(b"k" * 16).decode(), "'short' must be 32 bytes, not 16"),
        ("bad:not*base64", "'bad' is not valid base64"),
        (f"{OLD},", "entry 2 is not of the form id:base64key"),
    ],
)
def test_misconfigured_master_keys_are_refused_without_echoing_them(
    master_keys: str, refusal: str
) -> None:
    with pytest.raises(VaultError, match=refusal) as refused:
        LocalKeyProvider(master_keys, SECRET_KEY)
    assert key_material(OLD) not in str(refused.value)
