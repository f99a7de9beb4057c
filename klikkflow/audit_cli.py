"""`klikkflow audit verify`: check that audit log chains are intact."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from pymongo import AsyncMongoClient

from klikkflow.kit.settings import SubgraphSettings
from klikkflow.kit.stores import StoreNotConfigured
from subgraphs.identity.audit import COLLECTION, AuditLog, VerifyReport


def describe(report: VerifyReport) -> str:
    label = report.organization_id or "(none)"
    if report.problem is not None:
        return f"organization {label}: {report.problem.message}"
    count = report.entries_checked
    if count == 0:
        return f"organization {label}: no entries"
    return f"organization {label}: {count} {'entry' if count == 1 else 'entries'}, chain intact"


async def _verify(settings: SubgraphSettings, organization: str | None) -> int:
    if not settings.mongo_uri:
        raise StoreNotConfigured("KLIKKFLOW_MONGO_URI")
    # A bare client, not Beanie: verifying reads raw documents and creates no indexes.
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        settings.mongo_uri, tz_aware=True, serverSelectionTimeoutMS=5000
    )
    try:
        verifier = AuditLog.from_secret(settings.secret_key).verifier(
            client[settings.mongo_db][COLLECTION]
        )
        chains = [organization] if organization is not None else await verifier.chains()
        if not chains:
            print("no audit log entries")  # noqa: T201
            return 0
        intact = True
        for chain in chains:
            report = await verifier.verify(chain)
            print(describe(report), flush=True)  # noqa: T201
            intact = intact and report.ok
        return 0 if intact else 1
    finally:
        await client.close()


def verify_command(settings: SubgraphSettings, organization: str | None) -> int:
    """Verify one organization's chain (`""`: the global chain) or, with None, every chain.
    Prints one line per chain; returns 1 if any chain is broken, 2 without MongoDB."""
    try:
        return asyncio.run(_verify(settings, organization))
    except StoreNotConfigured as exc:
        print(f"audit verify: {exc}", file=sys.stderr)  # noqa: T201
        return 2
