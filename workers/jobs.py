"""arq jobs: thin shells around services (load, call, save, publish)."""

from __future__ import annotations

from typing import Any

from subgraphs.executions.service import execution as execution_service


async def run_execution(ctx: dict[str, Any], execution_id: str) -> str | None:
    status = await execution_service.run_placeholder(ctx["redis"], execution_id)
    return status.value if status else None
