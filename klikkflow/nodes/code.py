"""The Code node (n8n `code` v2): the user's JavaScript or Python over the input items.

JavaScript runs in a fresh QuickJS context per run (no I/O exists there), with memory and
time limits. Python runs in a separate, confined child process (`sandbox_runner.py`): an
empty environment and directory, rlimits, no network, the `nobody` user when the worker is
root, and a wall-clock limit enforced here by killing its process group.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import quickjs
from pydantic import Field

from klikkflow.nodes.base import MAIN, Inputs, Item, NodeContext, NodeError, NodeType, Outputs
from klikkflow.nodes.base import Parameters as BaseParameters

RUNNER = Path(__file__).with_name("sandbox_runner.py")
MEMORY_EXIT = 71  # sandbox_runner.MEMORY_EXIT (the runner is a script, not imported)
ALL_ITEMS: Final = "runOnceForAllItems"
EACH_ITEM: Final = "runOnceForEachItem"
ITEM_KEYS = frozenset({"json", "binary", "pairedItem", "error"})

DEFAULT_JS = """// Add a new field called 'myNewField' to the JSON of each input item
for (const item of $input.all()) {
  item.json.myNewField = 1;
}

return $input.all();"""

DEFAULT_PYTHON = """# Add a new field called 'my_new_field' to the JSON of each input item
for item in _input.all():
    item["json"]["my_new_field"] = 1
return _input.all()"""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits of one Code node run; the runner may set `ctx.sandbox_limits` per execution."""

    cpu_seconds: int = 10
    wall_seconds: float = 30.0
    memory_bytes: int = 256 * 1024 * 1024
    max_output_bytes: int = 32 * 1024 * 1024
    js_stack_bytes: int = 1024 * 1024


DEFAULT_LIMITS = SandboxLimits()


class CodeParameters(BaseParameters):
    language: Literal["javaScript", "python", "pythonNative"] = "javaScript"
    mode: Literal["runOnceForAllItems", "runOnceForEachItem"] = ALL_ITEMS
    js_code: str = Field(DEFAULT_JS, alias="jsCode")
    python_code: str = Field(DEFAULT_PYTHON, alias="pythonCode")
    notice: str = ""  # an editor hint n8n stores with the node


@dataclass
class CodeResult:
    results: list[Any]  # one return value (all items) or one per item
    logs: str


class Code(NodeType):
    type = "code"
    version = 2
    display_name = "Code"
    description = "Run custom JavaScript or Python code over the items."
    category = "transform"
    Params = CodeParameters

    async def run(self, ctx: NodeContext, params: BaseParameters, inputs: Inputs) -> Outputs:
        assert isinstance(params, CodeParameters)
        items = inputs.get(MAIN, [])
        limits: SandboxLimits = getattr(ctx, "sandbox_limits", DEFAULT_LIMITS)
        if params.mode == EACH_ITEM and not items:
            return {MAIN: []}
        if params.language == "javaScript":
            result = await asyncio.to_thread(
                run_javascript, params.js_code, params.mode, items, limits
            )
        else:
            code = params.python_code
            result = await run_python(code, params.mode, params.language, items, limits)
        if result.logs:
            ctx.log.info("Code node %r printed:\n%s", ctx.node.name, result.logs.rstrip())
        return {MAIN: to_items(result.results, params.mode, len(items))}


# Results -> items ----------------------------------------------------------------------


def _as_item(value: Any, paired: int | None) -> Item:
    if not isinstance(value, dict):
        raise NodeError(
            f"Code doesn't return items properly: {type(value).__name__} is not an object",
            item_index=paired,
            description='Return a list of objects, or of items like {"json": {...}}.',
        )
    if "json" in value and set(value) <= ITEM_KEYS:
        if not isinstance(value["json"], dict):
            raise NodeError("A 'json' property isn't an object", item_index=paired)
        made: Item = dict(value)
    else:
        made = {"json": value}
    if paired is not None and "pairedItem" not in made:
        made["pairedItem"] = {"item": paired}
    return made


def to_items(results: list[Any], mode: str, input_count: int) -> list[Item]:
    if mode == ALL_ITEMS:
        returned = results[0] if results else None
        if returned is None:
            return []
        values = returned if isinstance(returned, list) else [returned]
        only = 0 if input_count == 1 else None
        return [_as_item(value, only) for value in values]
    out: list[Item] = []
    for index, returned in enumerate(results):
        if returned is None:
            continue
        if isinstance(returned, list):
            raise NodeError(
                "Code doesn't return a single object",
                item_index=index,
                description="An array was returned; use 'Run Once for All Items' for many items.",
            )
        out.append(_as_item(returned, index))
    return out


# JavaScript ----------------------------------------------------------------------------

JS_PRELUDE = """
globalThis.__logs = [];
const __fmt = (v) => typeof v === 'string' ? v : (() => {
  try { return JSON.stringify(v); } catch (e) { return String(v); } })();
globalThis.console = {
  log: (...a) => { __logs.push(a.map(__fmt).join(' ')); },
};
console.info = console.warn = console.error = console.debug = console.log;
globalThis.__makeInput = (all, current) => ({
  all: () => all,
  first: () => all[0],
  last: () => all[all.length - 1],
  item: current,
});
"""

JS_DRIVER = """
(async () => {
  const all = JSON.parse(__inputJson);
  const out = [];
  if (__mode === 'runOnceForAllItems') {
    const first = all.length ? all[0].json : {};
    out.push(await __code(__makeInput(all, all[0]), first, 0, all, all[0]));
  } else {
    for (let i = 0; i < all.length; i++) {
      globalThis.__itemIndex = i;
      out.push(await __code(__makeInput(all, all[i]), all[i].json, i, all, all[i]));
    }
  }
  return out;
})().then(
  (out) => { globalThis.__done = { ok: true, results: out }; },
  (e) => { globalThis.__done = { ok: false, message: String(e), stack: String(e && e.stack),
                                 index: globalThis.__itemIndex }; },
);
"""

