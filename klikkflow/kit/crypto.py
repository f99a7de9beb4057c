"""Secrets at rest: AES-256-GCM sealing under keys derived from the platform secret."""

from __future__ import annotations

import base64
import functools
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"


class SealError(Exception):
    pass


def token_digest(token: str) -> str:
    """How a random, high-entropy token is stored and looked up: its SHA-256 in hex (a slow
    hash adds nothing when the token is not guessable)."""
    return hashlib.sha256(token.encode()).hexdigest()


@functools.lru_cache(maxsize=64)
def derive_key(secret: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose ("signing keys", "mfa", ...) from the master secret.
    Remembered: a worker derives the resume-URL key for every execution it runs."""
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=f"klikkflow {purpose}".encode()
    ).derive(secret.encode())


def seal(plaintext: bytes, key: bytes, context: bytes) -> str:
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext, context)
    return f"{VERSION}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def unseal(token: str, key: bytes, context: bytes) -> bytes:
    version, _, body = token.partition(".")
    if version != VERSION:
        raise SealError(f"unknown sealed format {version!r}")
    try:
        raw = base64.urlsafe_b64decode(body)
        if len(raw) <= 12:
            raise ValueError("too short")
        return AESGCM(key).decrypt(raw[:12], raw[12:], context)
    except (InvalidTag, ValueError) as exc:
        raise SealError("sealed value was tampered with or sealed under another key") from exc
