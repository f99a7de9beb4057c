"""Trigger registrations of active workflows: webhook paths (unique per organization,
path and method) and cron schedules with their next tick. They always follow the
published version: activating, publishing and rolling back re-register; deactivating
and archiving remove them."""

from __future__ import annotations

from datetime import datetime

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from klikkflow.engine.workflow import Workflow
from klikkflow.nodes.triggers import ScheduleParams, WebhookParams, next_fire
from subgraphs.workflows.models import (
    ScheduleRegistration,
    WebhookRegistration,
    WorkflowDocument,
    now,
)


class WebhookPathTaken(Exception):
    def __init__(self, path: str, method: str, workflow_id: str) -> None:
        super().__init__(
            f"{method} /{path} is already taken by another active workflow in your organization"
        )
        self.path, self.method, self.workflow_id = path, method, workflow_id


def _webhooks(
    head: WorkflowDocument, version: int, workflow: Workflow
) -> list[WebhookRegistration]:
    assert head.id is not None
    found = []
    for node in workflow.nodes:
        if node.type == "webhook" and not node.disabled:
            params = WebhookParams.model_validate(node.parameters)
            found.append(
                WebhookRegistration(
                    organization_id=head.organization_id,
                    workflow_id=head.id,
                    version=version,
                    node=node.name,
                    path=params.path,
                    method=params.http_method,
                )
            )
    return found


def _schedules(
    head: WorkflowDocument, version: int, workflow: Workflow, at: datetime
) -> list[ScheduleRegistration]:
    assert head.id is not None
    found = []
    for node in workflow.nodes:
        if node.type == "scheduleTrigger" and not node.disabled:
            params = ScheduleParams.model_validate(node.parameters)
            zone = params.timezone or workflow.settings.timezone
            found.append(
                ScheduleRegistration(
                    organization_id=head.organization_id,
                    workflow_id=head.id,
                    version=version,
                    node=node.name,
                    timezone=zone,
                    next_run_at=next_fire(params, at, workflow.settings.timezone),
                    parameters=node.parameters,
                    workflow_timezone=workflow.settings.timezone,
                )
            )
    return found


async def unregister(workflow_id: PydanticObjectId) -> None:
    await WebhookRegistration.find({"workflow_id": workflow_id}).delete()
    await ScheduleRegistration.find({"workflow_id": workflow_id}).delete()


async def register(head: WorkflowDocument, version: int, workflow: Workflow) -> None:
    """Replace the workflow's registrations with those of `workflow` (its version
    `version`). A webhook path another workflow holds leaves none registered."""
    assert head.id is not None
    await unregister(head.id)
    for hook in _webhooks(head, version, workflow):
        try:
            await hook.insert()
        except DuplicateKeyError:
            await unregister(head.id)
            holder = await WebhookRegistration.find_one(
                {"organization_id": head.organization_id, "path": hook.path, "method": hook.method}
            )
            raise WebhookPathTaken(
                hook.path, hook.method, str(holder.workflow_id) if holder else ""
            ) from None
    schedules = _schedules(head, version, workflow, now())
    if schedules:
        await ScheduleRegistration.insert_many(schedules)


async def webhooks_of(workflow_id: PydanticObjectId) -> list[WebhookRegistration]:
    return await WebhookRegistration.find({"workflow_id": workflow_id}).sort("path").to_list()


async def schedules_of(workflow_id: PydanticObjectId) -> list[ScheduleRegistration]:
    return await ScheduleRegistration.find({"workflow_id": workflow_id}).sort("node").to_list()
