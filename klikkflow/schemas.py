"""`klikkflow schema export | compose | check`: the committed SDL files are the API contract."""

from __future__ import annotations

import difflib
import importlib
import json
import subprocess
import tempfile
from pathlib import Path

from strawberry.printer import print_schema

from klikkflow.kit.settings import SUBGRAPHS
from klikkflow.router import ROOT, ROUTER_DIR, ensure_router_deps

SCHEMAS_DIR = ROOT / "schemas"


class SchemaDrift(Exception):
    pass


def subgraph_sdl(name: str) -> str:
    # Loaded by name: the kernel never imports subgraph code statically.
    schema = importlib.import_module(f"subgraphs.{name}.schema").schema
    return print_schema(schema).rstrip() + "\n"


WORKFLOW_SCHEMA = "workflow.schema.json"


def workflow_schema_text() -> str:
    from klikkflow.engine.workflow import json_schema

    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def export(target: Path = SCHEMAS_DIR) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    (target / WORKFLOW_SCHEMA).write_text(workflow_schema_text())
    written = [target / WORKFLOW_SCHEMA]
    for name in SUBGRAPHS:
        path = target / f"{name}.graphql"
        path.write_text(subgraph_sdl(name))
        written.append(path)
    return written


def _compose(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    ensure_router_deps()
    return subprocess.run(
        ["node", str(ROUTER_DIR / "compose.mjs"), str(directory), *extra],
        capture_output=True,
        text=True,
        cwd=ROUTER_DIR,
        check=False,
    )


def compose(directory: Path = SCHEMAS_DIR) -> str:
    result = _compose(directory)
    if result.returncode != 0:
        raise SchemaDrift(result.stderr.strip() or "composition failed")
    return result.stdout.strip()


def check(directory: Path = SCHEMAS_DIR) -> None:
    """Raise SchemaDrift when code, subgraph SDL and supergraph disagree or fail to compose."""
    problems = []
    workflow_path = directory / WORKFLOW_SCHEMA
    if not workflow_path.exists() or workflow_path.read_text() != workflow_schema_text():
        problems.append(f"{workflow_path} drifted from klikkflow/engine/workflow.py")
    for name in SUBGRAPHS:
        committed_path = directory / f"{name}.graphql"
        committed = committed_path.read_text() if committed_path.exists() else ""
        current = subgraph_sdl(name)
        if committed != current:
            diff = "".join(
                difflib.unified_diff(
                    committed.splitlines(True),
                    current.splitlines(True),
                    f"{committed_path} (committed)",
                    f"{name} (code)",
                    n=1,
                )
            )
            problems.append(f"{committed_path} drifted from the code:\n{diff[:4000]}")
    with tempfile.TemporaryDirectory() as tmp:
        # Compose from the code's SDL so a composition error shows even before export.
        export(Path(tmp))
        composed = _compose(Path(tmp))
        if composed.returncode != 0:
            problems.append(composed.stderr.strip())
        else:
            fresh = (Path(tmp) / "supergraph.graphql").read_text()
            current_path = directory / "supergraph.graphql"
            if not current_path.exists() or current_path.read_text() != fresh:
                problems.append(f"{current_path} is not the composition of the subgraph schemas")
    if problems:
        raise SchemaDrift(
            "\n".join(problems) + "\nfix: run `klikkflow schema export && klikkflow schema compose`"
        )
