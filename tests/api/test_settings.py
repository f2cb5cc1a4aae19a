"""pydantic-settings configuration refuses unsafe settings outside development."""

from __future__ import annotations

import pytest

from visioncascade.api.settings import load_settings
from visioncascade.errors import ApiError


def test_safe_defaults_load() -> None:
    s = load_settings()
    assert s.environment == "production" and s.auth_enabled and s.host == "127.0.0.1"
    assert s.sqlite_synchronous == "FULL"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"auth_enabled": False}, "auth_enabled=false (API keys are required outside development)"),
        ({"bootstrap_admin_key": "short"}, "bootstrap_admin_key is weak"),
        ({"bootstrap_admin_key": "changeme"}, "bootstrap_admin_key is weak"),
        ({"database_url": "sqlite:///:memory:"}, "in-memory SQLite"),
        ({"sqlite_synchronous": "OFF"}, "sqlite_synchronous=OFF"),
        ({"database_url": "postgresql+psycopg://u:postgres@db/x"}, "well-known default"),
        ({"environment": "staging", "auth_enabled": False}, "environment=staging"),
    ],
)
def test_unsafe_settings_are_refused_outside_development(overrides: dict, message: str) -> None:
    with pytest.raises(ApiError) as info:
        load_settings(**overrides)
    assert message in str(info.value)
    assert "VISIONCASCADE_ENVIRONMENT=development" in str(info.value)
    load_settings(**{**overrides, "environment": "development"})  # allowed for local experiments


def test_no_auth_on_all_interfaces_is_refused_even_in_development() -> None:
    with pytest.raises(ApiError, match=r"auth_enabled=false while binding 0\.0\.0\.0") as info:
        load_settings(environment="development", auth_enabled=False, host="0.0.0.0")
    assert "ENVIRONMENT=development" not in str(info.value)  # not offered: it is what was refused
    assert load_settings(host="0.0.0.0").host == "0.0.0.0"  # with auth it is fine


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VISIONCASCADE_ENVIRONMENT", "development")
    monkeypatch.setenv("VISIONCASCADE_AUTH_ENABLED", "false")
    monkeypatch.setenv("VISIONCASCADE_PORT", "9123")
    s = load_settings()
    assert (s.environment, s.auth_enabled, s.port) == ("development", False, 9123)


def test_bad_values_name_the_setting() -> None:
    with pytest.raises(ApiError, match="port"):
        load_settings(port=70000)
    with pytest.raises(ApiError, match="environment"):
        load_settings(environment="prod")
