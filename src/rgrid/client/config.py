"""Which grid the CLI talks to, and with which key.

Order: ``RGRID_API_URL``/``RGRID_API_KEY``; else the profile (``RGRID_PROFILE``, default
``default``) in ``~/.rgrid/credentials``; else the local grid under ``RGRID_HOME``, started on demand.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

from rgrid import errors
from rgrid.enums import CACHE_MODES

DEFAULT_PROFILE = "default"


def rgrid_dir() -> Path:
    return Path.home() / ".rgrid"


def credentials_path() -> Path:
    return rgrid_dir() / "credentials"


def local_home() -> Path:
    value = os.environ.get("RGRID_HOME")
    return Path(value).expanduser() if value else rgrid_dir() / "local"


# not a dataclass: every command makes one, and compiling a dataclass's methods costs ms
class Target(NamedTuple):
    api_url: str | None  # None: the local grid (started on demand)
    api_key: str | None
    source: str  # where the values came from, for `rgrid doctor` and messages


def _profile(name: str) -> dict[str, str]:
    path = credentials_path()
    if not path.exists():
        return {}
    import configparser  # here: most commands run without a credentials file

    parser = configparser.ConfigParser()
    try:
        parser.read(path)
    except configparser.Error as exc:
        raise errors.UsageError(f"{path} is not a valid credentials file: {exc}") from exc
    return dict(parser[name]) if parser.has_section(name) else {}


def resolve_target() -> Target:
    profile_name = os.environ.get("RGRID_PROFILE") or DEFAULT_PROFILE
    profile = _profile(profile_name)
    env_url, env_key = os.environ.get("RGRID_API_URL"), os.environ.get("RGRID_API_KEY")
    if env_url:
        return Target(env_url, env_key or profile.get("api_key"), "RGRID_API_URL")
    if profile.get("api_url"):
        source = f"profile [{profile_name}] in {credentials_path()}"
        return Target(profile["api_url"], env_key or profile.get("api_key"), source)
    if os.environ.get("RGRID_PROFILE"):
        raise errors.UsageError(
            f"no profile [{profile_name}] in {credentials_path()}",
            hint="run `rgrid init` to create it",
        )
    return Target(None, env_key, f"local grid in {local_home()}")


def write_profile(name: str, api_url: str, api_key: str) -> Path:
    """Save a profile to ``~/.rgrid/credentials`` (mode 0600, other profiles kept)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    import configparser

    parser = configparser.ConfigParser()
    if path.exists():
        parser.read(path)
    parser[name] = {"api_url": api_url, "api_key": api_key}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    os.chmod(path, 0o600)
    return path


PROJECT_CONFIG = Path(".rgrid") / "config.toml"
#: the project settings ``.rgrid/config.toml`` may hold, and their types
PROJECT_KEYS: dict[str, type | tuple[type, ...]] = {
    "cache": (bool, str),
    #: the project tree's budget (SPEC §4.1): a size ("100MiB" or bytes) and a file count
    "tree_budget": (str, int),
    "tree_budget_files": int,
}


def project_settings(start: Path | None = None) -> dict[str, object]:
    """The nearest ``.rgrid/config.toml`` from ``start`` (the current directory) upwards, e.g.
    ``cache = false``; empty if there is none. Unknown keys or wrong types are a UsageError."""
    here = (start or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        path = folder / PROJECT_CONFIG
        if path.is_file():
            break
    else:
        return {}
    import tomllib  # only when a project has a config: the CLI starts faster without it

    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise errors.UsageError(f"{path} is not valid TOML: {exc}") from exc
    for key, value in values.items():
        wanted = PROJECT_KEYS.get(key)
        if wanted is None:
            raise errors.UsageError(
                f"{path}: unknown setting {key!r}", hint=f"known: {', '.join(PROJECT_KEYS)}"
            )
        if key == "cache" and not (isinstance(value, bool) or value in CACHE_MODES):
            raise errors.UsageError(
                f'{path}: cache must be true, false, "auto", "always" or "off", not {value!r}'
            )
        if not isinstance(value, wanted):
            kind = wanted.__name__ if isinstance(wanted, type) else "size"
            raise errors.UsageError(f"{path}: {key} must be a {kind}, not {value!r}")
    return values


def project_cache_mode(settings: dict[str, object]) -> str:
    """The project's cache mode (one of ``CACHE_MODES``); "auto" when it names none."""
    value = settings.get("cache", "auto")
    if isinstance(value, bool):
        return "auto" if value else "off"
    assert isinstance(value, str) and value in CACHE_MODES  # project_settings checked it
    return value
