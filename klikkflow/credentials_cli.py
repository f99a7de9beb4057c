"""`klikkflow credentials rotate-key | new-key`: the credential vault's master keys.

Rotation without downtime: put a new key first in KLIKKFLOW_CREDENTIALS_MASTER_KEYS
(keeping the old ones after it), restart the services (they open old and new), run
`rotate-key` (each credential's data key is re-wrapped under the new key; values are
never decrypted to disk and stay readable throughout), then drop the old key."""

from __future__ import annotations

import asyncio
import sys

from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import StoreNotConfigured, init_mongo
from klikkflow.kit.vault import LocalKeyProvider, VaultError, generate_master_key


async def _rotate(settings: SubgraphSettings) -> int:
    from subgraphs.workflows.credentials import credential as credential_service
    from subgraphs.workflows.models import DOCUMENTS

    provider = LocalKeyProvider(settings.credentials_master_keys, settings.secret_key)
    client = await init_mongo(settings.mongo_uri, settings.mongo_db, DOCUMENTS)
    credential_service.configure(settings, provider)
    rotated = 0
    try:
        async for _, changed in credential_service.rotate():
            rotated += changed
    finally:
        await client.close()
    print(f"{rotated} credential(s) re-wrapped under key {provider.current_key_id}")  # noqa: T201
    return 0


def credentials_command(settings: SubgraphSettings, action: str) -> int:
    if action == "new-key":
        print(generate_master_key())  # noqa: T201
        return 0
    try:
        return asyncio.run(_rotate(settings))
    except StoreNotConfigured as exc:
        print(f"credentials rotate-key: {exc}", file=sys.stderr)  # noqa: T201
        return 2
    except VaultError as exc:
        print(f"credentials rotate-key: {exc}", file=sys.stderr)  # noqa: T201
        return 1
