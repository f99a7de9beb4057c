"""The committed SDL in schemas/ is the contract: `klikkflow schema check` guards it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from klikkflow import schemas


def test_committed_schemas_match_the_code_and_compose():
    result = subprocess.run(
        [sys.executable, "-m", "klikkflow.cli", "schema", "check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.fixture
def schemas_copy(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(schemas.SCHEMAS_DIR, target)
    return target


def test_check_fails_when_a_subgraph_sdl_drifts(schemas_copy: Path):
    sdl = schemas_copy / "workflows.graphql"
    sdl.write_text(sdl.read_text().replace("updatedAt: DateTime!", "updatedAt: String!"))
    with pytest.raises(schemas.SchemaDrift, match="workflows.graphql drifted from the code"):
        schemas.check(schemas_copy)


def test_check_fails_when_the_supergraph_is_stale(schemas_copy: Path):
    supergraph = schemas_copy / "supergraph.graphql"
    supergraph.write_text(supergraph.read_text().replace("knowledgeBases", "kbs"))
    with pytest.raises(schemas.SchemaDrift, match="not the composition"):
        schemas.check(schemas_copy)


def test_compose_reports_a_composition_error(schemas_copy: Path):
    # Two subgraphs defining the same non-shareable field cannot compose.
    ai = schemas_copy / "ai.graphql"
    ai.write_text(ai.read_text() + '\ntype Workflow @key(fields: "id") { id: ID! name: String! }\n')
    with pytest.raises(schemas.SchemaDrift, match="composition error"):
        schemas.compose(schemas_copy)


def test_export_writes_what_the_running_schema_serves(tmp_path: Path):
    written = schemas.export(tmp_path)
    assert sorted(p.name for p in written) == [
        "ai.graphql",
        "executions.graphql",
        "identity.graphql",
        "workflow.schema.json",
        "workflows.graphql",
    ]
    identity = (tmp_path / "identity.graphql").read_text()
    assert "specs.apollo.dev/federation/v2.9" in identity
    assert 'type User @key(fields: "id")' in identity


def test_check_fails_when_the_workflow_json_schema_drifts(schemas_copy: Path):
    path = schemas_copy / "workflow.schema.json"
    path.write_text(path.read_text().replace('"maxTries"', '"maxAttempts"'))
    with pytest.raises(schemas.SchemaDrift, match="workflow.schema.json drifted"):
        schemas.check(schemas_copy)
