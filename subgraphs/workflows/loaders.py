from __future__ import annotations

from strawberry.dataloader import DataLoader

from klikkflow.kit.graphql import Context
from subgraphs.workflows.credentials import credential as credential_service
from subgraphs.workflows.models import CredentialDocument, WorkflowDocument
from subgraphs.workflows.service import workflow as workflow_service

OWNER_PAGE = 50


def workflow_loader(context: Context) -> DataLoader[str, WorkflowDocument | None]:
    return context.loader("workflow", workflow_service.get_many)


def workflows_by_owner_loader(context: Context) -> DataLoader[str, list[WorkflowDocument]]:
    return context.loader(
        "by_owner", lambda viewer, ids: workflow_service.by_owners(viewer, ids, OWNER_PAGE)
    )


def credential_loader(context: Context) -> DataLoader[str, CredentialDocument | None]:
    return context.loader("credential", credential_service.get_many)
