"""Which credentials a workflow uses: its nodes' own and those its nodes' parameters name
(an AI Agent's node tools), so a credential a tool uses is listed and kept from deletion."""

from __future__ import annotations

from klikkflow.engine.workflow import Workflow
from subgraphs.workflows.definition import credential_ids


def test_credentials_of_nodes_and_of_agent_node_tools_are_used():
    tool = {
        "type": "node",
        "name": "fetch",
        "nodeType": "httpRequest",
        "credentials": {"httpBearerAuth": {"id": "tool-cred", "name": "API"}},
    }
    workflow = Workflow.model_validate(
        {
            "name": "Agent",
            "nodes": [
                {"id": "s", "name": "Start", "type": "manualTrigger"},
                {
                    "id": "a",
                    "name": "Agent",
                    "type": "aiAgent",
                    "parameters": {"tools": {"values": [tool]}, "credentials": "not a map"},
                    "credentials": {"openAiApi": {"id": "model-cred", "name": "OpenAI"}},
                },
            ],
            "connections": [],
        }
    )
    assert credential_ids(workflow) == ["model-cred", "tool-cred"]
