"""Code node: JavaScript in QuickJS and Python in a confined child process."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import pytest

from klikkflow.engine.context import RunContext
from klikkflow.engine.expressions import ExpressionEngine
from klikkflow.engine.workflow import NodeSpec
from klikkflow.nodes.base import NodeError
from klikkflow.nodes.code import CODE_NODES, Code, SandboxLimits

TIGHT = SandboxLimits(cpu_seconds=1, wall_seconds=3, memory_bytes=128 * 2**20)
PYTHONS = ["pythonNative", "python"]
ITEMS = [{"json": {"n": 1}}, {"json": {"n": 2}}]


async def run_code(
    language: str,
    code: str,
    items: list[dict[str, Any]] | None = None,
    *,
    mode: str = "runOnceForAllItems",
    limits: SandboxLimits = TIGHT,
) -> list[dict[str, Any]]:
    key = "jsCode" if language == "javaScript" else "pythonCode"
    parameters = {"language": language, "mode": mode, key: code}
    spec = NodeSpec.model_validate(
        {"id": "c1", "name": "Code", "type": "code", "typeVersion": 2, "parameters": parameters}
    )
    ctx = RunContext(
        node=spec, expressions=ExpressionEngine(execution_id="ex", workflow={"nodes": []})
    )
    ctx.sandbox_limits = limits  # type: ignore[attr-defined]
    params = Code.Params.model_validate(parameters)
    out = await Code().run(ctx, params, {"main": ITEMS if items is None else items})
    return out["main"]  # type: ignore[index]


def test_exports_the_node() -> None:
    assert [Code] == CODE_NODES
    assert Code.versions() == (2,)


# ---- Python -----------------------------------------------------------------------------


@pytest.mark.parametrize("language", PYTHONS)
async def test_python_all_items(language: str) -> None:
    code = (
        "out = [{'double': it['json']['n'] * 2} for it in _items]\n"
        "assert items is _items and _input.first() is _items[0]\n"
        "return out + [_input.last()]"
    )
    got = await run_code(language, code)
    assert [g["json"] for g in got] == [{"double": 2}, {"double": 4}, {"n": 2}]


@pytest.mark.parametrize("language", PYTHONS)
async def test_python_each_item(language: str) -> None:
    code = "_json['index'] = _itemIndex\nreturn _item if _json['n'] > 1 else {'small': True}"
    got = await run_code(language, code, mode="runOnceForEachItem")
    assert got == [
        {"json": {"small": True}, "pairedItem": {"item": 0}},
        {"json": {"n": 2, "index": 1}, "pairedItem": {"item": 1}},
    ]


async def test_python_items_allow_attribute_access_like_n8n_pyodide() -> None:
    code = "for it in _input.all():\n    it.json.seen = it.json.n + 10\nreturn _input.all()"
    got = await run_code("python", code)
    assert [g["json"]["seen"] for g in got] == [11, 12]


async def test_python_parses_dates_with_strptime() -> None:
    """datetime.strptime imports _strptime on first use: the sandbox has it loaded."""
    code = (
        "from datetime import datetime\n"
        "return [{'day': datetime.strptime('2026-11-30', '%Y-%m-%d').strftime('%A')}]"
    )
    got = await run_code("python", code)
    assert [g["json"] for g in got] == [{"day": "Monday"}]


async def test_python_prints_go_to_the_log_not_the_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="klikkflow.nodes"):
        got = await run_code("pythonNative", "print('hello from code')\nreturn [{'ok': 1}]")
    assert [g["json"] for g in got] == [{"ok": 1}]
    assert "hello from code" in caplog.text


async def test_python_error_names_the_exception_and_line() -> None:
    with pytest.raises(NodeError, match=r"^ZeroDivisionError: division by zero \[line 3\]$"):
        await run_code("pythonNative", "a = 1\nb = 0\nreturn [{'x': a / b}]")


async def test_python_error_in_one_item_names_the_item() -> None:
    code = "if _json['n'] == 2:\n    raise ValueError('bad item')\nreturn _item"
    with pytest.raises(NodeError, match=r"ValueError: bad item \[line 2\]") as caught:
        await run_code("pythonNative", code, mode="runOnceForEachItem")
    assert caught.value.item_index == 1


async def test_python_syntax_error() -> None:
    with pytest.raises(NodeError, match=r"SyntaxError.*\[line 2\]"):
        await run_code("pythonNative", "x = 1\ndef broken(:\n    pass")


async def test_python_infinite_loop_hits_the_cpu_limit() -> None:
    with pytest.raises(NodeError, match="code exceeded its CPU time limit"):
        await run_code("pythonNative", "while True:\n    pass")


async def test_python_sleeping_hits_the_wall_clock_limit() -> None:
    limits = SandboxLimits(cpu_seconds=5, wall_seconds=1)
    with pytest.raises(NodeError, match="code exceeded its time limit"):
        await run_code("pythonNative", "import time\ntime.sleep(30)", limits=limits)


async def test_python_memory_bomb_hits_the_memory_limit() -> None:
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(10 * 2**20))"
    with pytest.raises(NodeError, match="code exceeded its memory limit"):
        await run_code("pythonNative", code)


async def test_python_does_not_see_the_workers_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KLIKKFLOW_SECRET_KEY", "worker-secret")
    code = f"""