_JS_LINE = re.compile(r"<input>:(\d+)")


def _js_error(exc: Exception, limits: SandboxLimits) -> NodeError:
    text = str(exc)
    if "interrupted" in text:
        return NodeError(f"code exceeded its CPU time limit ({limits.cpu_seconds}s)")
    if "out of memory" in text or text == "null":
        return NodeError(f"code exceeded its memory limit ({limits.memory_bytes >> 20} MB)")
    return NodeError(text.splitlines()[0] if text else type(exc).__name__, description=text)


def _drain_jobs(context: quickjs.Context) -> None:
    while context.execute_pending_job():
        pass


def run_javascript(code: str, mode: str, items: list[Item], limits: SandboxLimits) -> CodeResult:
    """Evaluate in a fresh context (blocking: call it in a thread)."""
    context = quickjs.Context()
    context.set_memory_limit(limits.memory_bytes)
    context.set_max_stack_size(limits.js_stack_bytes)
    context.set_time_limit(limits.cpu_seconds)
    context.set("__inputJson", json.dumps(items))
    context.set("__mode", mode)
    context.set("__itemIndex", None)
    try:
        context.eval(JS_PRELUDE)
        # Same first line as the user's code, so error line numbers are the user's.
        header = "globalThis.__code = async function ($input, $json, $itemIndex, items, item) {"
        context.eval(header + code + "\n};")
        context.eval(JS_DRIVER)
        _drain_jobs(context)
        done = json.loads(context.eval("JSON.stringify(globalThis.__done ?? null)"))
        logs = "\n".join(json.loads(context.eval("JSON.stringify(__logs)")))
    except (quickjs.JSException, quickjs.StackOverflow) as exc:
        raise _js_error(exc, limits) from None
    if done is None:
        raise NodeError("code never finished (a promise that never settles?)")
    if not done["ok"]:
        message = done["message"]
        if message == "InternalError: out of memory":
            raise _js_error(quickjs.JSException(message), limits)
        line = _JS_LINE.search(done["stack"] or "")
        where = f" [line {line.group(1)}]" if line else ""
        index = done["index"] if mode == EACH_ITEM else None
        raise NodeError(f"{message}{where}", item_index=index, description=done["stack"])
    return CodeResult(results=done["results"], logs=logs)


# Python --------------------------------------------------------------------------------


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while chunk := await stream.read(65536):
        size += len(chunk)
        if size > cap:
            raise NodeError(f"code produced more than {cap >> 20} MB of output")
        chunks.append(chunk)
    return b"".join(chunks)


async def _feed(stdin: asyncio.StreamWriter, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stdin.write(data)
        await stdin.drain()
        stdin.close()


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def _talk(
    process: asyncio.subprocess.Process, request: bytes, cap: int
) -> tuple[bytes, bytes]:
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_feed(process.stdin, request))
            reply = group.create_task(_read_capped(process.stdout, cap))
            errors = group.create_task(_read_capped(process.stderr, cap))
            group.create_task(process.wait())
    except ExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return reply.result(), errors.result()


async def _exchange(
    process: asyncio.subprocess.Process, request: bytes, limits: SandboxLimits
) -> tuple[bytes, bytes]:
    try:
        return await asyncio.wait_for(
            _talk(process, request, limits.max_output_bytes), timeout=limits.wall_seconds
        )
    except TimeoutError:
        raise NodeError(f"code exceeded its time limit ({limits.wall_seconds:g}s)") from None
    finally:
        _kill_group(process)
        await process.wait()


async def run_python(
    code: str, mode: str, language: str, items: list[Item], limits: SandboxLimits
) -> CodeResult:
    request = json.dumps(
        {
            "code": code,
            "mode": mode,
            "language": language,
            "items": items,
            "limits": {"cpu_seconds": limits.cpu_seconds, "memory_bytes": limits.memory_bytes},
        }
    ).encode()
    with tempfile.TemporaryDirectory(prefix="klikkflow-code-") as workdir:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-I", "-S", "-B", str(RUNNER)),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={},
            cwd=workdir,
            start_new_session=True,
        )
        reply, errors = await _exchange(process, request, limits)
    return _python_result(process.returncode, reply, errors, limits)


def _python_result(
    returncode: int | None, reply: bytes, errors: bytes, limits: SandboxLimits
) -> CodeResult:
    if returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise NodeError(f"code exceeded its CPU time limit ({limits.cpu_seconds}s)")
    if returncode == MEMORY_EXIT or (not reply and b"MemoryError" in errors):
        raise NodeError(f"code exceeded its memory limit ({limits.memory_bytes >> 20} MB)")
    stderr_text = errors.decode(errors="replace")
    try:
        answer = json.loads(reply)
    except ValueError:
        tail = stderr_text.strip().splitlines()[-1:] or [f"exit status {returncode}"]
        raise NodeError(
            f"the code process ended without a result: {tail[0]}", description=stderr_text
        ) from None
    logs = "\n".join(part for part in (answer.get("logs", ""), stderr_text) if part)
    if not answer.get("ok"):
        error = answer.get("error") or {}
        message = str(error.get("message") or "code failed")
        where = f" [line {error['line']}]" if error.get("line") else ""
        raise NodeError(
            f"{message}{where}",
            item_index=error.get("item_index"),
            description=str(error.get("traceback") or ""),
        )
    return CodeResult(results=list(answer.get("results") or []), logs=logs)


CODE_NODES: list[type[NodeType]] = [Code]
