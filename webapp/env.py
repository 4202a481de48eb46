"""Typed readers for settings that come from environment variables.

Each helper fails loudly (``ImproperlyConfigured``) on a value it cannot parse, so a typo in a
deployment's environment stops the process at start-up instead of silently using a default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def envstr(name: str, default: str | None = None) -> str:
    """Return the variable as a string; without a default a missing variable is an error."""
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"Set the environment variable {name}.")
        return default
    return value


def envbool(name: str, default: bool) -> bool:
    """Parse 1/0, true/false, yes/no, on/off (case-insensitive)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use 1/0, true/false, yes/no.")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    """Parse an integer, optionally with a lower bound."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer.") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} must be at least {minimum}.")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    """Parse a comma-separated list; blank items are dropped."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def envbytes(name: str, default: int) -> int:
    """Parse a size such as ``500MB``, ``2GiB`` or a plain number of bytes."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    text = raw.strip().upper().replace(" ", "")
    units = {
        "KIB": 2**10,
        "MIB": 2**20,
        "GIB": 2**30,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "B": 1,
    }
    suffix = next((unit for unit in units if text.endswith(unit)), "")
    number, factor = text[: len(text) - len(suffix)], units.get(suffix, 1)
    try:
        value = int(float(number) * factor)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a size like 500MB or 2GiB.") from None
    if value <= 0:
        raise ImproperlyConfigured(f"{name}={raw!r} must be a positive size.")
    return value


@dataclass(frozen=True)
class ObjectStore:
    """An S3-compatible bucket, parsed from ``s3://ACCESS:SECRET@host:port/bucket?…``."""

    bucket: str
    endpoint_url: str | None  # None: AWS itself (no host in the URL)
    access_key: str | None  # None: boto3's own credential chain (instance role, ~/.aws)
    secret_key: str | None
    region: str | None
    prefix: str  # a folder inside the bucket ("" for its root)
    addressing_style: str  # "path" (MinIO and most self-hosted servers) or "virtual"
    verify: bool

    def storage_config(self) -> dict[str, object]:
        """A ``STORAGES`` entry: django-storages' ``S3Storage`` on this bucket."""
        from botocore.config import Config

        return {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": {
                "bucket_name": self.bucket,
                "endpoint_url": self.endpoint_url,
                "access_key": self.access_key,
                "secret_key": self.secret_key,
                "region_name": self.region,
                "location": self.prefix,
                "addressing_style": self.addressing_style,
                "verify": self.verify,
                # Two owners' identical uploads share a content-addressed name: never
                # overwrite; get a fresh name as the filesystem does (deleting one row's file
                # must not delete the other's).
                "file_overwrite": False,
                # Reads spool to a temporary file beyond this size, never into memory whole.
                "max_memory_size": 2_621_440,
                # A dead store fails within seconds (the /readyz check, page loads).
                "client_config": Config(
                    connect_timeout=3,
                    read_timeout=60,
                    retries={"max_attempts": 2, "mode": "standard"},
                ),
            },
        }


_STORE_QUERY = {"region", "secure", "prefix", "addressing", "verify"}


def parse_object_store(name: str, raw: str) -> ObjectStore:
    """Parse an object-store URL; ``name`` is the variable it came from (for the message).

    ``s3://ACCESS:SECRET@host:port/bucket?region=eu-west-1&secure=0&prefix=media``:
    ``secure=0`` talks plain HTTP to the host (default 1: HTTPS), ``addressing=virtual`` puts the
    bucket in the host name (default ``path``), ``verify=0`` skips TLS certificate checks. Without
    a host the bucket is on AWS; without credentials boto3 finds its own. Credentials with
    reserved characters are percent-encoded.
    """
    url = urlsplit(raw.strip())

    def bad(reason: str) -> ImproperlyConfigured:
        return ImproperlyConfigured(
            f"{name}: {reason} (expected s3://ACCESS:SECRET@host:port/bucket?region=…&secure=0)."
        )

    if url.scheme != "s3":
        raise bad(f"the scheme is {url.scheme or 'missing'!r}, not 's3'")
    bucket = url.path.strip("/")
    if not bucket or "/" in bucket:
        raise bad("name exactly one bucket as the path")
    query = parse_qs(url.query, keep_blank_values=True)
    unknown = set(query) - _STORE_QUERY
    if unknown:
        raise bad(f"unknown options {sorted(unknown)}; known: {sorted(_STORE_QUERY)}")

    def option(key: str, default: str) -> str:
        return query.get(key, [default])[-1].strip()

    def flag(key: str) -> bool:
        value = option(key, "1").lower()
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        raise bad(f"{key}={value!r} is not a boolean")

    secure = flag("secure")
    try:
        port = url.port
    except ValueError:
        raise bad("the port is not a number") from None
    host = url.hostname
    endpoint = None
    if host:
        netloc = f"[{host}]" if ":" in host else host
        endpoint = f"{'https' if secure else 'http'}://{netloc}{f':{port}' if port else ''}"
    addressing = option("addressing", "path").lower()
    if addressing not in {"path", "virtual"}:
        raise bad(f"addressing={addressing!r} must be 'path' or 'virtual'")
    access = unquote(url.username) if url.username else None
    secret = unquote(url.password) if url.password else None
    if (access is None) != (secret is None):
        raise bad("give both the access key and the secret, or neither")
    return ObjectStore(
        bucket=bucket,
        endpoint_url=endpoint,
        access_key=access,
        secret_key=secret,
        region=option("region", "") or None,
        prefix=option("prefix", "").strip("/"),
        addressing_style=addressing,
        verify=flag("verify"),
    )