import os
try:
    with open('/proc/{os.getpid()}/environ', 'rb') as f:
        parent = f.read().decode(errors='replace')
except OSError as exc:
    parent = 'unreadable: ' + type(exc).__name__
return [{{'env': dict(os.environ), 'parent': parent, 'cwd': os.listdir('.')}}]
"""
    [got] = await run_code("pythonNative", code)
    assert "KLIKKFLOW_SECRET_KEY" not in got["json"]["env"]
    assert "worker-secret" not in str(got["json"])
    assert got["json"]["parent"].startswith("unreadable")
    assert got["json"]["cwd"] == []


async def test_python_cannot_write_files() -> None:
    # Its own directory is writable, so only the file-size limit stops the write.
    code = """
import os
try:
    with open('probe.txt', 'w') as f:
        f.write('x' * 100)
    error = None
except OSError as exc:
    error = type(exc).__name__
return [{'error': error, 'size': os.path.getsize('probe.txt')}]
"""
    [got] = await run_code("pythonNative", code)
    assert got["json"] == {"error": "OSError", "size": 0}


@pytest.mark.skipif(os.getuid() != 0, reason="the child drops to nobody only when run as root")
async def test_python_runs_as_nobody_without_network() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    code = f"""
import os
try:
    import socket
    socket.create_connection(('127.0.0.1', {port}), timeout=1).close()
    reached = True
except Exception:
    reached = False
return [{{'uid': os.getuid(), 'reached': reached}}]
"""
    try:
        [got] = await run_code("pythonNative", code)
    finally:
        listener.close()
    assert got["json"] == {"uid": 65534, "reached": False}


@pytest.mark.skipif(os.getuid() != 0, reason="the child confines itself only when run as root")
async def test_python_cannot_start_processes_or_see_the_host_files() -> None:
    code = """
import os
try:
    os.fork()
    forked = 'yes'
except OSError as exc:
    forked = type(exc).__name__
return [{'forked': forked, 'root': sorted(os.listdir('/')), 'proc': os.path.exists('/proc')}]
"""
    [got] = await run_code("pythonNative", code)
    assert got["json"] == {"forked": "BlockingIOError", "root": [], "proc": False}


async def test_python_returning_a_non_object_is_an_error() -> None:
    with pytest.raises(NodeError, match="doesn't return items properly"):
        await run_code("pythonNative", "return [1, 2]")


# ---- JavaScript -------------------------------------------------------------------------


async def test_javascript_all_items() -> None:
    code = "return $input.all().map(i => ({double: i.json.n * 2})).concat([items[1]]);"
    got = await run_code("javaScript", code)
    assert [g["json"] for g in got] == [{"double": 2}, {"double": 4}, {"n": 2}]


async def test_javascript_each_item() -> None:
    code = "$json.index = $itemIndex;\nreturn $json.n > 1 ? $input.item : {small: true};"
    got = await run_code("javaScript", code, mode="runOnceForEachItem")
    assert got == [
        {"json": {"small": True}, "pairedItem": {"item": 0}},
        {"json": {"n": 2, "index": 1}, "pairedItem": {"item": 1}},
    ]


async def test_javascript_console_log_and_await(caplog: pytest.LogCaptureFixture) -> None:
    code = "console.log('seen', {n: 1});\nconst v = await Promise.resolve(7);\nreturn [{v}];"
    with caplog.at_level(logging.INFO, logger="klikkflow.nodes"):
        got = await run_code("javaScript", code)
    assert [g["json"] for g in got] == [{"v": 7}]
    assert 'seen {"n":1}' in caplog.text


async def test_javascript_error_names_the_line() -> None:
    with pytest.raises(NodeError, match=r"TypeError: cannot read property 'x' of null \[line 3\]"):
        await run_code("javaScript", "const a = 1;\nconst b = null;\nreturn [{x: b.x}];")


async def test_javascript_error_in_one_item_names_the_item() -> None:
    code = "if ($json.n === 2) throw new Error('bad item');\nreturn $json;"
    with pytest.raises(NodeError, match="Error: bad item") as caught:
        await run_code("javaScript", code, mode="runOnceForEachItem")
    assert caught.value.item_index == 1


async def test_javascript_infinite_loop_hits_the_time_limit() -> None:
    with pytest.raises(NodeError, match="code exceeded its CPU time limit"):
        await run_code("javaScript", "while (true) {}")


async def test_javascript_memory_bomb_hits_the_memory_limit() -> None:
    code = "const a = []; while (true) a.push('x'.repeat(100000) + a.length);"
    with pytest.raises(NodeError, match="code exceeded its memory limit"):
        await run_code("javaScript", code)


async def test_javascript_has_no_io() -> None:
    code = (
        "return [{kinds: [typeof require, typeof fetch, typeof process, typeof std,"
        " typeof os, typeof XMLHttpRequest]}];"
    )
    [got] = await run_code("javaScript", code)
    assert got["json"]["kinds"] == ["undefined"] * 6


async def test_javascript_each_item_must_return_one_object() -> None:
    with pytest.raises(NodeError, match="Code doesn't return a single object"):
        await run_code("javaScript", "return [$json];", mode="runOnceForEachItem")
