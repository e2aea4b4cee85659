"""The one settings object: MNAD_* environment variables, a .env file, or `serve` flags (flags win)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.alerts import AlertPolicy
from service.core.policy import DEFAULT_SCHEMES, NETWORK_SCHEMES, parse_network, site

GiB = 2**30
UNSET_MEANS = {"api_token": "to run without a token", "alert_webhook_secret": "to send unsigned webhooks"}


def check_thresholds(on: float | None, off: float | None) -> None:
    """Explicit alert thresholds (settings, a stream's own) must not close above where they open: ValueError.
    Either may be unset (then the calibration's applies, and the stream manager keeps off <= on)."""
    if on is not None and off is not None and off > on:
        raise ValueError(f"alert_off ({off}) must not exceed alert_on ({on})")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MNAD_", env_file=".env", extra="forbid", cli_kebab_case=True)

    host: str = Field(
        "127.0.0.1", description="Interface to listen on; loopback by default, so exposing it is a choice"
    )
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port)")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu")
    models_dir: Path = Field(Path("weights"), description="Every *.safetensors checkpoint here is served")
    default_model: str | None = Field(
        None,
        description="Model a stream gets when it names none (file stem); default: 'ped2' if present, else the first",
    )
    data_dir: Path = Field(Path("data"), description="SQLite database and uploaded clips live here")
    api_token: SecretStr | None = Field(
        None,
        description="When set, every endpoint but /healthz, /readyz, /metrics, /docs, /openapi.json and the dashboard"
        " page needs 'Authorization: Bearer' (WebSockets: or a mnad.token subprotocol, see Dashboard); set but empty"
        " is an error",
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Web origins besides the service's own whose pages may change state and open WebSockets"
        " (e.g. https://ops.example.com); requests without an Origin header (curl, scripts) are not affected",
    )
    stream: list[str] = Field(
        default_factory=list,
        description="Streams to start with (repeatable); a local video file is allowed here only, played in a loop",
    )
    source_schemes: list[str] = Field(
        list(DEFAULT_SCHEMES),
        description="URL schemes a camera may use, of rtsp, rtsps, http, https; http(s) is off by default because"
        " FFmpeg follows redirects and playlists to hosts the source policy never sees",
    )
    source_networks: list[str] = Field(
        ["private", "public"],
        description="Where a camera URL may point: 'private' (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7),"
        " 'public' (global unicast) and CIDRs; loopback, link-local, multicast and unspecified addresses only"
        " when a CIDR lists them (e.g. 127.0.0.0/8 for a local test camera)",
    )
    max_streams: int = Field(32, ge=1, le=1024, description="Streams the service accepts at once")
    # A camera that connects hands over what FFmpeg probed at once (up to probe_ms, 5 s with FFmpeg's default);
    # frames are dropped for lag, not for a burst (service/capture/buffer.py).
    frame_buffer: int = Field(64, ge=1, le=1024, description="Frames held per stream at most (a connect burst fits)")
    max_lag_ms: float = Field(
        500.0, gt=0, le=60_000, description="A live frame waits at most this long behind the newest; older ones drop"
    )
    probe_ms: float = Field(
        100.0, gt=0, le=10_000, description="FFmpeg's analysis of a camera at connect; OpenCV opens one at a time"
    )
    max_batch: int = Field(16, ge=1, le=512, description="Windows per inference batch, across streams of one model")
    max_wait_ms: float = Field(4.0, ge=0, le=1000, description="How long a batch waits for more streams to fill it")
    ws_queue: int = Field(256, ge=1, le=100_000, description="Messages queued per WebSocket subscriber before drops")
    open_timeout_s: float = Field(10.0, gt=0, le=300, description="Connecting to a source gives up after this")
    read_timeout_s: float = Field(10.0, gt=0, le=300, description="A source silent this long counts as lost")
    reconnect_initial_s: float = Field(0.5, gt=0, le=60, description="First reconnect delay; doubles per failure")
    reconnect_max_s: float = Field(30.0, gt=0, le=3600, description="Cap of the reconnect delay")
    reconnect_healthy_s: float = Field(
        30.0, gt=0, le=3600,
        description="A session must deliver frames this long before the reconnect delay starts over from"
        " reconnect_initial_s (else it keeps doubling)",
    )  # fmt: skip
    alert_on: float | None = Field(None, ge=0, le=1, description="Score opening an episode; default: calibration's")
    alert_off: float | None = Field(
        None, ge=0, le=1, description="Score an episode falls under; default: calibration's"
    )
    alert_on_frames: int = Field(
        AlertPolicy.on_frames, ge=1, le=10_000, description="Frames above alert_on that open an episode (N)"
    )
    alert_off_frames: int = Field(
        AlertPolicy.off_frames, ge=1, le=10_000, description="Frames below alert_off that close it (M)"
    )
    max_upload_bytes: int = Field(512 * 2**20, ge=1, le=2**40, description="Largest accepted clip upload")
    clip_retention_s: float = Field(86_400.0, ge=0, le=365 * 86_400, description="Uploaded clips are deleted after")
    upload_quota_bytes: int = Field(
        4 * GiB, ge=1, le=2**50, description="Total size of stored uploads (videos, error maps, results); 507 beyond"
    )
    min_free_bytes: int = Field(
        GiB, ge=0, le=2**50, description="Uploads are refused (507) when they would leave less free disk than this"
    )
    max_concurrent_uploads: int = Field(2, ge=1, le=1000, description="Uploads received at once; 429 beyond")
    max_scoring_clips: int = Field(
        2, ge=1, le=64, description="Uploaded clips decoded and scored at once; later ones wait, queued, in order"
    )
    max_upload_name: int = Field(255, ge=1, le=4096, description="Longest accepted upload file name (characters)")
    alert_retention_s: float = Field(
        30 * 86_400, ge=0, le=10 * 365 * 86_400, description="Closed alerts and their pictures are deleted after"
    )
    max_alerts: int = Field(
        10_000, ge=1, le=10_000_000, description="Closed alerts kept (the oldest and their pictures go first)"
    )
    alert_webhooks: list[str] = Field(
        default_factory=list,
        description="http(s) URLs every alert_open and alert_close is POSTed to, as the WebSocket's JSON (README,"
        " Alert webhooks); kept in the database until delivered; in cluster mode one API node at a time sends each",
    )
    alert_webhook_secret: SecretStr | None = Field(
        None,
        description="When set, webhooks carry X-MNAD-Signature: sha256= and the HMAC-SHA256 of the body with this"
        " secret; set but empty is an error",
    )
    alert_webhook_timeout_s: float = Field(5.0, gt=0, le=120, description="One webhook attempt gives up after this")
    alert_webhook_max_age_s: float = Field(
        3600.0,
        gt=0,
        le=7 * 86_400,
        description="A webhook that fails with a network error, a timeout, 429 or 5xx is retried (after 1, 2, 4 ... s,"
        " at most 30, restarts included) until the alert is this old; then it is given up",
    )
    clip_fps: float | None = Field(None, gt=0, le=1000, description="Frame rate of uploads that record none")
    inference: Literal["auto", "fp32", "bf16", "fp16", "compile", "onnxruntime", "openvino"] = Field(
        "auto",
        description="Forward backend (model/inference.py); auto: the fastest verified here, else fp32 with a warning",
    )
    threads: int = Field(0, ge=0, le=1024, description="torch CPU threads (0: torch's default, all cores)")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field("info", description="uvicorn log level")
    mode: Literal["single", "cluster"] = Field(
        "single",
        description="single: one process, SQLite and an in-process hub; cluster: an API node of a Ray cluster"
        " (docs/cluster.md), with PostgreSQL (database_url) and Redis (bus_url); needs the cluster extra",
    )
    database_url: SecretStr | None = Field(
        None, description="Cluster mode: PostgreSQL URL (postgresql://user:password@host:5432/db)"
    )
    bus_url: str | None = Field(None, description="Cluster mode: Redis URL of the bus (redis://host:6379/0)")
    ray_address: str | None = Field(
        None, description="Cluster mode: the Ray head's GCS address (host:6379) that `mnad-cluster start` joins"
    )
    checkpoint_s: float = Field(
        2.0, gt=0, le=3600,
        description="Cluster mode: each camera's memory, frame and open episode are checkpointed this often"
        " (and at every alert open and close)",
    )  # fmt: skip
    shard_lost_s: float = Field(
        3.0,
        gt=0,
        le=3600,
        description="Cluster mode: a shard that answers no ping this long (paused, cut off) loses its cameras",
    )
    shard_capacity: int = Field(16, ge=1, le=1024, description="Cluster mode: cameras one shard runs at most")
    shard_metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="Cluster mode: each shard serves /metrics (the names `serve` uses, plus a `shard` label) on this"
        " port of `host`; 0: any free port (in `mnad-cluster status`); unset: not served",
    )  # fmt: skip

    @field_validator("source_networks")
    @classmethod
    def _networks(cls, entries: list[str]) -> list[str]:
        for entry in entries:
            parse_network(entry)
        return entries

    @field_validator("source_schemes")
    @classmethod
    def _schemes(cls, schemes: list[str]) -> list[str]:
        unknown = [x for x in schemes if x.lower() not in NETWORK_SCHEMES]
        if unknown:
            raise ValueError(f"unknown source scheme(s) {unknown}: choose from {list(NETWORK_SCHEMES)}")
        return [x.lower() for x in schemes]

    @field_validator("api_token", "alert_webhook_secret")
    @classmethod
    def _secret(cls, secret: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        """Set but empty is a mistake (an unset shell variable, say), never 'off' nor 'the empty secret'."""
        if secret is not None and not secret.get_secret_value().strip():
            field = info.field_name or ""
            raise ValueError(f"MNAD_{field.upper()} is set but empty: unset it {UNSET_MEANS[field]}")
        return secret

    @field_validator("alert_webhooks")
    @classmethod
    def _webhooks(cls, urls: list[str]) -> list[str]:
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
                raise ValueError(f"alert webhook {site(url)!r} is not an http(s) URL with a host")
        return urls

    @model_validator(mode="after")
    def _thresholds(self) -> Settings:
        check_thresholds(self.alert_on, self.alert_off)
        if self.mode == "cluster" and (self.database_url is None or self.bus_url is None):
            raise ValueError("cluster mode needs database_url (PostgreSQL) and bus_url (Redis)")
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be at least reconnect_initial_s")
        return self

    @property
    def database(self) -> Path:
        return self.data_dir / "service.sqlite3"

    @property
    def clips_dir(self) -> Path:
        return self.data_dir / "clips"
