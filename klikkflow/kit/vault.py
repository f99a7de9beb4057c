"""The credential vault's kernel: envelope encryption of credential values.

Each sealing draws a fresh 32-byte data key, encrypts the JSON-encoded values with it
(AES-256-GCM, via ``kit.crypto.seal``) and stores the data key only wrapped by a master
key that a ``KeyProvider`` holds (locally from settings, or a KMS / Vault transit).
Rotating the master key re-wraps the small data key and leaves the ciphertext alone.

Both layers authenticate ``context`` (organization id + credential id, see
``credential_context``) so a ciphertext copied to another credential or tenant fails.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from klikkflow.kit.crypto import SealError, derive_key, seal, unseal

DERIVED_KEY_ID = "derived-1"
KEY_BYTES = 32


class VaultError(Exception):
    """A credential could not be sealed or opened. The message never holds key material
    or plaintext, so it may be logged as is."""


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted under the master key ``key_id``; ``blob`` is opaque."""

    key_id: str
    blob: bytes


class KeyProvider(Protocol):
    """Holds master keys and wraps data keys with them (a local keyring, a KMS, Vault transit).

    ``unwrap`` raises ``VaultError`` for an unknown key id, a tampered blob or a wrong context.
    """

    @property
    def current_key_id(self) -> str: ...

    async def wrap(self, data_key: bytes, context: bytes) -> WrappedKey: ...

    async def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes: ...


def credential_context(organization_id: str, credential_id: str) -> bytes:
    """The context a credential's values are bound to (unambiguous: ids cannot hold NUL)."""
    return b"klikkflow credential\x00" + organization_id.encode() + b"\x00" + credential_id.encode()


def generate_master_key(key_id: str | None = None) -> str:
    """A new ``id:base64key`` entry for ``KLIKKFLOW_CREDENTIALS_MASTER_KEYS``."""
    key_id = key_id or f"k{datetime.now(UTC):%Y%m%d}-{secrets.token_hex(3)}"
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


def parse_master_keys(master_keys: str) -> dict[str, bytes]:
    """``"id1:b64,id2:b64"`` -> ``{id1: key1, id2: key2}`` in order (the first is current)."""
    keys: dict[str, bytes] = {}
    for position, entry in enumerate(master_keys.split(","), start=1):
        key_id, colon, encoded = (part.strip() for part in entry.strip().partition(":"))
        if not key_id or not colon:
            raise VaultError(f"master key entry {position} is not of the form id:base64key")
        if key_id in keys:
            raise VaultError(f"master key id {key_id!r} is listed twice")
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise VaultError(f"master key {key_id!r} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise VaultError(f"master key {key_id!r} must be {KEY_BYTES} bytes, not {len(key)}")
        keys[key_id] = key
    return keys


class LocalKeyProvider:
    """Master keys from settings: ``master_keys`` is ``KLIKKFLOW_CREDENTIALS_MASTER_KEYS``;
    when it is empty, one key (id ``derived-1``) is derived from ``secret_key``."""

    def __init__(self, master_keys: str, secret_key: str) -> None:
        if master_keys.strip():
            self._keys = parse_master_keys(master_keys)
        else:
            self._keys = {DERIVED_KEY_ID: derive_key(secret_key, "credentials")}
        self._current = next(iter(self._keys))

    @property
    def current_key_id(self) -> str:
        return self._current

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    async def wrap(self, data_key: bytes, context: bytes) -> WrappedKey:
        sealed = seal(data_key, self._keys[self._current], context)
        return WrappedKey(self._current, sealed.encode())

    async def unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        key = self._keys.get(wrapped.key_id)
        if key is None:
            raise VaultError(f"master key {wrapped.key_id!r} is not configured")
        try:
            return unseal(wrapped.blob.decode("ascii"), key, context)
        except (SealError, UnicodeDecodeError):
            raise VaultError(
                "credential data key was tampered with, or belongs to another credential"
            ) from None


class Envelope(BaseModel):
    """Sealed credential values as stored (``model_dump()`` is a plain dict for MongoDB).

    ``ciphertext`` is a ``kit.crypto.seal`` token, ``v1.<base64(nonce || ciphertext+tag)>``,
    so the nonce travels inside it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    key_id: str
    wrapped_key: str  # base64 of the provider's WrappedKey.blob
    ciphertext: str

    def wrapped(self) -> WrappedKey:
        try:
            blob = base64.b64decode(self.wrapped_key, validate=True)
        except binascii.Error:
            raise VaultError("credential data key is not valid base64") from None
        return WrappedKey(self.key_id, blob)


def _envelope(wrapped: WrappedKey, ciphertext: str) -> Envelope:
    blob = base64.b64encode(wrapped.blob).decode()
    return Envelope(key_id=wrapped.key_id, wrapped_key=blob, ciphertext=ciphertext)


async def seal_values(provider: KeyProvider, values: dict[str, Any], context: bytes) -> Envelope:
    """Encrypt ``values`` (JSON-encodable) under a fresh data key bound to ``context``."""
    data_key = secrets.token_bytes(KEY_BYTES)
    plaintext = json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode()
    ciphertext = seal(plaintext, data_key, context)
    return _envelope(await provider.wrap(data_key, context), ciphertext)


async def open_values(provider: KeyProvider, envelope: Envelope, context: bytes) -> dict[str, Any]:
    data_key = await provider.unwrap(envelope.wrapped(), context)
    try:
        plaintext = unseal(envelope.ciphertext, data_key, context)
    except SealError:
        raise VaultError(
            "credential ciphertext was tampered with, or belongs to another credential"
        ) from None
    try:
        values = json.loads(plaintext)
    except ValueError:  # its .doc would hold the plaintext, so it is not chained
        values = None
    if not isinstance(values, dict):
        raise VaultError("credential values are not a JSON object")
    return values


async def rewrap(provider: KeyProvider, envelope: Envelope, context: bytes) -> Envelope:
    """The envelope with its data key wrapped under the provider's current master key; the
    ciphertext is kept. Returned unchanged when it already uses the current key."""
    if envelope.key_id == provider.current_key_id:
        return envelope
    data_key = await provider.unwrap(envelope.wrapped(), context)
    return _envelope(await provider.wrap(data_key, context), envelope.ciphertext)


if __name__ == "__main__":
    sys.stdout.write(generate_master_key() + "\n")
