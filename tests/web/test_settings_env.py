"""Settings helpers fail loudly on values they cannot parse."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from webapp.env import envbool, envbytes, envint, envlist, envstr


def test_envbool_reads_common_spellings(monkeypatch):
    for raw, expected in [("1", True), ("yes", True), ("ON", True), ("0", False), ("off", False)]:
        monkeypatch.setenv("FLAG", raw)
        assert envbool("FLAG", not expected) is expected


def test_envbool_refuses_a_typo(monkeypatch):
    monkeypatch.setenv("FLAG", "ture")
    with pytest.raises(ImproperlyConfigured, match="FLAG"):
        envbool("FLAG", False)


def test_envint_refuses_text_and_values_below_the_minimum(monkeypatch):
    monkeypatch.setenv("N", "ten")
    with pytest.raises(ImproperlyConfigured, match="not an integer"):
        envint("N", 1)
    monkeypatch.setenv("N", "0")
    with pytest.raises(ImproperlyConfigured, match="at least 1"):
        envint("N", 5, minimum=1)


def test_envbytes_understands_units(monkeypatch):
    monkeypatch.setenv("SIZE", "2GiB")
    assert envbytes("SIZE", 1) == 2 * 2**30
    monkeypatch.setenv("SIZE", "500MB")
    assert envbytes("SIZE", 1) == 500 * 10**6
    monkeypatch.setenv("SIZE", "lots")
    with pytest.raises(ImproperlyConfigured):
        envbytes("SIZE", 1)


def test_missing_required_string_is_an_error(monkeypatch):
    monkeypatch.delenv("SECRET_THING", raising=False)
    with pytest.raises(ImproperlyConfigured, match="SECRET_THING"):
        envstr("SECRET_THING")
    assert envlist("NOT_SET_LIST", ["a"]) == ["a"]


def test_production_settings_refuse_the_development_secret_key():
    import subprocess
    import sys

    code = "import webapp.settings"
    env = {"PATH": "/usr/bin:/bin", "DEBUG": "0", "PYTHONPATH": "."}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
