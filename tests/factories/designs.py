"""Workflow designs a scripted language model answers to generateWorkflow, for tests."""

from __future__ import annotations

import json
from typing import Any

#: A valid design: a trigger and one step, in the document format the model is asked for.
DESIGN: dict[str, Any] = {
    "name": "Greet the team",
    "description": "Builds a greeting when started by hand.",
    "tags": ["greeting"],
    "nodes": [
        {"name": "Start", "type": "manualTrigger", "typeVersion": 1, "parameters": {}},
        {
            "name": "Greeting",
            "type": "set",
            "parameters": {
                "mode": "manual",
                "assignments": {
                    "assignments": [{"name": "text", "type": "string", "value": "Hello, team"}]
                },
            },
        },
    ],
    "connections": [{"source": "Start", "target": "Greeting"}],
}


def broken_design() -> str:
    """An unknown node type and a connection to a node that does not exist."""
    nodes = [DESIGN["nodes"][0], {**DESIGN["nodes"][1], "type": "slackSendMessage"}]
    connections = [*DESIGN["connections"], {"source": "Greeting", "target": "Nowhere"}]
    return json.dumps({**DESIGN, "nodes": nodes, "connections": connections})
