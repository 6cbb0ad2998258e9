"""Settings: graphrunner's own from ``GRAPHRUNNER_*`` variables, Temporal's from envconfig."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from graphrunner.errors import GraphrunnerError

__all__ = ["Settings"]

_ENV_PREFIX = "GRAPHRUNNER_"

TENANT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$")
"""A tenant a client or worker is bound to: it can name a namespace and a task queue."""

_FAIRNESS_KEY_BYTES = 64  # Temporal's limit on a fairness key
MAX_FAIRNESS_WEIGHT = 1000.0  # the server clamps weights to [0.001, 1000]
MIN_FAIRNESS_WEIGHT = 0.001


class Settings(BaseModel):
    """Everything graphrunner reads from the environment, validated once and passed down.

    Temporal connection settings (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
    ``TEMPORAL_API_KEY``, TLS and profiles in ``temporal.toml``) are read by
    `temporalio.envconfig`; the fields here only add defaults for the embedded profile.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    home: Path = Field(
        default=Path(".graphrunner"),
        description="Local state: the dev server's database and log, and the default state DB "
        "and blob store.",
    )
    task_queue: str = Field(
        default="graphrunner", description="Task queue of lifetimes and workers."
    )
    dev_port: int = Field(
        default=7233, ge=1, le=65535, description="gRPC port of the embedded dev server."
    )
    dev_ui_port: int = Field(
        default=8233, ge=1, le=65535, description="Web UI port of the embedded dev server."
    )
    ui_url: str | None = Field(
        default=None,
        description="Temporal Web UI base URL for printed links; default "
        "`http://localhost:<dev ui port>`.",
    )
    connect_timeout_s: float = Field(
        default=5.0, gt=0, le=600, description="Server connect timeout, in seconds."
    )
    database_url: str | None = Field(
        default=None,
        description="State DB (SQLAlchemy URL): `sqlite:///path.db` or "
        "`postgresql://user:password@host/db` (psycopg 3); default `sqlite:///<home>/state.db`.",
    )
    blob_url: str | None = Field(
        default=None,
        description="Blob store: a directory, `file:///dir`, or "
        "`s3://bucket/prefix?endpoint=host:9000&secure=false`; default `<home>/blobs`.",
    )
    s3_access_key: str | None = Field(
        default=None, description="S3/MinIO access key; default `AWS_ACCESS_KEY_ID`."
    )
    s3_secret_key: str | None = Field(
        default=None, description="S3/MinIO secret key; default `AWS_SECRET_ACCESS_KEY`."
    )
    inline_limit_bytes: int = Field(
        default=1024 * 1024,
        ge=0,
        description="Largest result kept inline in a record; larger ones go to the blob store.",
    )
    payload_threshold_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        description="Payloads larger than this go to the blob store and history keeps a "
        "reference; above 2 MiB the server refuses a payload and the node fails at once "
        "(`PayloadsTooLarge`).",
    )
    record: bool = Field(
        default=True,
        description="Write execution records (and keep guardrail decisions and tenant totals).",
    )
    policy: Path | None = Field(
        default=None,
        description="Global guardrail policy file, enforced by the worker on every lifetime it "
        "runs.",
    )
    wait_reconnect_s: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="How long `run --wait` (and `GraphrunnerClient.result`) keep trying to "
        "reach a server they lost before they report lost contact, in seconds.",
    )
    impl_modules: str | None = Field(
        default=None,
        description="Comma-separated module prefixes a graph's impl may import (e.g. "
        "`myagents,tools.safe`); default: any module. A graph's impl is code the worker runs.",
    )
    tenant_policies: Path | None = Field(
        default=None,
        description="Directory of per-tenant guardrail overrides, one `<tenant>.yaml` each; "
        "read when the worker starts.",
    )
    models: Path | None = Field(
        default=None,
        description="Models file (YAML): each tier's fallback chain of litellm model ids, the "
        "cooldowns and the call timeout; default: every tier on the offline provider.",
    )
    llm: Literal["auto", "offline", "live"] = Field(
        default="auto",
        description="`offline`: every model call goes to the offline provider; `live`: to the "
        "providers; `auto`: offline when no provider API key is set.",
    )
    llm_script: Path | None = Field(
        default=None,
        description="Offline provider script (YAML or JSON): per-node answers, tool calls and "
        "injected failures.",
    )

    tenant: str | None = Field(
        default=None,
        max_length=255,
        description="Bind the client, CLI and worker to this tenant: they start lifetimes only "
        "as it and refuse to read or act on another tenant's lifetimes (soft isolation); with "
        "`GRAPHRUNNER_ISOLATION=hard` it also picks the tenant's namespace.",
    )
    isolation: Literal["soft", "hard"] = Field(
        default="soft",
        description="`soft`: tenants share a namespace, a tenant-bound client refuses other "
        "tenants' lifetimes; `hard`: each tenant has its own Temporal namespace "
        "(`GRAPHRUNNER_TENANT_NAMESPACE`), kept apart by Temporal's own authorization.",
    )
    tenant_namespace: str = Field(
        default="{tenant}",
        min_length=1,
        max_length=255,
        description="Hard isolation: the namespace of a tenant; `{tenant}` is replaced by "
        "its name (e.g. `agents-{tenant}`).",
    )
    tenant_task_queues: bool = Field(
        default=False,
        description="Give each tenant its own task queue, `<task_queue>-<tenant>`, served by "
        "workers started with that tenant.",
    )
    fairness_weights: str | None = Field(
        default=None,
        description="Fairness weight per tenant (`acme=2,globex=0.5`; default 1, range "
        "0.001–1000) for Temporal's fair task dispatch, keyed by tenant.",
    )
    codec_keys: SecretStr | None = Field(
        default=None,
        description="Encrypt every payload (history and blobs) with AES-256-GCM: "
        "comma-separated `<key id>=<base64 32-byte key>` pairs; the first encrypts, all "
        "decrypt (rotation). Default: payloads are not encrypted.",
    )
    encrypt_records: bool = Field(
        default=False,
        description="Also encrypt the results, inputs and notes of execution records in the "
        "state DB with the codec keys (needs `GRAPHRUNNER_CODEC_KEYS`).",
    )
    codec_port: int = Field(
        default=8081, ge=1, le=65535, description="Port of `graphrunner codec-server`."
    )
    codec_cors_origins: str = Field(
        default="http://localhost:8233",
        description="Comma-separated origins (the Web UI's) the codec server answers.",
    )
    codec_url: str | None = Field(
        default=None,
        description="The codec server's URL, given to the dev server's UI and printed for "
        "`temporal --codec-endpoint`.",
    )
    metrics_bind: str | None = Field(
        default=None,
        description="host:port of the worker's Prometheus endpoint (Temporal's runtime "
        "metrics and graphrunner's); default: no endpoint.",
    )
    tracing: Literal["none", "otlp", "console"] = Field(
        default="none",
        description="OpenTelemetry traces of lifetimes and node executions: `otlp` exports "
        "to `OTEL_EXPORTER_OTLP_ENDPOINT`, `console` prints spans.",
    )

    codec_bind: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address 'graphrunner codec-server' listens on ('0.0.0.0' in a "
        "container); anyone who reaches it can decrypt payloads.",
    )
    codec_token: SecretStr | None = Field(
        default=None,
        description="When set, 'graphrunner codec-server' answers only requests with "
        "'Authorization: Bearer <token>' (temporal --codec-auth, the UI's codec settings).",
    )

    @field_validator("codec_keys")
    @classmethod
    def _valid_codec_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        from graphrunner.codec._keys import parse_keys  # cryptography only when keys are set

        try:
            parse_keys(value.get_secret_value())
        except ValueError as exc:
            # The message names the key's position and id, never its material.
            raise PydanticCustomError("codec_keys", str(exc)) from None
        return value

    @field_validator("encrypt_records")
    @classmethod
    def _records_need_keys(cls, value: bool, info: ValidationInfo) -> bool:
        if value and info.data.get("codec_keys") is None:
            raise PydanticCustomError(
                "encrypt_records",
                "needs GRAPHRUNNER_CODEC_KEYS: records are encrypted with the codec keys",
            )
        return value

    eager_activities: bool = Field(
        default=True,
        description="Let a worker start the activities its own workflow tasks schedule "
        "without a round trip through the task queue (faster steps); `false` sends every "
        "node through the queue, where fair dispatch between tenants applies to it too.",
    )

    @field_validator("tenant")
    @classmethod
    def _tenant_name(cls, value: str | None) -> str | None:
        if value is not None and not TENANT_NAME.match(value):
            raise ValueError(
                "a tenant is 1-255 letters, digits, '.', '_', '@' or '-', starting with a "
                f"letter or digit, not {value[:100]!r}"
            )
        return value

    @field_validator("tenant_namespace")
    @classmethod
    def _namespace_template(cls, value: str) -> str:
        if "{tenant}" not in value:
            raise ValueError(
                f"must contain '{{tenant}}' (each tenant gets its own namespace), not {value!r}"
            )
        return value

    @field_validator("fairness_weights")
    @classmethod
    def _weights(cls, value: str | None) -> str | None:
        if value is not None:
            _parse_weights(value)
        return value

    @model_validator(mode="after")
    def _hard_needs_tenant(self) -> Settings:
        if self.isolation == "hard" and self.tenant is None:
            raise ValueError(
                "GRAPHRUNNER_ISOLATION=hard needs a tenant (GRAPHRUNNER_TENANT or --tenant): "
                "each tenant's lifetimes live in its own namespace"
            )
        return self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``GRAPHRUNNER_<FIELD>`` variables, then ``overrides``.

        Raises:
            GraphrunnerError: A variable holds a value of the wrong type.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(_ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            first = exc.errors()[0]
            message = str(first["msg"]).removeprefix("Value error, ")
            if not first["loc"]:  # a rule across settings names its variables itself
                raise GraphrunnerError(f"bad settings: {message}") from None
            var = _ENV_PREFIX + str(first["loc"][0]).upper()
            raise GraphrunnerError(f"bad setting {var}: {message}") from None

    def impl_prefixes(self) -> tuple[str, ...] | None:
        """The allowed impl module prefixes; None when any module may be imported."""
        if self.impl_modules is None:
            return None
        return tuple(p.strip() for p in self.impl_modules.split(",") if p.strip())

    def state_db_url(self) -> str:
        """The state DB URL, defaulting to a SQLite file under ``home``."""
        return self.database_url or f"sqlite:///{(self.home / 'state.db').resolve()}"

    def blob_store_url(self) -> str:
        """The blob store URL, defaulting to a directory under ``home``."""
        return self.blob_url or str((self.home / "blobs").resolve())

    def web_ui(self) -> str:
        """Base URL of the Temporal Web UI."""
        return (self.ui_url or f"http://localhost:{self.dev_ui_port}").rstrip("/")

    # -- tenants ----------------------------------------------------------------------------

    def namespace_for(self, tenant: str) -> str:
        """The Temporal namespace of ``tenant`` under hard isolation."""
        return self.tenant_namespace.replace("{tenant}", tenant)

    def task_queue_for(self, tenant: str | None) -> str:
        """The task queue lifetimes of ``tenant`` run on (its own with tenant_task_queues).

        A worker with no tenant polls the shared queue.
        """
        if tenant and self.tenant_task_queues:
            return f"{self.task_queue}-{tenant}"
        return self.task_queue

    def fairness_weight(self, tenant: str) -> float | None:
        """The tenant's fairness weight, if ``fairness_weights`` sets one."""
        if self.fairness_weights is None:
            return None
        return _parse_weights(self.fairness_weights).get(tenant)


def fairness_key(tenant: str) -> str:
    """The tenant as a Temporal fairness key (at most 64 bytes; longer ones are hashed)."""
    if len(tenant.encode()) <= _FAIRNESS_KEY_BYTES:
        return tenant
    digest = hashlib.sha256(tenant.encode()).hexdigest()[:16]
    head = tenant.encode()[: _FAIRNESS_KEY_BYTES - 17].decode(errors="ignore")
    return f"{head}~{digest}"


def _parse_weights(text: str) -> dict[str, float]:
    """``acme=2,globex=0.5`` as a mapping; ValueError naming the bad part."""
    weights: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        tenant, eq, raw = part.partition("=")
        tenant = tenant.strip()
        try:
            weight = float(raw) if eq else float("nan")
        except ValueError:
            weight = float("nan")
        if not tenant or not MIN_FAIRNESS_WEIGHT <= weight <= MAX_FAIRNESS_WEIGHT:
            raise ValueError(
                f"{part[:100]!r} is not '<tenant>=<weight>' with a weight from "
                f"{MIN_FAIRNESS_WEIGHT} to {MAX_FAIRNESS_WEIGHT:g}"
            )
        if tenant in weights:
            raise ValueError(f"tenant {tenant[:100]!r} has two weights")
        weights[tenant] = weight
    return weights
