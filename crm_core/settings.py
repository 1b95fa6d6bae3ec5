"""Typed settings, read once at start-up from CRM_* environment variables and an optional TOML file."""

from __future__ import annotations

import json
import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from crm_core.errors import SettingsError
from crm_core.webhooks.urls import AddressPolicy, parse_networks

ENV_PREFIX = "CRM_"
# Environment variables with our prefix that are not settings but tell where settings are.
_META_VARIABLES = {"CRM_CONFIG"}


class GenericPbxSetting(BaseModel):
    """One PBX that pushes generic CTI events (Zammad's push API) to /api/cti/<name>/<token>."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,19}$", description="in the endpoint's URL; a-z, 0-9, _ and -")
    token: SecretStr = Field(description="the secret part of the endpoint's URL; at least 24 characters")
    region: str | None = Field(default=None, description="how its national numbers are read; unset = default_region")
    outside_prefix: str = Field(default="", pattern=r"^[0-9]{0,3}$", description="its outside-line prefix, if any")
    dial_url: SecretStr | None = Field(
        default=None, description="click-to-dial: POSTed to, with {agent}, {number} and {caller_id} filled in"
    )
    blocked_callers: tuple[str, ...] = Field(default=(), description="numbers whose calls the PBX is told to reject")
    outbound_caller_id: str | None = Field(default=None, description="the caller ID told to the PBX on outbound calls")

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 24 or not re.fullmatch(r"[A-Za-z0-9_.~-]+", value.get_secret_value()):
            raise ValueError("a token is at least 24 URL-safe characters (letters, digits, _ . ~ -)")
        return value

    @field_validator("region")
    @classmethod
    def _pbx_region(cls, value: str | None) -> str | None:
        if value is not None and value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. US, GB, DE, FR)")
        return value.upper() if value else None

    @field_validator("dial_url")
    @classmethod
    def _dial_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and urlsplit(value.get_secret_value()).scheme not in {"http", "https"}:
            raise ValueError("dial_url must be an http:// or https:// URL")
        return value


class Settings(BaseModel):
    """Every setting of the product. Field name `x` is read from `CRM_X` or key `x` of the TOML file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    database_url: str = "sqlite+aiosqlite:///./var/crm.db"
    redis_url: str | None = None
    socketio_channel: str = "crm-socketio"
    ami_url: SecretStr | None = Field(
        default=None, description="ami://user:secret@host:5038 (amis:// for TLS); unset = demo PBX"
    )
    ami_ping_interval_s: float = 20.0
    ami_event_filter: bool = Field(
        default=True, description="ask Asterisk for the tracked events only (AMI Filter; needs write=system)"
    )
    generic_pbxes: tuple[GenericPbxSetting, ...] = Field(
        default=(),
        description="PBXes pushing generic CTI events, beside Asterisk: a JSON list (or [[generic_pbxes]] in TOML)",
    )
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=1, le=65535)
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(default=4573, ge=1, le=65535)
    agi_answer_timeout_s: float = Field(
        default=30.0, gt=0, description="a FastAGI session whose Asterisk side is silent this long is closed"
    )
    agi_max_sessions: int = Field(default=4000, ge=1, description="FastAGI sessions at once; one more is refused")
    demo_pbx_port: int | None = Field(
        default=None, ge=0, le=65535, description="unset = a free port (an Asterisk on this host keeps 5038)"
    )
    ivr_flows_dir: Path | None = Field(default=None, description="folder of IVR flow files; unset = the sample flow")
    vosk_model_path: Path | None = Field(default=None, description="Vosk model folder for speech menus")
    callback_dial_every_s: float = Field(default=5.0, gt=0)
    demo_calls_per_minute: float = Field(default=4.0, ge=0, le=6000)
    secret_key: SecretStr | None = None
    data_dir: Path = Path("./var")
    recordings_dir: Path | None = Field(
        default=None,
        description="where the PBX's call recordings arrive (a mount or a sync); unset = data_dir/recordings",
    )
    recordings_store_dir: Path | None = Field(
        default=None, description="where recordings are kept once ingested; unset = data_dir/recording-store"
    )
    recordings_s3_bucket: str | None = Field(
        default=None, description="keep ingested recordings in this bucket of an S3-compatible store (unset: a folder)"
    )
    recordings_s3_endpoint_url: str | None = Field(
        default=None, description="the store's address for S3-compatible services (MinIO, Ceph…); unset: AWS"
    )
    recordings_s3_region: str = Field(default="us-east-1", description="the bucket's region")
    recordings_s3_prefix: str = Field(default="recordings/", description="key prefix of the recordings in the bucket")
    recordings_s3_access_key_id: str | None = None
    recordings_s3_secret_access_key: SecretStr | None = None
    recordings_settle_s: float = Field(
        default=5.0, ge=0, description="a recording untouched this long after its call ended is complete"
    )
    recordings_retry_s: float = Field(default=10.0, gt=0, description="first retry of a recording job (doubles)")
    recordings_max_attempts: int = Field(default=8, ge=1, description="tries before a recording job fails for good")
    transcribe_workers: int = Field(
        default=1, ge=0, description="Vosk processes transcribing beside `crm serve` (0 = only `crm transcribe`)"
    )
    transcribe_off_queues: str = Field(
        default="", description="queues whose calls are recorded but never transcribed (comma-separated)"
    )
    transcribe_lease_s: float = Field(
        default=60.0, gt=0, description="a transcription job whose worker is silent this long is taken over"
    )
    default_region: str = "US"
    pool_return_days: int = Field(default=30, ge=1)
    service_level_seconds: int = Field(default=20, ge=1)
    wrapup_seconds: int = Field(default=30, ge=0)
    admin_password: SecretStr | None = None
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_api_base: str | None = None
    public_base_url: str = "http://127.0.0.1:8080"
    cookie_secure: bool | None = Field(
        default=None, description="send the session cookie over HTTPS only; unset = when public_base_url is https"
    )
    sms_sender: str | None = Field(
        default=None, description="the number (E.164) or Messaging Service SID (MG…) agents' SMS go out from"
    )
    sms_sender_mps: float = Field(default=1.0, gt=0, le=10000, description="messages a second per sender (segments)")
    sms_outbox_batch: int = Field(
        default=200, ge=1, le=5000, description="SMS the outbox claims at once (rows locked while they are sent)"
    )
    sms_outbox_concurrency: int = Field(
        default=16,
        ge=1,
        le=512,
        description="SMS requests in flight at once (each sender's rate still paces them; more hides round trips)",
    )
    sms_queue: str = Field(default="support", description="the queue a new SMS conversation lands in")
    sms_help_text: str = Field(
        default="Contact center: reply to chat with an agent. Reply STOP to opt out, START to opt back in.",
        max_length=320,
        description="the answer to a customer's HELP",
    )
    csat_enabled: bool = Field(default=True, description="send a satisfaction (CSAT) request after resolution")
    csat_delay_minutes: float = Field(
        default=10.0, ge=0, description="how long after resolution the CSAT request goes (a quick reopen cancels it)"
    )
    csat_sms_text: str = Field(
        default="How did we do with ticket {number}? Reply with a number from 1 (bad) to 5 (great).",
        min_length=1,
        max_length=320,
        description="the CSAT request by SMS; {number} is the ticket's number",
    )
    intake_min_seconds: int = Field(
        default=3, ge=0, le=3600, description="the public ticket form must be open this long before it is sent"
    )
    intake_per_hour: int = Field(
        default=10, ge=1, description="tickets from the public web form per client address and hour"
    )
    webhook_allowed_networks: str = Field(
        default="",
        description="networks webhooks may reach although private or loopback (SSRF guard), e.g. 10.0.0.0/8,"
        "127.0.0.1; empty = public addresses only",
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120, description="a receiver's time to answer")
    webhook_retry_hours: float = Field(default=24.0, gt=0, description="retries last this long, then dead letter")
    webhook_backoff_s: float = Field(default=10.0, gt=0, description="the first retry's longest wait (doubles)")
    webhook_backoff_max_s: float = Field(default=3600.0, gt=0, description="the longest wait between retries")
    webhook_lease_s: float = Field(
        default=60.0, gt=0, description="a delivery whose worker is silent this long is sent again by another"
    )
    log_level: str = "INFO"
    gc_freeze_every_s: float = Field(
        default=0.25, gt=0, description="how often long-lived objects are frozen out of the collector's scans"
    )

    @property
    def secure_cookies(self) -> bool:
        if self.cookie_secure is not None:
            return self.cookie_secure
        return urlsplit(self.public_base_url).scheme.lower() == "https"

    @property
    def recordings_folder(self) -> Path:
        return self.recordings_dir or self.data_dir / "recordings"

    @property
    def transcription_off_queues(self) -> frozenset[str]:
        return frozenset(q.strip() for q in self.transcribe_off_queues.split(",") if q.strip())

    @property
    def recordings_store_folder(self) -> Path:
        return self.recordings_store_dir or self.data_dir / "recording-store"

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in {"sqlite+aiosqlite", "postgresql+asyncpg", "sqlite", "postgresql"}:
            raise ValueError(
                f"unsupported database scheme {scheme!r}; use sqlite+aiosqlite:///path or "
                "postgresql+asyncpg://user@host/db"
            )
        if scheme == "sqlite":
            return value.replace("sqlite:", "sqlite+aiosqlite:", 1)
        if scheme == "postgresql":
            return value.replace("postgresql:", "postgresql+asyncpg:", 1)
        return value

    @field_validator("generic_pbxes", mode="before")
    @classmethod
    def _generic_pbxes_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else []
            except json.JSONDecodeError as exc:
                raise ValueError(f"not a JSON list of PBXes ({exc.msg} at character {exc.pos})") from None
        if isinstance(value, list | tuple):
            names = [p.get("name") if isinstance(p, dict) else getattr(p, "name", None) for p in value]
            if len(names) != len(set(names)):
                raise ValueError("two generic PBXes have the same name")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value and urlsplit(value).scheme not in {"redis", "rediss", "unix"}:
            raise ValueError("must start with redis:// or rediss://")
        return value or None

    @field_validator("ami_url")
    @classmethod
    def _ami_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        parts = urlsplit(value.get_secret_value())
        if parts.scheme not in {"ami", "amis"} or not parts.hostname:
            raise ValueError("must look like ami://user:secret@host:5038 (or amis:// for TLS)")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        value = value.upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{value!r} is not a region phonenumbers knows (e.g. US, GB, DE, FR)")
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    @property
    def webhook_retry_window(self) -> timedelta:
        return timedelta(hours=self.webhook_retry_hours)

    @property
    def webhook_address_policy(self) -> AddressPolicy:
        return AddressPolicy(parse_networks(self.webhook_allowed_networks))

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        value = value.upper()
        if value not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def _describe(error: ValidationError, origin: dict[str, str]) -> str:
    first = error.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    where = origin.get(field, f"{ENV_PREFIX}{field.upper()}")
    if first["type"] == "extra_forbidden":
        return f"Unknown setting {where}: it is not one of the product's settings (see README)."
    message = str(first["msg"]).removeprefix("Value error, ")
    return f"Setting {where} is invalid: {message}."


def load_settings(environ: dict[str, str] | None = None, config_file: Path | None = None) -> Settings:
    """Read and validate settings; raise SettingsError with one clear sentence on any problem."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    path = config_file or (Path(env["CRM_CONFIG"]) if env.get("CRM_CONFIG") else None)
    if path is not None:
        try:
            with path.open("rb") as fh:
                file_values = tomllib.load(fh)
        except FileNotFoundError:
            raise SettingsError(f"The settings file {path} does not exist.") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"The settings file {path} is not valid TOML: {exc}.") from None
        for key, value in file_values.items():
            values[key] = value
            origin[key] = f"{key!r} in {path}"
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX) or name in _META_VARIABLES:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        values[key] = value
        origin[key] = name
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise SettingsError(_describe(exc, origin)) from None
