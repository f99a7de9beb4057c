"""The child program of the Code node's Python sandbox: stdlib only, run as a script.

The parent starts `python -I -S -B sandbox_runner.py` with an empty environment in an empty
temporary directory, writes one JSON request on stdin and reads one JSON reply from stdout:

    request: {"code", "mode", "language", "items", "limits": {"cpu_seconds", "memory_bytes"}}
    reply:   {"ok": true, "results": [...], "logs": "...", "confinement": {...}}
          |  {"ok": false, "error": {"message", "line", "traceback", "item_index"}, "logs"}

Before the user's code runs the child confines itself: rlimits (CPU, address space, open
files, file size, processes, core dumps), no_new_privs, a private network namespace and,
when started as root, a chroot into its empty directory and the `nobody` user. User prints
are captured, never mixed into the reply: the reply goes to a private duplicate of fd 1,
and fd 1 itself then points at stderr.
It is deliberately not part of the klikkflow package: nothing of the worker is imported.
"""

import ast
import contextlib
import io
import json
import os
import resource
import sys
import traceback

MEMORY_EXIT = 71  # the parent reads this exit status as "memory limit"
MAX_LOG_CHARS = 64 * 1024
CODE_FILENAME = "<code>"

# Loaded before the chroot: afterwards only modules already imported can be used.
PRELOADED = (
    "base64", "binascii", "bisect", "calendar", "collections", "copy", "csv", "dataclasses",
    "datetime", "decimal", "difflib", "enum", "fractions", "functools", "hashlib", "heapq",
    "hmac", "html", "itertools", "json", "math", "operator", "random", "re", "statistics",
    "string", "struct", "_strptime", "textwrap", "time", "typing", "unicodedata",
    "urllib.parse", "uuid", "zoneinfo",
)  # fmt: skip


class CappedLog(io.StringIO):
    """What the user prints, kept up to MAX_LOG_CHARS."""

    def write(self, text: str) -> int:
        room = MAX_LOG_CHARS - self.tell()
        if room > 0:
            super().write(text[:room])
        return len(text)


class AttrDict(dict):
    """The `python` language's items allow `item.json.name` as well as `item["json"]["name"]`."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        self[name] = value

    def __delattr__(self, name):
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def attr_wrap(value):
    if isinstance(value, dict):
        return AttrDict((k, attr_wrap(v)) for k, v in value.items())
    if isinstance(value, list):
        return [attr_wrap(v) for v in value]
    return value


class Input:
    """n8n's `_input`: all(), first(), last() and, per item, `item`."""

    def __init__(self, items, current=None):
        self._items = items
        self.item = current

    def all(self):
        return self._items

    def first(self):
        return self._items[0] if self._items else None

    def last(self):
        return self._items[-1] if self._items else None


def preload() -> None:
    for name in PRELOADED:
        with contextlib.suppress(ImportError):
            __import__(name)


def isolate_network() -> bool:
    """A private network namespace (only `lo`, down): no connection leaves the sandbox."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS
        return libc.unshare(0x40000000) == 0  # CLONE_NEWNET
    except (OSError, AttributeError):
        return False


def drop_privileges() -> str | None:
    if os.getuid() != 0:
        return None
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        uid, gid = entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        uid = gid = 65534
    # The run's own empty directory becomes the whole file system: nothing of the host
    # (config, /proc, other runs) is reachable, and without root there is no way out.
    os.chown(".", uid, gid)
    os.chroot(".")
    os.chdir("/")
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    return "nobody"


def set_limits(limits: dict) -> None:
    cpu = int(limits["cpu_seconds"])
    memory = int(limits["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))


def confine(limits: dict) -> dict:
    if os.getuid() == 0:
        preload()  # after the chroot below nothing more can be imported
    network = isolate_network()
    user = drop_privileges()
    set_limits(limits)
    return {"network_isolated": network, "user": user or str(os.getuid())}


def compile_code(code: str):
    """The code is a function body (n8n style: a top-level `return` gives the result)."""
    tree = ast.parse(code, CODE_FILENAME)
    body = tree.body or [ast.Pass()]
    arguments = ast.arguments(
        posonlyargs=[], args=[], vararg=None, kwonlyargs=[], kw_defaults=[], defaults=[]
    )
    function = ast.FunctionDef(
        name="__klikkflow_code__", args=arguments, body=body, decorator_list=[], returns=None
    )
    module = ast.Module(body=[function], type_ignores=[])
    ast.copy_location(function, body[0])
    ast.fix_missing_locations(module)
    return compile(module, CODE_FILENAME, "exec")


def namespaces(mode: str, items: list) -> list[dict]:
    """One namespace for all items, or one per item."""
    common = {"__name__": "__code__", "__builtins__": __builtins__}
    if mode == "runOnceForAllItems":
        source = Input(items, items[0] if items else None)
        first_json = items[0].get("json", {}) if items else {}
        return [{**common, "_input": source, "_items": items, "items": items, "_json": first_json}]
    return [
        {
            **common,
            "_input": Input(items, each),
            "_item": each,
            "item": each,
            "_json": each.get("json", {}),
            "_itemIndex": index,
        }
        for index, each in enumerate(items)
    ]


def error_reply(exc: BaseException, item_index: int | None) -> dict:
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == CODE_FILENAME:
            line = frame.lineno
    if isinstance(exc, SyntaxError) and exc.filename == CODE_FILENAME:
        line = exc.lineno
    message = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return {
        "message": message,
        "line": line,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "item_index": item_index,
    }


def run(request: dict) -> dict:
    items = request["items"]
    if request.get("language") == "python":
        items = attr_wrap(items)
    try:
        compiled = compile_code(request["code"])
    except SyntaxError as exc:
        return {"ok": False, "error": error_reply(exc, None)}
    results = []
    for index, namespace in enumerate(namespaces(request["mode"], items)):
        try:
            exec(compiled, namespace)
            results.append(namespace["__klikkflow_code__"]())
        except MemoryError:
            raise
        except BaseException as exc:  # SystemExit too: user code must not end the protocol
            item_index = index if request["mode"] == "runOnceForEachItem" else None
            return {"ok": False, "error": error_reply(exc, item_index)}
    return {"ok": True, "results": results}


def main() -> None:
    reply_channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stray writes to fd 1 (os.write, C code) land in the parent's log
    request = json.loads(sys.stdin.buffer.read())
    confinement = confine(request["limits"])
    log = CappedLog()
    sys.stdout = log
    reserve = bytearray(1 << 20)  # freed on MemoryError so the reply can still be written
    try:
        reply = run(request)
        reply["logs"] = log.getvalue()
        reply["confinement"] = confinement
        encoded = json.dumps(reply, default=str, ensure_ascii=False)
    except MemoryError:
        del reserve
        os._exit(MEMORY_EXIT)
    except (TypeError, ValueError) as exc:
        encoded = json.dumps(
            {
                "ok": False,
                "error": {"message": f"the result is not JSON: {exc}", "line": None},
                "logs": log.getvalue(),
            }
        )
    reply_channel.write(encoded)
    reply_channel.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
