"""Settings: invalid values fail at start with a message naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from core.settings import SettingsError, load_settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OB_LEASE_TTL": "soon"}, "OB_LEASE_TTL"),
        ({"OB_TIMEZONE": "Mars/Olympus"}, "OB_TIMEZONE: unknown time zone"),
        ({"OB_OPERATOR_IDS": "12,abc"}, "OB_OPERATOR_IDS"),
        ({"OB_KEY_PREFIX": "not a prefix"}, "OB_KEY_PREFIX"),
        ({"OB_DATABASE_URL": "mysql://x"}, "OB_DATABASE_URL"),
        ({"OB_GATEWAY_PORT": "99999"}, "OB_GATEWAY_PORT"),
    ],
)
def test_invalid_setting_is_named(monkeypatch: pytest.MonkeyPatch, env: dict, message: str) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None)
    assert message in str(err.value) and "Value error" not in str(err.value)  # pydantic's words


def test_lists_from_commas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OB_OPERATOR_IDS", "12, 34")
    monkeypatch.setenv("OB_KEY_PREFIX", "ops")
    s = load_settings(_env_file=None)
    assert s.operator_ids == [12, 34]
    assert s.key_prefix == "OPS"


def test_cli_reports_bad_setting_and_exits_2() -> None:
    env = {**os.environ, "OB_LEASE_TTL": "-5"}
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "list"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "OB_LEASE_TTL" in proc.stderr and "greater than or equal to 10" in proc.stderr


def test_env_example_lists_every_setting() -> None:
    from pathlib import Path

    from core.settings import Settings

    text = (Path(__file__).parent.parent / ".env.example").read_text()
    missing = [f for f in Settings.model_fields if f"OB_{f.upper()}=" not in text]
    assert missing == []
