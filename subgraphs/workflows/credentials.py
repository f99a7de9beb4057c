"""Credentials: typed secrets nodes use, sealed with envelope encryption.

Values go in through the API and out only to a running execution (`open_for_run`); the
API shows names, types and masked hints. Every change is audited. Any member may see
which credentials exist; editors and above create, change, test and delete them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from beanie import PydanticObjectId
from pymongo.errors import DuplicateKeyError

from klikkflow.kit import vault
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput
from klikkflow.kit.permissions import require
from klikkflow.kit.settings import SubgraphSettings, WorkerSettings
from klikkflow.kit.stores import object_id
from klikkflow.nodes import credentials as types
from klikkflow.nodes.http import CredentialProbe, SsrfPolicy, probe_credential
from subgraphs.identity import audit
from subgraphs.workflows.definition import check_text
from subgraphs.workflows.models import CredentialDocument, WorkflowDocument, now
from subgraphs.workflows.service import workflow as workflow_service

MAX_NAME = 128


class CredentialNotFound(Exception):
    def __init__(self, credential_id: str) -> None:
        super().__init__(f"credential {credential_id} not found")
        self.credential_id = credential_id


class CredentialInUse(Exception):
    def __init__(self, credential_id: str, workflows: list[WorkflowDocument]) -> None:
        names = ", ".join(w.name for w in workflows)
        super().__init__(f"credential {credential_id} is used by: {names}")
        self.credential_id, self.workflows = credential_id, workflows


def _context(document: CredentialDocument) -> bytes:
    return vault.credential_context(str(document.organization_id), str(document.id))


def _clean_name(name: str) -> str:
    problems: dict[str, str] = {}
    name = name.strip()
    if not name or len(name) > MAX_NAME:
        problems["name"] = f"must have 1 to {MAX_NAME} characters"
    check_text(problems, "name", name)
    if problems:
        raise InvalidInput(problems)
    return name


def _validated(type_name: str, values: Any) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise InvalidInput({"data": "must be a JSON object of the credential type's fields"})
    try:
        return types.validate(type_name, values)
    except InvalidInput as exc:
        raise InvalidInput({f"data.{k}": v for k, v in exc.problems.items()}) from None


class CredentialService:
    def __init__(self) -> None:
        self._provider: vault.KeyProvider | None = None
        self._settings: SubgraphSettings | WorkerSettings | None = None

    def configure(
        self, settings: SubgraphSettings | WorkerSettings, provider: vault.KeyProvider
    ) -> None:
        """Called once by the app (or the worker, the CLI) with the vault's key provider."""
        self._settings, self._provider = settings, provider

    @property
    def provider(self) -> vault.KeyProvider:
        if self._provider is None:
            raise RuntimeError("credential service used before configure()")
        return self._provider

    async def _audit(self, viewer: Viewer, action: str, c: CredentialDocument) -> None:
        assert self._settings is not None
        data = {"name": c.name, "type": c.type}
        await audit.record(self._settings, viewer, action, "credential", str(c.id), data)

    # ---- reading -------------------------------------------------------------------

    async def get_many(self, viewer: Viewer, ids: Sequence[str]) -> list[CredentialDocument | None]:
        org = object_id(viewer.organization_id)
        oids = [i for i in (object_id(x) for x in ids) if i is not None]
        if org is None or not oids:
            return [None for _ in ids]
        found = await CredentialDocument.find(
            {"_id": {"$in": oids}, "organization_id": org}
        ).to_list()
        by_id = {str(c.id): c for c in found}
        return [by_id.get(i) for i in ids]

    async def _require(self, viewer: Viewer, credential_id: str) -> CredentialDocument:
        found = (await self.get_many(viewer, [credential_id]))[0]
        if found is None:
            raise CredentialNotFound(credential_id)
        return found

    async def in_organization(
        self, viewer: Viewer, type_name: str | None
    ) -> list[CredentialDocument]:
        query: dict[str, Any] = {"organization_id": object_id(viewer.organization_id)}
        if type_name:
            query["type"] = type_name
        return await CredentialDocument.find(query).sort("name").to_list()

    async def used_by(self, viewer: Viewer, credential_id: str) -> list[WorkflowDocument]:
        return await workflow_service.using_credentials(viewer, [credential_id])

    # ---- changing ------------------------------------------------------------------

    async def create(
        self, viewer: Viewer, name: str, type_name: str, values: Any
    ) -> CredentialDocument:
        require(viewer, "credential.manage")
        name = _clean_name(name)
        clean = _validated(type_name, values)
        document = CredentialDocument(
            id=PydanticObjectId(),
            organization_id=PydanticObjectId(viewer.organization_id),
            owner_id=PydanticObjectId(viewer.user_id),
            updated_by=PydanticObjectId(viewer.user_id),
            name=name,
            type=type_name,
            envelope={},
            hints=types.masked(type_name, clean),
        )
        sealed = await vault.seal_values(self.provider, clean, _context(document))
        document.envelope = sealed.model_dump()
        try:
            await document.insert()
        except DuplicateKeyError:
            raise InvalidInput({"name": "another credential has this name"}) from None
        await self._audit(viewer, "credential.created", document)
        return document

    async def update(
        self, viewer: Viewer, credential_id: str, name: str | None, values: Any
    ) -> CredentialDocument:
        """Rename and/or change values. Fields left out keep their stored values, so a
        client that never saw a secret can change the other fields."""
        require(viewer, "credential.manage")
        document = await self._require(viewer, credential_id)
        if name is not None:
            document.name = _clean_name(name)
        if values is not None:
            if not isinstance(values, dict):
                raise InvalidInput({"data": "must be a JSON object"})
            merged = {**await self._open(document), **values}
            clean = _validated(document.type, merged)
            sealed = await vault.seal_values(self.provider, clean, _context(document))
            document.envelope = sealed.model_dump()
            document.hints = types.masked(document.type, clean)
        document.updated_at, document.updated_by = now(), PydanticObjectId(viewer.user_id)
        try:
            await document.save()
        except DuplicateKeyError:
            raise InvalidInput({"name": "another credential has this name"}) from None
        await self._audit(viewer, "credential.updated", document)
        return document

    async def delete(self, viewer: Viewer, credential_id: str) -> str:
        """Delete a credential no workflow uses (the ones that do are named)."""
        require(viewer, "credential.manage")
        document = await self._require(viewer, credential_id)
        users = await self.used_by(viewer, credential_id)
        if users:
            raise CredentialInUse(credential_id, users)
        await document.delete()
        await self._audit(viewer, "credential.deleted", document)
        return credential_id

    async def test(self, viewer: Viewer, credential_id: str, url: str) -> CredentialProbe:
        require(viewer, "credential.manage")
        document = await self._require(viewer, credential_id)
        assert self._settings is not None
        policy = SsrfPolicy(allow_private=self._settings.allow_private_network)
        probe = await probe_credential(document.type, await self._open(document), url, policy)
        await self._audit(viewer, "credential.tested", document)
        return probe

    # ---- values --------------------------------------------------------------------

    async def _open(self, document: CredentialDocument) -> dict[str, Any]:
        envelope = vault.Envelope.model_validate(document.envelope)
        return await vault.open_values(self.provider, envelope, _context(document))

    async def open_for_run(self, organization_id: str, credential_id: str) -> dict[str, Any]:
        """Decrypted values for an execution of `organization_id` (workers only)."""
        org, oid = object_id(organization_id), object_id(credential_id)
        found = await CredentialDocument.find_one({"_id": oid, "organization_id": org})
        if org is None or oid is None or found is None:
            raise CredentialNotFound(credential_id)
        return await self._open(found)

    async def rotate(self) -> AsyncIterator[tuple[str, bool]]:
        """Re-wrap every credential's data key under the current master key; yields
        (credential id, whether it changed). Values stay readable throughout: each
        document is updated alone, old keys keep opening what is not yet rotated."""
        current = self.provider.current_key_id
        async for document in CredentialDocument.find({"envelope.key_id": {"$ne": current}}):
            envelope = vault.Envelope.model_validate(document.envelope)
            rewrapped = await vault.rewrap(self.provider, envelope, _context(document))
            await CredentialDocument.get_pymongo_collection().update_one(
                {"_id": document.id, "envelope": document.envelope},
                {"$set": {"envelope": rewrapped.model_dump()}},
            )
            yield str(document.id), rewrapped.key_id != envelope.key_id


credential = CredentialService()
