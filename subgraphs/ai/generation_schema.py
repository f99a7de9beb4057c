"""GraphQL for natural-language workflow creation and template recommendations:
`GenerationQuery` and `GenerationMutation`, which the AI subgraph's Query and Mutation
inherit (subgraphs/ai/schema.py)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Literal

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession
from strawberry.scalars import JSON

from klikkflow.ai.llm import LlmError, LlmProviderError, LlmTimeout, Usage
from klikkflow.kit.auth import Viewer
from klikkflow.kit.errors import InvalidInput, NotAllowed
from klikkflow.kit.graphql import (
    Error,
    ForbiddenError,
    NotFoundError,
    ValidationError,
    validation_error,
)
from subgraphs.ai.generation import DEFAULT_TIMEOUT, GenerationRefused, generation
from subgraphs.ai.templates import Match, template_library
from subgraphs.workflows.credentials import CredentialNotFound

# ---- types ---------------------------------------------------------------------------------


@strawberry.federation.type(keys=["id"], description="A workflow, owned by the workflows subgraph.")
class Workflow:
    id: strawberry.ID = strawberry.field(description="The workflow's id.")

    @classmethod
    def resolve_reference(cls, id: strawberry.ID) -> Workflow:
        return cls(id=id)


@strawberry.type(description="Tokens a language model read and wrote for one request.")
class TokenCount:
    input_tokens: int = strawberry.field(description="Tokens of the prompts, repairs included.")
    output_tokens: int = strawberry.field(description="Tokens of the answers.")

    @strawberry.field(description="Input and output tokens together.")
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @classmethod
    def from_usage(cls, usage: Usage) -> TokenCount:
        return cls(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)


@strawberry.input(description="What to build, and which language model designs it.")
class GenerateWorkflowInput:
    description: str = strawberry.field(
        description="What the workflow should do, in your words (at most 4,000 characters)."
    )
    credential_id: strawberry.ID = strawberry.field(
        description="An openAiApi or anthropicApi credential of your organization."
    )
    model: str = strawberry.field(
        description="The model's name as the provider knows it, e.g. gpt-4o or llama3.1."
    )
    timeout_seconds: float = strawberry.field(
        default=DEFAULT_TIMEOUT,
        description="How long to wait for each answer of the model (1 to 600 seconds).",
    )


@strawberry.type(description="The workflow was designed, checked and saved as a draft.")
class GenerateWorkflowSuccess:
    workflow: Workflow = strawberry.field(
        description="The new workflow (version 1, not active): open it in the editor."
    )
    definition: JSON = strawberry.field(description="Its nodes, connections and settings.")
    attempts: int = strawberry.field(
        description="Answers of the model it took: 1 when the first was valid, more when "
        "problems were sent back for repair."
    )
    model: str = strawberry.field(description="The model that answered, as it named itself.")
    usage: TokenCount = strawberry.field(description="Tokens used over every answer.")


@strawberry.type(
    description="The model's workflow was still invalid after the repair rounds: nothing was saved."
)
class GenerationRefusedError(Error):
    reasons: list[str] = strawberry.field(
        description="What was wrong with the last answer, as `path: problem`."
    )
    attempts: int = strawberry.field(description="Answers of the model that were tried.")
    usage: TokenCount = strawberry.field(description="Tokens used over every answer.")


@strawberry.enum(description="Why a language model call failed.")
class LanguageModelFailure(Enum):
    TIMEOUT = "timeout"
    PROVIDER = "provider"
    MALFORMED = "malformed"


@strawberry.type(
    description="The language model could not be asked or did not answer usably (timeout, "
    "refused key, unreachable, unreadable answer); nothing was saved."
)
class LanguageModelError(Error):
    failure: LanguageModelFailure = strawberry.field(description="What kind of failure it was.")
    status: int | None = strawberry.field(description="The provider's HTTP status, if any.")
    retryable: bool = strawberry.field(description="Whether trying again later may work.")


GenerateWorkflowResult = Annotated[
    GenerateWorkflowSuccess
    | GenerationRefusedError
    | LanguageModelError
    | ValidationError
    | NotFoundError
    | ForbiddenError,
    strawberry.union("GenerateWorkflowResult", description="Outcome of generateWorkflow."),
]


@strawberry.type(description="A shipped workflow template and how well it fits a query.")
class WorkflowTemplateMatch:
    id: strawberry.ID = strawberry.field(description="The template's id (its file name).")
    name: str = strawberry.field(description="Its title.")
    description: str = strawberry.field(description="What it does and what it needs.")
    tags: list[str] = strawberry.field(description="Keywords.")
    score: float = strawberry.field(
        description="Cosine similarity of the query's meaning to the template's name, "
        "description and tags (higher is closer; 0 when no query was given)."
    )
    definition: JSON = strawberry.field(
        description="The workflow document: pass it to createWorkflow or importWorkflow."
    )

    @classmethod
    def from_match(cls, match: Match) -> WorkflowTemplateMatch:
        t = match.template
        return cls(
            id=strawberry.ID(t.id),
            name=t.name,
            description=t.description,
            tags=list(t.tags),
            score=round(match.score, 4),
            definition=t.workflow,
        )


# ---- errors --------------------------------------------------------------------------------


def language_model_error(exc: LlmError) -> LanguageModelError:
    failure: Literal["timeout", "provider", "malformed"] = "malformed"
    status, retryable = None, False
    if isinstance(exc, LlmTimeout):
        failure, retryable = "timeout", True
    elif isinstance(exc, LlmProviderError):
        failure, status = "provider", exc.status
        retryable = status is None or status == 429 or status >= 500
    message = str(exc) if failure == "provider" else f"{exc.provider} model {exc.model!r}: {exc}"
    return LanguageModelError(
        message=f"the language model failed: {message}",
        failure=LanguageModelFailure(failure),
        status=status,
        retryable=retryable,
    )


def refused(exc: GenerationRefused) -> GenerationRefusedError:
    return GenerationRefusedError(
        message=f"the model could not design a valid workflow: {exc}",
        reasons=exc.reasons,
        attempts=exc.attempts,
        usage=TokenCount.from_usage(exc.usage),
    )


# ---- root fields ---------------------------------------------------------------------------


@strawberry.type
class GenerationQuery:
    @strawberry.field(
        description="Shipped workflow templates ranked by how close their name, description "
        "and tags are in meaning to `query` (local embeddings), best first; a blank query "
        "lists them in library order."
    )
    async def recommend_templates(
        self, info: strawberry.Info, query: str, first: int = 5
    ) -> list[WorkflowTemplateMatch]:
        info.context.require_viewer()
        found = await template_library.recommend(query, first)
        return [WorkflowTemplateMatch.from_match(m) for m in found]


@strawberry.type
class GenerationMutation:
    @strawberry.mutation(
        description="Design a workflow from a description with a language model: the model "
        "gets the node catalog, its answer is checked like any saved workflow, problems go "
        "back to it for up to two repairs, and only a valid workflow is saved, as a new "
        "draft of your organization. A still-invalid one is refused with the reasons."
    )
    async def generate_workflow(
        self, info: strawberry.Info, input: GenerateWorkflowInput
    ) -> GenerateWorkflowResult:
        viewer = info.context.require_viewer()
        async with info.context.state.sessions() as session:
            result = await _generated(session, viewer, input)
            await session.commit()  # the tokens the model used, whatever came of them
        return result


async def _generated(
    session: AsyncSession, viewer: Viewer, input: GenerateWorkflowInput
) -> GenerateWorkflowResult:
    try:
        made = await generation.generate(
            session,
            viewer,
            input.description,
            str(input.credential_id),
            input.model,
            input.timeout_seconds,
        )
    except InvalidInput as exc:
        return validation_error(exc, "generation refused")
    except NotAllowed as exc:
        return ForbiddenError(message=str(exc))
    except CredentialNotFound as exc:
        return NotFoundError(message=str(exc), id=input.credential_id)
    except GenerationRefused as exc:
        return refused(exc)
    except LlmError as exc:
        return language_model_error(exc)
    return GenerateWorkflowSuccess(
        workflow=Workflow(id=strawberry.ID(str(made.workflow.id))),
        definition=made.document,
        attempts=made.attempts,
        model=made.model,
        usage=TokenCount.from_usage(made.usage),
    )
