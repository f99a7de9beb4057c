"""The workflow document: nodes, connections between named ports, settings, pinned data.

Field names are n8n's where n8n has one (`typeVersion`, `parameters`, `position`,
`pinData`), so its users read our JSON at sight; connections are an explicit edge list
between named ports. `schemas/workflow.schema.json` is generated from these models.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_NODES = 2_000
MAX_NAME = 128


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RetryPolicy(_Doc):
    """Retries of a failing node: waits grow by `backoff` from `waitMs` up to `maxWaitMs`."""

    max_tries: int = Field(
        3, ge=1, le=10, alias="maxTries", description="Tries in all, first included."
    )
    wait_ms: int = Field(
        1000, ge=0, le=3_600_000, alias="waitMs", description="Wait before the 2nd try."
    )
    backoff: float = Field(2.0, ge=1.0, le=10.0, description="Factor applied to the wait per try.")
    max_wait_ms: int = Field(
        300_000, ge=0, le=86_400_000, alias="maxWaitMs", description="Cap of one wait."
    )

    def delay_ms(self, failed_tries: int) -> int:
        """Wait before try number `failed_tries + 1` (after `failed_tries` failures)."""
        return int(min(self.wait_ms * self.backoff ** max(failed_tries - 1, 0), self.max_wait_ms))


class OnError(StrEnum):
    STOP = "stop"  # the execution fails
    CONTINUE = "continue"  # the input items go on, each with its error under json.error
    ERROR_OUTPUT = "errorOutput"  # the input items go to the node's "error" output port


class CredentialRef(_Doc):
    id: str = Field(description="Id of the stored credential.")
    name: str = Field("", description="Its name when the workflow was saved (for people).")


class NodeSpec(_Doc):
    id: str = Field(min_length=1, max_length=64, description="Stable id, unique in the workflow.")
    name: str = Field(
        min_length=1, max_length=MAX_NAME, description="Unique name; expressions use it."
    )
    type: str = Field(
        min_length=1, max_length=128, description="Node type, e.g. `set` or `acme.crm`."
    )
    type_version: float = Field(
        1, alias="typeVersion", ge=1, description="Version of the node type."
    )
    parameters: dict[str, Any] = Field(
        default_factory=dict, description="Type-specific parameters."
    )
    position: tuple[float, float] = Field((0, 0), description="Canvas position [x, y].")
    credentials: dict[str, CredentialRef] = Field(
        default_factory=dict, description="Credential type -> stored credential."
    )
    retry: RetryPolicy | None = Field(None, description="Retry policy; none means one try.")
    on_error: OnError = Field(OnError.STOP, alias="onError", description="What a failure does.")
    disabled: bool = Field(False, description="A disabled node passes its input through unchanged.")
    notes: str = Field("", max_length=10_000, description="Free text for people.")


class Connection(_Doc):
    source: str = Field(description="Name of the node the items leave.")
    source_output: str = Field("main", alias="sourceOutput", description="Its output port.")
    target: str = Field(description="Name of the node the items enter.")
    target_input: str = Field("main", alias="targetInput", description="Its input port.")


class SaveData(StrEnum):
    ALL = "all"
    ERRORS = "errors"
    NONE = "none"


class WorkflowSettings(_Doc):
    timeout_seconds: int | None = Field(
        None, alias="timeoutSeconds", ge=1, le=7 * 86_400, description="Execution time limit."
    )
    error_workflow: str | None = Field(
        None, alias="errorWorkflow", description="Workflow id run when an execution fails."
    )
    timezone: str = Field("UTC", description="IANA time zone for schedules and dates.")
    save_data: SaveData = Field(
        SaveData.ALL, alias="saveData", description="Which executions keep node data."
    )


class Workflow(_Doc):
    id: str | None = Field(None, description="Id once stored.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    nodes: list[NodeSpec] = Field(max_length=MAX_NODES, description="The nodes.")
    connections: list[Connection] = Field(default_factory=list, description="Edges between ports.")
    settings: WorkflowSettings = Field(default_factory=WorkflowSettings)  # type: ignore[arg-type]
    pin_data: dict[str, list[dict[str, Any]]] = Field(
        default_factory=dict,
        alias="pinData",
        description="Node name -> items it outputs instead of running (for building and tests).",
    )

    def node(self, name: str) -> NodeSpec:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)


def json_schema() -> dict[str, Any]:
    schema = Workflow.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://klikkflow.dev/schemas/workflow.schema.json"
    return schema
