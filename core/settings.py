"""Configuration from the environment and `.env` (every setting is listed in .env.example)."""

from __future__ import annotations

import re
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.models import MAX_LEASE_SECONDS, MIN_LEASE_SECONDS

ENV_PREFIX = "OB_"


# What aiogram accepts as a bot token: the bot's id, a colon, the secret (no spaces).
BOT_TOKEN_RE = re.compile(r"^[0-9]{1,20}:[A-Za-z0-9_-]+$")
SECRETS = {"bot_token", "webhook_secret", "agent_token"}


class SettingsError(Exception):
    """A setting has an invalid value; the message names the variable and what is wrong."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str | None = Field(
        None, description="PostgreSQL URL; unset = start the embedded server under data_dir"
    )
    data_dir: Path = Field(
        default_factory=lambda: Path(platformdirs.user_data_dir("ob")),
        description="where the embedded PostgreSQL keeps its data",
    )
    key_prefix: str = Field("OB", description="task keys look like OB-12")
    timezone: str = Field("UTC", description="operator's time zone (IANA name)")
    lease_ttl: int = Field(
        1800, ge=MIN_LEASE_SECONDS, le=MAX_LEASE_SECONDS, description="lease length in seconds"
    )
    max_expiries: int = Field(3, ge=1, le=100, description="expiries before requires_decision")
    auto_approve_prerequisites: bool = Field(
        False, description="hand-off prerequisites skip the approval gate"
    )
    bot_token: SecretStr | None = Field(None, description="Telegram bot token; unset = no bot")
    operator_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list, description="Telegram user ids allowed to use the bot"
    )
    telegram_api_url: str = Field("https://api.telegram.org", description="Bot API base URL")
    digest_at: time = Field(time(8, 0), description="local time of the daily digest (HH:MM)")
    digest_grace: int = Field(
        6 * 3600, ge=0, le=86_399, description="seconds a missed digest may still be sent late"
    )
    capture_window: int = Field(
        120,
        ge=0,
        le=86_400,
        description="seconds within which a message joins the open preview (0: never)",
    )
    webhook_url: str | None = Field(
        None, description="public URL Telegram posts updates to; unset = long polling"
    )
    webhook_secret: SecretStr | None = Field(
        None, description="secret Telegram sends with every webhook update; unset = derived"
    )
    gateway_host: str = Field("127.0.0.1", description="agent gateway bind address")
    gateway_port: int = Field(8765, ge=0, le=65535, description="agent gateway port")
    url: str | None = Field(
        None,
        description="gateway URL for the agent verbs; unset = OB_GATEWAY_HOST:OB_GATEWAY_PORT",
    )
    agent_token: SecretStr | None = Field(None, description="this agent's gateway token")
    max_request_bytes: int = Field(256 * 1024, ge=1024, description="largest gateway request")
    repo_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list, description="folders scanned for git repositories (comma-separated)"
    )
    reconcile_every: int = Field(300, ge=10, description="seconds between git reconciliations")
    fetch_timeout: int = Field(
        60,
        ge=1,
        le=3600,
        description="seconds one repository's fetch may take before it is stopped",
    )
    fetch_concurrency: int = Field(
        8, ge=1, le=64, description="repositories fetched and read at the same time"
    )
    truth_max_age: int = Field(
        3600,
        ge=60,
        description="seconds after the last good fetch that a repo is listed as stale (truth age)",
    )
    forge_secret: SecretStr | None = Field(
        None, description="secret of the forges' push webhooks; unset = webhooks off"
    )
    unverified_days: int = Field(
        3, ge=0, le=365, description="days after which an unverified completion is flagged"
    )
    sweep_every: int = Field(30, ge=1, description="seconds between lease-expiry sweeps")
    prompt_ttl: int = Field(
        900, ge=60, le=86_400, description="seconds the bot waits for the answer to a prompt"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="how much `ob serve` logs; DEBUG adds the libraries' own chatter"
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, data: object) -> object:
        """`OB_BOT_TOKEN=` (a .env copied from .env.example leaves such lines) means unset."""
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and not v.strip())}
        return data

    @field_validator("bot_token")
    @classmethod
    def _bot_token(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not BOT_TOKEN_RE.match(v.get_secret_value().strip()):
            raise ValueError(
                "not a Telegram bot token; tokens look like 123456789:AAE... (from @BotFather)"
            )
        return SecretStr(v.get_secret_value().strip()) if v is not None else None

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, v: object) -> object:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        v = v.strip().upper()
        if not re.fullmatch(r"[A-Z][A-Z0-9]{0,9}", v):
            raise ValueError("must be 1-10 letters or digits, starting with a letter (e.g. OB)")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {v!r}; use an IANA name such as Europe/Berlin"
            ) from None
        return v

    @field_validator("operator_ids", mode="before")
    @classmethod
    def _ids(cls, v: object) -> object:
        if isinstance(v, str):
            parts = [p.strip() for p in v.split(",") if p.strip()]
            bad = [p for p in parts if not p.lstrip("-").isdigit()]
            if bad:
                raise ValueError(f"not numeric Telegram user ids: {', '.join(bad)}")
            return [int(p) for p in parts]
        return v

    @field_validator("repo_roots", mode="before")
    @classmethod
    def _roots(cls, v: object) -> object:
        if isinstance(v, str):
            return [Path(p.strip()).expanduser() for p in v.split(",") if p.strip()]
        return v

    @field_validator("database_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        if v is not None and not re.match(r"^postgres(ql)?://", v):
            raise ValueError("must start with postgresql:// (e.g. postgresql://user@host:5432/ob)")
        return v

    @field_validator("webhook_url")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        parts = urlsplit(v.strip())
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("must be a URL like https://ob.example.com/telegram")
        return v.strip()

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", v.get_secret_value()):
            raise ValueError("must be 1-256 letters, digits, _ or - (Telegram's rule)")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def gateway_url(self) -> str:
        """Where the agent verbs find the gateway: OB_URL, else where `ob serve` listens."""
        if self.url:
            return self.url.rstrip("/")
        host = self.gateway_host
        if host in ("0.0.0.0", "::"):  # listening everywhere: this machine is one of them
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.gateway_port}"


def describe_error(err: ValidationError) -> str:
    """Each problem on a line naming its variable (a secret's value is never repeated)."""
    lines = []
    for e in err.errors():
        field = "_".join(str(p) for p in e["loc"])
        got = "" if field in SECRETS else f" (got {e.get('input')!r})"
        msg = str(e["msg"]).removeprefix("Value error, ")  # pydantic's words, not the user's
        lines.append(f"{ENV_PREFIX}{field.upper()}: {msg}{got}")
    if len(lines) == 1:
        return f"invalid configuration: {lines[0]}"
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(**overrides: object) -> Settings:
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as err:
        raise SettingsError(describe_error(err)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
