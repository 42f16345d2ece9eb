"""Registry credentials and authentication challenges for ``oci://`` (``oci_http.py`` calls it).

Credentials come from a Docker config file, the format ``docker login`` writes and a
``kubernetes.io/dockerconfigjson`` Secret holds: ``{"auths": {"host:port": {"auth":
base64(user:pass)}}}``, or ``username``/``password`` keys instead of ``auth``. Credential
helpers (``credsStore``, ``credHelpers``) run programs and are not supported. The file is read
when a registry asks for credentials (a 401), not once at start-up, so a rotated Secret is
picked up on the next challenge.

Challenges are the ``WWW-Authenticate`` headers of RFC 7235 as registries send them:
``Basic realm="..."`` or ``Bearer realm="https://auth/token",service="...",scope="..."``.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .base import AccessDeniedError

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'[\s,]*({_TOKEN})\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)')
_SCHEME = re.compile(rf"[\s,]*({_TOKEN})(?=[\s,]|$)")
_TOKEN68 = re.compile(r"\s+[A-Za-z0-9._~+/-]+=*\s*(?=,|$)")
_ESCAPE = re.compile(r"\\(.)")
_DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A user name and password for one registry. ``repr`` never shows the password."""

    username: str
    password: str = field(repr=False)

    @property
    def basic(self) -> str:
        """The value of an ``Authorization: Basic`` header."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


@dataclass(frozen=True)
class Challenge:
    """One authentication challenge: its scheme in lower case and its parameters."""

    scheme: str
    params: Mapping[str, str]


def default_config_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """Where Docker keeps credentials: ``$DOCKER_CONFIG/config.json``, else
    ``~/.docker/config.json``; None when that file does not exist."""
    env = os.environ if environ is None else environ
    folder = env.get("DOCKER_CONFIG")
    path = Path(folder) / "config.json" if folder else Path.home() / ".docker" / "config.json"
    return path if path.is_file() else None


def _normalise(key: str) -> str:
    """``https://host:port/v1/`` -> ``host:port``: the forms ``docker login`` writes."""
    key = key.strip().lower()
    key = key.split("://", 1)[-1]
    return key.split("/", 1)[0]


def _candidates(netloc: str) -> set[str]:
    netloc = netloc.lower()
    return set(_DOCKER_HUB) if netloc in _DOCKER_HUB else {netloc}


def load_credentials(path: Path, netloc: str) -> Credentials | None:
    """The credentials ``path`` holds for registry ``netloc`` (``host`` or ``host:port``),
    or None when it holds none. A file that cannot be read or parsed raises
    AccessDeniedError; its contents are never quoted (they are secrets)."""
    try:
        document = json.loads(path.read_bytes())
    except OSError as exc:
        raise AccessDeniedError(
            f"registry config {path} cannot be read ({exc.strerror or type(exc).__name__}); "
            "check registry_config"
        ) from None
    except ValueError:
        raise AccessDeniedError(f"registry config {path} is not valid JSON") from None
    auths = document.get("auths") if isinstance(document, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = _candidates(netloc)
    for key, entry in auths.items():
        if isinstance(key, str) and isinstance(entry, dict) and _normalise(key) in wanted:
            return _entry_credentials(entry, path, netloc)
    return None


def _entry_credentials(entry: dict[str, object], path: Path, netloc: str) -> Credentials | None:
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credentials(username, password)
    auth = entry.get("auth")
    if not isinstance(auth, str) or not auth:
        return None
    try:
        user, sep, secret = base64.b64decode(auth, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, sep, secret = "", "", ""
    if not sep or not user:
        raise AccessDeniedError(
            f"registry config {path}: the 'auth' entry for {netloc} is not base64 of "
            "'user:password'"
        )
    return Credentials(user, secret)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    """Every challenge in the ``WWW-Authenticate`` header values, in order. Parameter names
    are lower-cased; quoted values are unquoted. Unparseable tails are ignored."""
    found: list[Challenge] = []
    for value in headers:
        pos = 0
        params: dict[str, str] | None = None
        while pos < len(value):
            param = _PARAM.match(value, pos)
            if param is not None and params is not None:
                params[param[1].lower()] = _unquote(param[2])
                pos = param.end()
                continue
            scheme = _SCHEME.match(value, pos)
            if scheme is None:
                break
            params = {}
            found.append(Challenge(scheme[1].lower(), params))
            pos = scheme.end()
            if token68 := _TOKEN68.match(value, pos):  # a scheme's opaque value: skipped
                pos = token68.end()
    return found


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return _ESCAPE.sub(r"\1", value[1:-1])
    return value


def pick(challenges: list[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer (the registry token flow) over Basic."""
    for scheme in ("bearer", "basic"):
        for challenge in challenges:
            if challenge.scheme == scheme:
                return challenge
    return None
