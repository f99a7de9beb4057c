"""Knowledge bases through the router: create one, add documents, search."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from tests.factories.graphql import data, gql
from tests.factories.identity import Account

DOCUMENT_FIELDS = "id name contentType size sha256 status title chunkCount metadata createdAt"

ADD_DOCUMENT = f"""
mutation ($input: AddDocumentInput!) {{
  addDocument(input: $input) {{
    __typename
    ... on AddDocumentSuccess {{ document {{ {DOCUMENT_FIELDS} }} }}
    ... on Error {{ message }}
    ... on ValidationError {{ fields {{ path message }} }}
    ... on NotFoundError {{ id }}
  }}
}}
"""

SEARCH = """
query ($kb: ID!, $query: String!, $k: Int!, $filter: KnowledgeSearchFilter) {
  searchKnowledgeBase(knowledgeBaseId: $kb, query: $query, k: $k, filter: $filter) {
    __typename
    ... on KnowledgeSearchResults {
      model
      hits {
        chunkId ordinal text heading page metadata score vectorRank similarity textRank
        textScore highlight document { id name }
      }
    }
    ... on Error { message }
  }
}
"""


async def create_knowledge_base(
    client: httpx.AsyncClient, router_url: str, account: Account, name: str = "Handbook"
) -> str:
    result = data(
        await gql(
            client,
            router_url,
            "mutation ($name: String!) { createKnowledgeBase(input: {name: $name}) {"
            " __typename ... on CreateKnowledgeBaseSuccess { knowledgeBase { id } } } }",
            {"name": name},
            account.token,
        )
    )["createKnowledgeBase"]
    assert result["__typename"] == "CreateKnowledgeBaseSuccess", result
    return str(result["knowledgeBase"]["id"])


async def add_document(
    client: httpx.AsyncClient,
    router_url: str,
    token: str,
    knowledge_base: str,
    name: str,
    *,
    text: str | None = None,
    content: bytes | None = None,
    content_type: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """addDocument's answer (any member of its union)."""
    given: dict[str, Any] = {"knowledgeBaseId": knowledge_base, "name": name}
    if text is not None:
        given["text"] = text
    if content is not None:
        given["contentBase64"] = base64.b64encode(content).decode()
    if content_type is not None:
        given["contentType"] = content_type
    if metadata is not None:
        given["metadata"] = metadata
    result = data(await gql(client, router_url, ADD_DOCUMENT, {"input": given}, token))
    answer: dict[str, Any] = result["addDocument"]
    return answer


async def added(
    client: httpx.AsyncClient,
    router_url: str,
    token: str,
    knowledge_base: str,
    name: str,
    **kw: Any,
) -> dict[str, Any]:
    """The document addDocument added (it must succeed)."""
    answer = await add_document(client, router_url, token, knowledge_base, name, **kw)
    assert answer["__typename"] == "AddDocumentSuccess", answer
    document: dict[str, Any] = answer["document"]
    return document


async def search(
    client: httpx.AsyncClient,
    router_url: str,
    token: str,
    knowledge_base: str,
    query: str,
    k: int = 5,
    filter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """searchKnowledgeBase's answer (any member of its union)."""
    variables = {"kb": knowledge_base, "query": query, "k": k, "filter": filter}
    answer: dict[str, Any] = data(await gql(client, router_url, SEARCH, variables, token))[
        "searchKnowledgeBase"
    ]
    return answer


async def hits(
    client: httpx.AsyncClient,
    router_url: str,
    token: str,
    knowledge_base: str,
    query: str,
    **kw: Any,
) -> list[dict[str, Any]]:
    answer = await search(client, router_url, token, knowledge_base, query, **kw)
    assert answer["__typename"] == "KnowledgeSearchResults", answer
    found: list[dict[str, Any]] = answer["hits"]
    return found
