"""Per-request DataLoaders: entity resolution from the router goes through them."""

from __future__ import annotations

from strawberry.dataloader import DataLoader

from klikkflow.kit.graphql import Context
from subgraphs.identity.models import UserDocument
from subgraphs.identity.service import identity as identity_service


def user_loader(context: Context) -> DataLoader[str, UserDocument | None]:
    return context.loader("user", identity_service.users)
