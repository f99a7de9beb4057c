"""Every identity query; reads of people are scoped to the viewer's organization."""

from __future__ import annotations

from collections.abc import Sequence

from beanie import PydanticObjectId

from klikkflow.kit.stores import object_id
from subgraphs.identity.models import MembershipDocument, OrganizationDocument, UserDocument


class IdentityRepository:
    async def user_by_email(self, email: str) -> UserDocument | None:
        return await UserDocument.find_one(UserDocument.email == email)

    async def users_in_organization(
        self, organization_id: str, user_ids: Sequence[str]
    ) -> dict[str, UserDocument]:
        org = object_id(organization_id)
        ids = [i for i in (object_id(u) for u in user_ids) if i is not None]
        if org is None or not ids:
            return {}
        members = await MembershipDocument.find(
            {"organization_id": org, "user_id": {"$in": ids}}
        ).to_list()
        member_ids = [m.user_id for m in members]
        users = await UserDocument.find({"_id": {"$in": member_ids}}).to_list()
        return {str(u.id): u for u in users}

    async def organization(self, organization_id: str) -> OrganizationDocument | None:
        oid = object_id(organization_id)
        return await OrganizationDocument.get(oid) if oid else None

    async def first_membership(self, user_id: PydanticObjectId) -> MembershipDocument | None:
        return await MembershipDocument.find_one(MembershipDocument.user_id == user_id)

    async def slug_taken(self, slug: str) -> bool:
        return await OrganizationDocument.find_one(OrganizationDocument.slug == slug) is not None


repository = IdentityRepository()
