"""The federation router (Hive Gateway, Node): its dependencies and its command line."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROUTER_DIR = ROOT / "router"
GATEWAY_BIN = ROUTER_DIR / "node_modules" / ".bin" / "hive-gateway"
SUPERGRAPH = ROOT / "schemas" / "supergraph.graphql"


class RouterSetupError(Exception):
    pass


def ensure_router_deps() -> None:
    """`npm ci` the pinned gateway on first use (about 40 s, ~500 MB in router/node_modules)."""
    if GATEWAY_BIN.exists() and (ROUTER_DIR / "node_modules" / "@theguild").exists():
        return
    if shutil.which("node") is None or shutil.which("npm") is None:
        raise RouterSetupError(
            "node/npm not found: install Node.js 20 or newer (Debian: apt-get install nodejs npm)"
        )
    result = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=ROUTER_DIR, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise RouterSetupError(f"npm ci in {ROUTER_DIR} failed:\n{result.stderr[-2000:]}")


def gateway_argv(host: str, port: int) -> list[str]:
    # The binary itself, not `npx`: killing a wrapper would leave the gateway running.
    return [str(GATEWAY_BIN), "supergraph", str(SUPERGRAPH), "--host", host, "--port", str(port)]


def gateway_env(subgraph_urls: dict[str, str]) -> dict[str, str]:
    env = {f"KLIKKFLOW_SUBGRAPH_{name.upper()}_URL": url for name, url in subgraph_urls.items()}
    env["KLIKKFLOW_SUPERGRAPH"] = str(SUPERGRAPH)
    return env
