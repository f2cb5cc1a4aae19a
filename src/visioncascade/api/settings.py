"""Configuration of the prediction API (pydantic-settings; environment variables ``VISIONCASCADE_*``).

Outside ``environment=development`` the settings refuse to load when they are unsafe: authentication
turned off, a weak bootstrap admin key, an in-memory or non-durable SQLite database, a weak database
password. Binding to all interfaces without authentication is refused in every environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from visioncascade.errors import ApiError

__all__ = ["Settings", "load_settings"]

_WEAK_SECRETS = {"", "changeme", "changethis", "secret", "password", "admin", "postgres", "test", "123456"}
_MIN_KEY_LENGTH = 32


class Settings(BaseSettings):
    """Every option of ``visioncascade serve``; each can be set as ``VISIONCASCADE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VISIONCASCADE_", extra="forbid", env_file=None)

    environment: Literal["development", "staging", "production"] = Field(
        "production", description="Unsafe settings are refused outside development."
    )
    database_url: str = Field(
        "sqlite:///visioncascade.db",
        description="sqlite:///path.db or postgresql+psycopg://user:password@host/db",
    )
    rules_path: Path | None = Field(None, description="YAML rules file; none: the built-in default output.")
    rules_poll_seconds: float = Field(
        1.0, gt=0, le=3600, description="How often to check the file for changes."
    )
    cascade_paths: list[Path] = Field(
        default_factory=list,
        description="Cascade YAML files the live camera page (/ and /v1/live) runs; JSON list in the env.",
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    auth_enabled: bool = Field(True, description="Require API keys (only development may turn this off).")
    bootstrap_admin_key: SecretStr | None = Field(
        None, description="An admin key accepted without a database row (first setup); >= 32 characters."
    )
    rate_limit_per_second: float = Field(200.0, gt=0, description="Sustained requests per second per key.")
    rate_limit_burst: int = Field(400, ge=1, description="Requests a key may make at once before limiting.")
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    max_future_seconds: float = Field(300.0, ge=0, le=7 * 24 * 3600, description="Allowed clock skew.")
    sqlite_synchronous: Literal["FULL", "NORMAL", "OFF"] = Field(
        "FULL", description="FULL: a commit survives power loss; NORMAL survives a process crash only."
    )
    commit_max_events: int = Field(2000, ge=1, le=20000, description="Most events in one group commit.")
    key_cache_seconds: float = Field(10.0, ge=0, le=3600, description="How long a checked key is trusted.")
    docs_enabled: bool = True

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        problems = self.unsafe_reasons()
        if problems:
            # Development allows everything but auth off on a network address: there, only a fix helps.
            escape = (
                ""
                if self.environment == "development"
                else ", or set VISIONCASCADE_ENVIRONMENT=development for local experiments"
            )
            raise ValueError(
                f"unsafe settings for environment={self.environment}: "
                + "; ".join(problems)
                + f". Fix them{escape}."
            )
        return self

    def unsafe_reasons(self) -> list[str]:
        """Why these settings are unsafe here (empty when they are fine)."""
        problems: list[str] = []
        if not self.auth_enabled and self.host not in ("127.0.0.1", "localhost", "::1"):
            problems.append(
                f"auth_enabled=false while binding {self.host}: anyone on the network could write"
            )
        if self.environment == "development":
            return problems
        if not self.auth_enabled:
            problems.append("auth_enabled=false (API keys are required outside development)")
        key = self.bootstrap_admin_key.get_secret_value() if self.bootstrap_admin_key is not None else None
        if key is not None and (len(key) < _MIN_KEY_LENGTH or key.lower() in _WEAK_SECRETS):
            problems.append(
                f"bootstrap_admin_key is weak (needs >= {_MIN_KEY_LENGTH} random characters; "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` makes one)"
            )
        try:
            url = make_url(self.database_url)
        except Exception:
            problems.append(f"database_url {self.database_url!r} is not a database URL")
            return problems
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:") or "mode=memory" in str(url):
                problems.append("an in-memory SQLite database loses every event on restart")
            if self.sqlite_synchronous == "OFF":
                problems.append("sqlite_synchronous=OFF acknowledges events that a crash can lose")
        elif url.password is not None and url.password.lower() in _WEAK_SECRETS:
            problems.append("the database password is a well-known default")
        return problems

    @property
    def is_sqlite(self) -> bool:
        """Whether the database is SQLite."""
        return self.database_url.startswith("sqlite")


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment with ``overrides`` (None values ignored) applied.

    Raises:
        ApiError: the settings are invalid or unsafe; the message lists every problem.
    """
    values = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**values)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}" if loc != "settings" else msg)
        raise ApiError("invalid API settings: " + " | ".join(lines)) from exc
