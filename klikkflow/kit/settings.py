"""Settings: one pydantic-settings class per deployable, all read from ``KLIKKFLOW_*``.

Each entrypoint (a subgraph's app factory, the worker, the web app, ``klikkflow up``)
builds its settings once and passes them down; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

SUBGRAPHS = ("identity", "workflows", "executions", "ai")

# Default ports of `klikkflow up`; each can be changed with its KLIKKFLOW_*_PORT variable.
DEFAULT_PORTS = {
    "router": 4000,
    "identity": 4001,
    "workflows": 4002,
    "executions": 4003,
    "ai": 4004,
    "worker_metrics": 4005,
    "web": 8080,
    "mongo": 27027,
    "postgres": 5433,
    "redis": 6380,
}


class _Base(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KLIKKFLOW_", extra="ignore")


class StoreSettings(_Base):
    """Where the three stores live. Empty URLs mean "not configured"."""

    mongo_uri: str = Field(default="", description="MongoDB URI, e.g. mongodb://host:27017")
    mongo_db: str = Field(default="klikkflow", description="MongoDB database name")
    database_url: str = Field(
        default="", description="PostgreSQL URL (postgresql+asyncpg://user:pw@host:port/db)"
    )
    redis_url: str = Field(default="", description="Redis URL, e.g. redis://127.0.0.1:6379/0")


class AuthSettings(_Base):
    secret_key: str = Field(
        default="dev-insecure-change-me-klikkflow-secret",
        description="Master secret: seals signing keys and MFA secrets at rest",
    )
    token_issuer: str = "klikkflow"
    token_audience: str = "klikkflow-api"
    access_token_ttl_seconds: int = 900
    refresh_token_ttl_seconds: int = 30 * 86_400
    jwks_url: str = Field(
        default=f"http://127.0.0.1:{DEFAULT_PORTS['identity']}/.well-known/jwks.json",
        description="Where the identity subgraph publishes its token signing keys",
    )
    token_refusal_url: str = Field(
        default=f"http://127.0.0.1:{DEFAULT_PORTS['identity']}/internal/audit/token-refused",
        description="Where subgraphs report refused tokens, for the audit log",
    )
    api_key_introspection_url: str = Field(
        default=f"http://127.0.0.1:{DEFAULT_PORTS['identity']}/internal/api-keys/introspect",
        description="Where subgraphs ask the identity subgraph what an API key may do",
    )


class MailSettings(_Base):
    """Outgoing mail (invitations, password resets). Empty host: mail is only logged."""

    smtp_host: str = ""
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    mail_from: str = "KlikkFlow <no-reply@klikkflow.local>"
    public_url: str = Field(
        default=f"http://127.0.0.1:{DEFAULT_PORTS['web']}",
        description="The dashboard's address, for links in mail",
    )


class VaultSettings(_Base):
    """Master keys of the credential vault (see klikkflow.kit.vault)."""

    credentials_master_keys: str = Field(
        default="",
        description=(
            "Comma-separated id:base64key entries (32-byte keys), the first one current; "
            "empty: one key derived from secret_key"
        ),
    )


class NetworkSettings(_Base):
    """Where workflows may send requests (HTTP Request nodes, credential tests)."""

    allow_private_network: bool = Field(
        default=False,
        description="Let requests reach loopback and private addresses (off: SSRF guard)",
    )


class WebhookSettings(_Base):
    """Where the executions service's webhook ingress is reached from outside."""

    webhook_url: str = Field(
        default=f"http://127.0.0.1:{DEFAULT_PORTS['executions']}",
        description="Public address of the webhook ingress, for `$execution.resumeUrl`",
    )


class EmbeddingSettings(_Base):
    """Which embedding model turns text into vectors (see klikkflow.ai.embeddings).

    Every stored vector records the model's id; changing the model means re-embedding.
    """

    embedding_provider: Literal["local", "openai"] = Field(
        default="local",
        description="local: all-MiniLM-L6-v2 (384-d) in the process, no network; "
        "openai: an OpenAI-compatible /embeddings API (OpenAI, Ollama, vLLM, ...)",
    )
    embedding_base_url: str = Field(
        default="https://api.openai.com/v1",
        description="The OpenAI-compatible API's base URL, up to and including /v1 (openai)",
    )
    embedding_api_key: SecretStr = Field(
        default=SecretStr(""), description="Bearer token for the API (openai); empty: none sent"
    )
    embedding_model: str = Field(
        default="text-embedding-3-small", description="The API's model name (openai)"
    )
    embedding_dimensions: int = Field(
        default=1536, gt=0, description="Length of the API's vectors (openai)"
    )
    embedding_request_dimensions: bool = Field(
        default=False,
        description="Send `dimensions` so the API shortens its vectors to embedding_dimensions "
        "(OpenAI text-embedding-3 models can; others may refuse it)",
    )
    embedding_batch_size: int = Field(
        default=96, gt=0, description="Texts per request to the API (openai)"
    )
    embedding_timeout_seconds: float = Field(
        default=60.0, gt=0, description="Time limit of one request to the API (openai)"
    )


