"""Node registration: built-ins, plugins through entry points, and what is refused."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from klikkflow.nodes.base import MAIN, NodeType
from klikkflow.nodes.registry import NodeRegistry, RegistryError, UnknownNodeType


class Good(NodeType):
    type = "acme.good"
    display_name = "Good"
    description = "A well-formed node."
    category = "core"

    async def run(self, ctx, params, inputs):
        return {MAIN: inputs.get(MAIN, [])}


def test_a_well_formed_node_registers_under_each_version():
    class Versions(Good):
        accepted_versions = (1, 1.5, 2)

    registry = NodeRegistry()
    registry.register(Versions)
    assert registry.versions("acme.good") == [1.0, 1.5, 2.0]
    assert registry.get("acme.good", 1.5) is Versions


def test_a_malformed_node_is_refused_with_every_reason():
    class Bad(NodeType):
        type = "no spaces allowed"
        display_name = ""
        description = "x"
        category = "misc"
        Params = dict  # type: ignore[assignment]

        async def run(self, ctx, params, inputs):
            return {}

    with pytest.raises(RegistryError) as refused:
        NodeRegistry().register(Bad)
    message = str(refused.value)
    assert "`type` must be a dotted name" in message
    assert "`display_name` must be a non-empty string" in message
    assert "`category` must be one of" in message
    assert "`Params` must be a pydantic model" in message


def test_a_version_collision_names_both_classes():
    class Twin(Good):
        pass

    registry = NodeRegistry()
    registry.register(Good)
    with pytest.raises(
        RegistryError, match=r"'acme.good' version 1 is registered twice: by .*Good and by .*Twin"
    ):
        registry.register(Twin)


def test_an_unknown_type_or_version_says_what_is_known():
    registry = NodeRegistry()
    registry.register(Good)
    with pytest.raises(UnknownNodeType, match=r"has no version 3 \(known: 1\)"):
        registry.get("acme.good", 3)
    with pytest.raises(UnknownNodeType, match="unknown node type 'acme.nope'"):
        registry.get("acme.nope", 1)


@pytest.fixture
def plugin_distribution(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An installed distribution with a `klikkflow.nodes` entry point, on sys.path."""
    (tmp_path / "acme_nodes.py").write_text(
        textwrap.dedent("""
        from klikkflow.nodes.base import MAIN, NodeType

        class Shout(NodeType):
            type = "acme.shout"
            display_name = "Shout"
            description = "Upper-cases json.text."
            category = "transform"

            async def run(self, ctx, params, inputs):
                return {MAIN: [{"json": {"text": i["json"]["text"].upper()}}
                               for i in inputs.get(MAIN, [])]}

        class Broken(NodeType):
            type = "acme.broken"
            display_name = "Broken"
            description = "Has no category."
            category = ""

            async def run(self, ctx, params, inputs):
                return {}
    """)
    )
    info = tmp_path / "acme_nodes-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-nodes\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    return info


def test_plugins_register_through_the_entry_point_group(plugin_distribution: Path):
    (plugin_distribution / "entry_points.txt").write_text(
        "[klikkflow.nodes]\nshout = acme_nodes:Shout\n"
    )
    registry = NodeRegistry()
    registry.load_entry_points()
    assert registry.get("acme.shout", 1).display_name == "Shout"
    sys.modules.pop("acme_nodes", None)


def test_an_invalid_plugin_is_refused_naming_the_plugin(plugin_distribution: Path):
    (plugin_distribution / "entry_points.txt").write_text(
        "[klikkflow.nodes]\nbroken = acme_nodes:Broken\n"
    )
    with pytest.raises(RegistryError, match="plugin 'broken': invalid node class"):
        NodeRegistry().load_entry_points()
    sys.modules.pop("acme_nodes", None)
