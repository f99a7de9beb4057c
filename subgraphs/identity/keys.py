"""Token signing keys: created on first use, rotated on demand, published as a JWKS."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from joserfc.jwk import ECKey

from klikkflow.kit.auth import new_signing_key
from klikkflow.kit.crypto import derive_key, seal, unseal
from klikkflow.kit.settings import AuthSettings
from subgraphs.identity.models import SigningKeyDocument

_CONTEXT = b"klikkflow-signing-key-v1"
CACHE_SECONDS = 30.0


class KeyService:
    def __init__(self) -> None:
        self._current: tuple[float, ECKey] | None = None

    async def signing_key(self, settings: AuthSettings) -> ECKey:
        """The newest unretired key (cached briefly; several processes may share keys)."""
        if self._current and time.monotonic() - self._current[0] < CACHE_SECONDS:
            return self._current[1]
        newest = (
            await SigningKeyDocument.find(
                SigningKeyDocument.retired_at == None  # noqa: E711 - a MongoDB query
            )
            .sort("-created_at")
            .first_or_none()
        )
        if newest is None:
            newest = await self._create(settings)
        pem = unseal(
            newest.private_sealed, derive_key(settings.secret_key, "signing keys"), _CONTEXT
        )
        key = ECKey.import_key(pem, {"kid": newest.kid, "use": "sig", "alg": "ES256"})
        self._current = (time.monotonic(), key)
        return key

    async def _create(self, settings: AuthSettings) -> SigningKeyDocument:
        key = new_signing_key()
        document = SigningKeyDocument(
            kid=key.kid or "",
            private_sealed=seal(
                key.as_pem(private=True), derive_key(settings.secret_key, "signing keys"), _CONTEXT
            ),
            public_jwk={k: str(v) for k, v in key.as_dict(private=False).items()},
        )
        await document.insert()
        return document

    async def rotate(self, settings: AuthSettings) -> str:
        """Start signing with a new key; older keys retire now and stay published until
        every token they signed has expired."""
        now = datetime.now(UTC)
        created = await self._create(settings)
        await SigningKeyDocument.find(
            SigningKeyDocument.retired_at == None,  # noqa: E711
            SigningKeyDocument.kid != created.kid,
        ).update({"$set": {"retired_at": now}})
        self._current = None
        return created.kid

    async def jwks(self, settings: AuthSettings) -> dict[str, list[dict[str, str]]]:
        cutoff = datetime.now(UTC) - timedelta(seconds=settings.access_token_ttl_seconds + 60)
        published = (
            await SigningKeyDocument.find(
                {"$or": [{"retired_at": None}, {"retired_at": {"$gt": cutoff}}]}
            )
            .sort("-created_at")
            .to_list()
        )
        return {"keys": [k.public_jwk for k in published]}


keys = KeyService()