class DocumentSettings(_Base):
    """Documents added to knowledge bases (see klikkflow.ai.documents)."""

    document_max_bytes: int = Field(
        default=20 * 1024 * 1024,
        gt=0,
        description="Largest document accepted into a knowledge base (bytes, before extraction)",
    )


class SubgraphSettings(
    StoreSettings,
    AuthSettings,
    MailSettings,
    VaultSettings,
    NetworkSettings,
    EmbeddingSettings,
    DocumentSettings,
):
    """Settings of one subgraph service (each subgraph's app factory builds one)."""

    webhook_max_body_bytes: int = Field(
        default=16 * 1024 * 1024, description="Largest webhook request body accepted"
    )
    host: str = "127.0.0.1"
    port: int = 0
    debug: bool = False
    trusted_proxies: str = Field(
        default="127.0.0.0/8,::1",
        description="Comma-separated networks whose X-Forwarded-For is believed (the router, "
        "the dashboard, your load balancer); the client address is the first hop outside them",
    )


class WorkerSettings(
    StoreSettings,
    AuthSettings,
    VaultSettings,
    NetworkSettings,
    WebhookSettings,
    EmbeddingSettings,
    DocumentSettings,
):
    """Settings of an arq worker process."""

    worker_max_jobs: int = Field(
        default=50,
        description=(
            "Jobs (executions) one worker runs at once; they mostly wait on I/O, and at 10 a "
            "worker was bound by it, not by CPU (bench/e2e.py: 94 -> 114 req/s at c=50)"
        ),
    )
    worker_poll_delay: float = 0.02
    worker_job_timeout: int = 3600
    worker_log_jobs: bool = Field(
        default=False,
        description=(
            "arq's own log lines, two per job (started, finished), at INFO; the worker logs "
            "one line per execution anyway. Off: at 200 executions a second they were 5% "
            "of a worker's CPU (bench/e2e.py)"
        ),
    )
    organization_max_running: int = Field(
        default=0, description="Executions one organization may run at once; 0: no limit"
    )
    execution_timeout_seconds: int = Field(
        default=3600, description="Time limit of executions whose workflow sets none"
    )
    node_output_max_bytes: int = Field(
        default=8 * 1024 * 1024, description="Largest output (JSON) of one node run"
    )
    execution_retention_days: int = Field(
        default=30, description="Finished executions older than this are deleted; 0: never"
    )
    execution_retention_per_workflow: int = Field(
        default=10_000, description="Finished executions kept per workflow, newest first; 0: all"
    )
    worker_metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = Field(
        default=0, description="Port of the worker's Prometheus /metrics server; 0: none"
    )


class WebSettings(AuthSettings, DocumentSettings):
    """Settings of the web dashboard: it talks to the router, and sends uploaded
    knowledge-base documents to the AI service's upload endpoint."""

    host: str = "127.0.0.1"
    web_port: int = DEFAULT_PORTS["web"]
    router_url: str = Field(
        f"http://127.0.0.1:{DEFAULT_PORTS['router']}/graphql",
        description="The router's GraphQL endpoint the dashboard queries",
    )
    ai_url: str = Field(
        f"http://127.0.0.1:{DEFAULT_PORTS['ai']}",
        description="The AI service's base URL: document uploads go to its "
        "/knowledge-bases/{id}/documents",
    )


class PlatformSettings(StoreSettings, AuthSettings, MailSettings, VaultSettings, NetworkSettings):
    """Settings of `klikkflow up`: ports of every service and the data directory."""

    data_dir: Path = Field(
        default=Path(".klikkflow"), description="Where embedded stores keep data"
    )
    host: str = "127.0.0.1"
    router_port: int = DEFAULT_PORTS["router"]
    identity_port: int = DEFAULT_PORTS["identity"]
    workflows_port: int = DEFAULT_PORTS["workflows"]
    executions_port: int = DEFAULT_PORTS["executions"]
    ai_port: int = DEFAULT_PORTS["ai"]
    worker_metrics_port: int = DEFAULT_PORTS["worker_metrics"]
    web_port: int = DEFAULT_PORTS["web"]
    mongo_port: int = DEFAULT_PORTS["mongo"]
    postgres_port: int = DEFAULT_PORTS["postgres"]
    redis_port: int = DEFAULT_PORTS["redis"]
    startup_timeout: float = 120.0

    def subgraph_port(self, name: str) -> int:
        return int(getattr(self, f"{name}_port"))
