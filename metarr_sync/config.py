"""The TOML configuration: model, validation, locations, secrets and atomic writes.

Loading never raises anything but ConfigError, which carries every problem found
(file, key path and, for syntax errors, the line) so the CLI can print them all at once
and exit 3.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from metarr_sync import player_types as kinds
from metarr_sync import stamps
from metarr_sync.paths import is_absolute_any, match_key
from metarr_sync.player_types import MAX_TIMEOUT

#: The built-in player types (METARR_SYNC_PLUGINS may add more: player_types()).
PLAYER_TYPES = kinds.NAMES
SYNC_MODES = ("parallel", "sequential")


class ConfigError(Exception):
    """Every problem found in one configuration file."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems

    @classmethod
    def one(cls, problem: str) -> ConfigError:
        return cls([problem])


def default_config_path() -> Path:
    env = os.environ.get("METARR_SYNC_CONFIG")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("metarr-sync")) / "config.toml"


def default_state_dir() -> Path:
    env = os.environ.get("METARR_SYNC_STATE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("metarr-sync"))


@dataclass(frozen=True)
class Secret:
    """A password or token: inline, from an environment variable, or from a file.

    `repr` never shows the value, so a Secret can sit in any dataclass that gets printed.
    """

    value: str | None = None
    env: str | None = None
    file: str | None = None

    def __repr__(self) -> str:
        if self.env:
            return f"Secret(env={self.env!r})"
        if self.file:
            return f"Secret(file={self.file!r})"
        return "Secret(••••)"

    @property
    def inline(self) -> bool:
        return self.value is not None

    def resolve(self) -> str:
        """The secret's value; raises ValueError with a user-facing reason."""
        if self.value is not None:
            return self.value
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ValueError(f"environment variable {self.env} is not set")
            return value
        assert self.file is not None
        path = Path(os.path.expandvars(self.file)).expanduser()
        try:
            return path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise ValueError(f"secret file {path} does not exist") from None
        except OSError as exc:
            raise ValueError(f"secret file {path} cannot be read: {exc.strerror}") from None

    def to_toml(self) -> str | dict[str, str]:
        if self.env:
            return {"env": self.env}
        if self.file:
            return {"file": self.file}
        return self.value or ""

    def masked(self) -> str:
        if self.env:
            return f"env:{self.env}"
        if self.file:
            return f"file:{self.file}"
        return "••••"


@dataclass(frozen=True)
class Mapping:
    metarr: str
    player: str


@dataclass
class PlayerConfig:
    name: str
    type: str
    url: str
    username: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    enabled: bool = True
    priority: int = 100
    group: str | None = None
    verify_tls: bool = True
    ca_bundle: str | None = None
    mappings: list[Mapping] = field(default_factory=list)
    verify: bool = True  # check on the player that delivered items really landed
    # Settings of some player types only: meaning, types, defaults and which types take
    # them are in player_types.SETTINGS.
    refresh_mode: str = kinds.SETTINGS["refresh_mode"].default
    analyze: bool = kinds.SETTINGS["analyze"].default
    scan_delay: float = kinds.SETTINGS["scan_delay"].default
    max_trash_items: int = kinds.SETTINGS["max_trash_items"].default
    concurrency: int = kinds.SETTINGS["concurrency"].default
    scan_timeout: float = kinds.SETTINGS["scan_timeout"].default
    verify_after: float = kinds.SETTINGS["verify_after"].default
    # Removal guard and mount safety; None: the [sync] value. Anchors add to [sync]'s.
    max_removals: int | None = None
    max_removal_percent: float | None = None
    anchors: list[str] = field(default_factory=list)
    # Someone watching; None: the [sync] value, else the type's (see skips_active).
    skip_active: bool | None = None
    max_defer: str | None = None
    # The Metarr libraries (names or ids) this player serves; None: every library.
    libraries: list[str | int] | None = None
    # Resolved secret values, filled by load_config(resolve_secrets=True).
    password_value: str | None = field(default=None, repr=False)
    token_value: str | None = field(default=None, repr=False)

    def secrets(self) -> list[str]:
        return [s for s in (self.password_value, self.token_value) if s]

    def skips_active(self, sync: SyncConfig) -> bool:
        """Whether this player's updates wait while someone watches: its own skip_active,
        else [sync]'s, else its type's default (on for Kodi, off for the servers)."""
        if self.skip_active is not None:
            return self.skip_active
        if sync.skip_active is not None:
            return sync.skip_active
        kind = kinds.get(self.type)
        return True if kind is None else kind.skip_active

    def max_defer_in(self, sync: SyncConfig) -> tuple[str, float | None]:
        """max_defer as written (its own, else [sync]'s) and in seconds (None: never)."""
        text = (self.max_defer if self.max_defer is not None else sync.max_defer).strip()
        return text, stamps.max_defer_seconds(text)


@dataclass
class GroupConfig:
    name: str
    sync_mode: str = "parallel"
    continue_on_error: bool = True
    shared_library: bool = False


@dataclass
class SyncConfig:
    enabled: bool = True
    auto_sync: bool = True
    targeted_updates: bool = True
    clean_deleted: bool = True
    send_notifications: bool = False
    batch_size: int = 100
    timeout: float = 30.0
    retry_attempts: int = 3
    max_attempts: int = 5
    #: None: each player type's own default (PlayerConfig.skips_active).
    skip_active: bool | None = None
    #: How long an update may wait for a viewer to finish; "never": for as long as it takes.
    max_defer: str = "6h"
    initial_lookback: str = "24h"
    #: More removals than this for one player in one run are held for a person.
    max_removals: int = 20
    #: ... and so are more than this share (%) of the library (a single one never is).
    max_removal_percent: float = 5.0
    #: Files that must exist (one per share): when one is missing nothing is sent.
    anchors: list[str] = field(default_factory=list)

    def lookback_seconds(self) -> int | None:
        """Seconds of history a new player gets; None means all of it."""
        return stamps.lookback_seconds(self.initial_lookback)


@dataclass
class WatchConfig:
    """`metarr-sync watch`: how it notices and bunches Metarr's commits. Durations as
    stamps.py reads them (`"2s"`, `"1.5m"`); checked by parse_config."""

    #: Quiet time after Metarr's last commit before a run starts.
    debounce: str = "2s"
    #: ... but no longer than this from the first commit of a burst.
    max_delay: str = "60s"
    #: How often Metarr's database is asked whether something was committed.
    poll_interval: str = "1s"
    #: A player a run left with work is tried again this long after it, then after
    #: twice as long each time, up to retry_max_delay.
    retry_delay: str = "30s"
    retry_max_delay: str = "15m"
    #: On SIGTERM, how long the batch in flight may take to finish before the requests
    #: still to send are given up (they stay queued). Below systemd's TimeoutStopSec.
    stop_timeout: str = "30s"

    def seconds(self, key: str) -> float:
        value = stamps.parse_duration(getattr(self, key))
        assert value is not None, key  # parse_config refused anything else
        return value


@dataclass
class MetarrConfig:
    database: str | None = None
    password: Secret | None = None
    password_value: str | None = field(default=None, repr=False)


@dataclass
class AlertsConfig:
    """[alerts]: Apprise URLs that hear about changes of a player's condition (alerts.py).

    Each URL is a Secret: Apprise URLs carry tokens and passwords (discord://ID/TOKEN,
    json://user:password@host/), so they are masked wherever a secret is.
    """

    urls: list[Secret] = field(default_factory=list)
    # Resolved URLs, filled by load_config(resolve_secrets=True), in the order of `urls`.
    url_values: list[str] = field(default_factory=list, repr=False)


@dataclass
class Config:
    path: Path
    metarr: MetarrConfig = field(default_factory=MetarrConfig)
    sync: SyncConfig = field(default_factory=SyncConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    players: dict[str, PlayerConfig] = field(default_factory=dict)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    warnings: list[str] = field(default_factory=list)

    def secrets(self) -> list[str]:
        values = [s for p in self.players.values() for s in p.secrets()]
        if self.metarr.password_value:
            values.append(self.metarr.password_value)
        for url in self.alerts.url_values:
            values += alert_url_secrets(url)
        return values


# --- validation -------------------------------------------------------------------------

_TOP_KEYS = ("metarr", "sync", "watch", "groups", "players", "alerts")
_METARR_KEYS = ("database", "password")
_ALERTS_KEYS = ("urls",)
_SYNC_FIELDS: dict[str, type | tuple[type, ...]] = {
    "enabled": bool,
    "auto_sync": bool,
    "targeted_updates": bool,
    "clean_deleted": bool,
    "send_notifications": bool,
    "batch_size": int,
    "timeout": (int, float),
    "retry_attempts": int,
    "max_attempts": int,
    "skip_active": bool,
    "max_defer": str,
    "initial_lookback": str,
    "max_removals": int,
    "max_removal_percent": (int, float),
    "anchors": list,
    # Accepted for compatibility with Metarr's design; schedules live in cron/systemd.
    "sync_interval": (int, str),
}
_WATCH_FIELDS: dict[str, type] = {"debounce": str, "max_delay": str, "poll_interval": str,
                                  "retry_delay": str, "retry_max_delay": str,
                                  "stop_timeout": str}
#: Bounds of each [watch] duration, in seconds (lowest, highest).
_WATCH_BOUNDS = {"debounce": (0.0, 3600.0), "max_delay": (0.1, 86400.0),
                 "poll_interval": (0.05, 3600.0), "retry_delay": (0.1, 86400.0),
                 "retry_max_delay": (0.1, 7 * 86400.0), "stop_timeout": (0.0, 3600.0)}
_GUARD_KEYS = ("max_removals", "max_removal_percent", "anchors")
_GROUP_FIELDS: dict[str, type] = {
    "sync_mode": str,
    "continue_on_error": bool,
    "shared_library": bool,
}
_PLAYER_COMMON = (
    "type", "url", "username", "password", "token", "enabled", "priority", "group",
    "verify_tls", "ca_bundle", "mappings", "verify", "max_removals", "max_removal_percent",
    "anchors", "skip_active", "max_defer", "libraries",
)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def player_types() -> tuple[str, ...]:
    """Built-in player types plus those added through METARR_SYNC_PLUGINS."""
    return kinds.known()


def player_keys(player_type: str) -> tuple[str, ...]:
    """Every key a `[players.NAME]` table of this type takes."""
    kind = kinds.get(player_type)
    return _PLAYER_COMMON + (kind.settings if kind else ())


def _close_matches(word: str, options: tuple[str, ...] | list[str], n: int = 1) -> list[str]:
    """difflib's suggestions for a misspelt key or name; difflib is imported only then,
    as `status` (a monitoring check, every minute) loads the config at each run."""
    import difflib

    return difflib.get_close_matches(word, options, n=n)


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def _unknown(key: str, known: tuple[str, ...] | list[str], where: str) -> str:
    close = _close_matches(key, known, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"{where}.{key}: unknown key{hint}" if where else f"{key}: unknown key{hint}"


def _check_type(value: Any, expected: type | tuple[type, ...], key: str,
                problems: list[str]) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
    if not ok:
        names = " or ".join(_type_name(t()) if t is not float else "a number" for t in types)
        problems.append(f"{key}: must be {names}, not {_type_name(value)} {value!r}")
    return ok


def _parse_secret(value: Any, key: str, problems: list[str]) -> Secret | None:
    if isinstance(value, str):
        return Secret(value=value)
    if isinstance(value, dict):
        extra = set(value) - {"env", "file"}
        if extra or len(value) != 1:
            problems.append(f"{key}: a secret table takes exactly one of 'env' or 'file'")
            return None
        (kind, ref), = value.items()
        if not isinstance(ref, str) or not ref.strip():
            problems.append(f"{key}.{kind}: must be a non-empty string")
            return None
        return Secret(env=ref) if kind == "env" else Secret(file=ref)
    problems.append(f"{key}: must be a string or {{ env = \"VAR\" }} or {{ file = \"/path\" }}")
    return None


def validate_url(url: str) -> str | None:
    """Why `url` is not a usable player URL, or None when it is."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "has no host name"
    # urlsplit accepts "bad host" (and silently drops tabs and newlines); requests would
    # then fail on every run instead of the config being refused once.
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain spaces or control characters (write a space as %20)"
    if "[" not in parts.netloc and re.search(r"[^\w.-]", parts.hostname):
        return f"has an invalid host name {parts.hostname!r} (no spaces or punctuation)"
    if parts.query or parts.fragment:
        return "must not contain a query string or fragment"
    if parts.username or parts.password:
        return "must not contain credentials: use username/password/token keys"
    return None


def hide_userinfo(url: str) -> str:
    """`url` with any `user:password@` masked: a message must never echo a password."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@", r"\1••••@", url)


#: Apprise schemes whose URL's host part names a server (json://host:port/path): shown in
#: an alert URL's label. Any other scheme's host part may be a token (discord://ID/TOKEN,
#: tgram://BOT_TOKEN/CHAT, ntfy://TOPIC, pushover://USER@TOKEN) and is masked.
_HOST_SCHEMES = frozenset({"json", "jsons", "xml", "xmls", "form", "forms", "mailto",
                           "mailtos", "gotify", "gotifys", "apprise", "apprises", "mmost",
                           "mmosts", "rocket", "rockets", "matrix", "matrixs"})
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$", re.S)


def alert_url_label(url: str) -> str:
    """An Apprise URL as it may be shown: its scheme, and for schemes where it names a
    server its host and port; user, password, path and query masked
    (json://••••@127.0.0.1:8080/••••, discord://••••)."""
    match = _SCHEME_RE.match(url.strip())
    if match is None:
        return "(not a URL)"
    scheme, rest = match.group(1).lower(), match.group(2)
    if scheme not in _HOST_SCHEMES:
        return f"{scheme}://••••"
    netloc, _, tail = rest.partition("/")
    netloc, _, query = netloc.partition("?")
    userinfo, at, host = netloc.rpartition("@")
    if not re.fullmatch(r"[\w.\-\[\]:]*", host):
        return f"{scheme}://••••"
    label = f"{scheme}://" + ("••••@" if at else "") + host
    if tail.strip("/") or query or "?" in tail:
        label += "/••••"
    return label


def alert_url_secrets(url: str) -> list[str]:
    """The parts of an Apprise URL that may be secrets, to be masked wherever they would
    be written (logs, messages, alert texts): the whole URL, its user and password, and
    long path segments, query values and (schemes whose host is no server) host parts."""
    from urllib.parse import parse_qsl, unquote

    found = [url.strip()]
    match = _SCHEME_RE.match(url.strip())
    if match is None:
        return found
    scheme, rest = match.group(1).lower(), match.group(2)
    netloc, _, tail = rest.partition("/")
    tail, _, query = tail.partition("?")
    netloc, _, netquery = netloc.partition("?")
    query = query or netquery
    userinfo, at, host = netloc.rpartition("@")
    if at:
        user, colon, password = userinfo.partition(":")
        found += [password, unquote(password)] if colon else []
        found += [part for part in (user, unquote(user)) if len(part) >= 8 or not colon]
    parts = [p for p in tail.split("/") if p]
    if scheme not in _HOST_SCHEMES:
        parts += [host, *host.split(":")]
    found += [p for part in parts for p in (part, unquote(part)) if len(p) >= 8]
    found += [v for _, v in parse_qsl(query) if len(v) >= 8]
    return [f for f in dict.fromkeys(found) if len(f) >= 3]


def _parse_alerts(raw: Any, problems: list[str]) -> AlertsConfig:
    alerts = AlertsConfig()
    if not isinstance(raw, dict):
        problems.append("alerts: must be a table")
        return alerts
    for key in raw:
        if key not in _ALERTS_KEYS:
            problems.append(_unknown(key, _ALERTS_KEYS, "alerts"))
    urls = raw.get("urls", [])
    if not isinstance(urls, list):
        problems.append("alerts.urls: must be a list of Apprise URLs, e.g. "
                        "[\"json://host:port/path\"] (or { env = \"VAR\" } / "
                        "{ file = \"/path\" } for each)")
        return alerts
    for i, entry in enumerate(urls):
        where = f"alerts.urls[{i}]"
        secret = _parse_secret(entry, where, problems)
        if secret is None:
            continue
        # The URL itself is never echoed: it may hold a token.
        if secret.value is not None and _SCHEME_RE.match(secret.value.strip()) is None:
            problems.append(f"{where}: not an Apprise URL (scheme://..., such as "
                            "json://host:port/path or discord://ID/TOKEN)")
            continue
        alerts.urls.append(secret)
    return alerts


def _parse_mappings(value: Any, key: str, problems: list[str]) -> list[Mapping]:
    if not isinstance(value, list):
        problems.append(f"{key}: must be a list of {{ metarr = \"...\", player = \"...\" }}")
        return []
    result: list[Mapping] = []
    seen: set[str] = set()
    for i, entry in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table {{ metarr = \"...\", player = \"...\" }}")
            continue
        for extra in set(entry) - {"metarr", "player"}:
            problems.append(_unknown(extra, ["metarr", "player"], where))
        metarr, player = entry.get("metarr"), entry.get("player")
        bad = False
        for side, side_value in (("metarr", metarr), ("player", player)):
            if not isinstance(side_value, str) or not side_value.strip():
                problems.append(f"{where}.{side}: must be a non-empty path")
                bad = True
        if bad:
            continue
        assert isinstance(metarr, str) and isinstance(player, str)
        if not metarr.startswith("/") and not is_absolute_any(metarr):
            problems.append(f"{where}.metarr: must be an absolute path, not {metarr!r}")
            continue
        if not is_absolute_any(player):
            problems.append(
                f"{where}.player: must be an absolute path (/..., D:\\... or smb://...), "
                f"not {player!r}"
            )
            continue
        if match_key(metarr) in seen:  # as its file system compares: `D:\X` is `d:\x`
            problems.append(f"{where}.metarr: {metarr!r} is mapped twice")
            continue
        seen.add(match_key(metarr))
        result.append(Mapping(metarr=metarr, player=player))
    return result


def _parse_player(name: str, raw: Any, problems: list[str]) -> PlayerConfig | None:
    where = f"players.{name}"
    if not _NAME_RE.match(name):
        problems.append(f"{where}: player names use letters, digits, '-', '_' and '.' only")
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be a table")
        return None
    ptype = raw.get("type")
    types = player_types()
    if ptype is None:
        problems.append(f"{where}.type: missing (one of {', '.join(PLAYER_TYPES)})")
        return None
    kind = kinds.get(ptype) if isinstance(ptype, str) else None
    if kind is None:
        close = _close_matches(str(ptype), types, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        problems.append(
            f"{where}.type: unknown player type {ptype!r}{hint}; "
            f"expected one of {', '.join(PLAYER_TYPES)}"
        )
        return None
    allowed = player_keys(ptype)
    for key in raw:
        if key not in allowed:
            if key in kinds.SETTINGS:
                problems.append(f"{where}.{key}: not a setting of {ptype} players")
            else:
                problems.append(_unknown(key, list(allowed), where))
    player = PlayerConfig(name=name, type=ptype, url="")
    url = raw.get("url")
    if url is None:
        problems.append(f"{where}.url: missing")
    elif _check_type(url, str, f"{where}.url", problems):
        reason = validate_url(url)
        if reason:
            problems.append(f"{where}.url: {hide_userinfo(url)!r} {reason}")
        player.url = url.rstrip("/")
    for key, typ in (("enabled", bool), ("verify_tls", bool), ("verify", bool),
                     ("username", str), ("group", str), ("ca_bundle", str)):
        if key in raw and _check_type(raw[key], typ, f"{where}.{key}", problems):
            setattr(player, key, raw[key])
    if "priority" in raw and _check_type(raw["priority"], int, f"{where}.priority", problems):
        player.priority = raw["priority"]
    # Every type-specific setting present is checked, also one the type does not take
    # (refused above): the person learns both what is wrong with it and where it belongs.
    for key, setting in kinds.SETTINGS.items():
        if key in raw and _check_type(raw[key], setting.types, f"{where}.{key}", problems):
            why = setting.refuse(raw[key])
            if why:
                problems.append(f"{where}.{key}: {why}")
            setattr(player, key, setting.value(raw[key]))
    if player.ca_bundle is not None:
        bundle = Path(player.ca_bundle).expanduser()
        if not player.ca_bundle.strip() or not bundle.exists():
            problems.append(f"{where}.ca_bundle: {player.ca_bundle!r} does not exist "
                            "(a PEM file of the CA that signed the player's certificate)")
    for key in ("password", "token"):
        if key in raw:
            setattr(player, key, _parse_secret(raw[key], f"{where}.{key}", problems))
    for key, why in kind.credentials.problems(
            ptype, username=bool(player.username), password=bool(player.password),
            token="token" in raw):
        problems.append(f"{where}.{key}: {why}")
    if "mappings" in raw:
        player.mappings = _parse_mappings(raw["mappings"], f"{where}.mappings", problems)
    player.max_removals, player.max_removal_percent, anchors = _parse_removal_guard(
        raw, where, problems)
    player.anchors = anchors or []
    if "skip_active" in raw and _check_type(raw["skip_active"], bool, f"{where}.skip_active",
                                            problems):
        player.skip_active = raw["skip_active"]
    if "max_defer" in raw and _check_type(raw["max_defer"], str, f"{where}.max_defer",
                                          problems):
        player.max_defer = raw["max_defer"]
        _check_max_defer(player.max_defer, f"{where}.max_defer", problems)
    if "libraries" in raw:
        player.libraries = _parse_libraries(raw["libraries"], f"{where}.libraries", problems)
    return player


def _check_max_defer(text: str, key: str, problems: list[str]) -> None:
    try:
        stamps.max_defer_seconds(text)
    except ValueError as exc:
        problems.append(f"{key}: {exc}")


def _parse_libraries(value: Any, key: str, problems: list[str]) -> list[str | int] | None:
    """`libraries`: Metarr library names (matched exactly) or ids, each once."""
    usage = "must be a list of Metarr library names or ids, e.g. [\"Movies\", 3]"
    if not isinstance(value, list):
        problems.append(f"{key}: {usage}, not {_type_name(value)} {value!r}")
        return None
    found: list[str | int] = []
    for entry in value:
        if isinstance(entry, bool) or not isinstance(entry, (str, int)):
            problems.append(f"{key}: {entry!r} is neither a library name nor an id")
        elif isinstance(entry, str) and not entry.strip():
            problems.append(f"{key}: an empty library name")
        elif isinstance(entry, int) and entry < 1:
            problems.append(f"{key}: {entry} is no library id (ids are positive)")
        elif entry in found:
            problems.append(f"{key}: {entry!r} is listed twice")
        else:
            found.append(entry)
    if not value:
        problems.append(f"{key}: an empty list would serve nothing; leave the key out to "
                        "serve every library, or remove the player")
    return found


def _parse_removal_guard(raw: dict[str, Any], where: str, problems: list[str]
                         ) -> tuple[int | None, float | None, list[str] | None]:
    """max_removals, max_removal_percent and anchors of [sync] or of one player."""
    limit = percent = anchors = None
    if "max_removals" in raw and _check_type(raw["max_removals"], int,
                                             f"{where}.max_removals", problems):
        if raw["max_removals"] < 0:
            problems.append(f"{where}.max_removals: must not be negative, "
                            f"not {raw['max_removals']}")
        limit = raw["max_removals"]
    if "max_removal_percent" in raw and _check_type(
            raw["max_removal_percent"], (int, float), f"{where}.max_removal_percent", problems):
        if not 0 <= raw["max_removal_percent"] <= 100:  # also refuses nan
            problems.append(f"{where}.max_removal_percent: must be between 0 and 100 "
                            f"(a share of the library), not {raw['max_removal_percent']}")
        percent = float(raw["max_removal_percent"])
    if "anchors" in raw:
        value = raw["anchors"]
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            problems.append(f"{where}.anchors: must be a list of file paths")
        else:
            anchors = []
            for anchor in value:
                if not is_absolute_any(anchor) or "://" in anchor:
                    problems.append(f"{where}.anchors: {anchor!r} must be an absolute path "
                                    "on this machine (a file on each share Metarr's library "
                                    "is on)")
                else:
                    anchors.append(anchor)
    return limit, percent, anchors


def _parse_watch(raw: Any, watch: WatchConfig, problems: list[str]) -> None:
    """[watch]: durations with a unit, each within its bounds; max_delay not shorter
    than debounce."""
    if not isinstance(raw, dict):
        problems.append("watch: must be a table")
        return
    good = True
    for key, value in raw.items():
        if key not in _WATCH_FIELDS:
            problems.append(_unknown(key, list(_WATCH_FIELDS), "watch"))
            continue
        if not _check_type(value, str, f"watch.{key}", problems):
            good = False
            continue
        seconds = stamps.parse_duration(value)
        low, high = _WATCH_BOUNDS[key]
        if seconds is None:
            problems.append(f"watch.{key}: {value!r} is not a duration like \"2s\", "
                            "\"0.5s\" or \"1m\"")
            good = False
        elif not low <= seconds <= high or (seconds == 0 and low > 0):
            problems.append(f"watch.{key}: {value!r} must be between "
                            f"{stamps.spoken(low) if low >= 1 else f'{low:g}s'} and "
                            f"{stamps.spoken(high)}")
            good = False
        else:
            setattr(watch, key, value)
    if good and watch.seconds("max_delay") < watch.seconds("debounce"):
        problems.append(f"watch.max_delay: {watch.max_delay!r} is shorter than "
                        f"watch.debounce {watch.debounce!r}: a burst could never be "
                        "waited out")
    if good and watch.seconds("retry_max_delay") < watch.seconds("retry_delay"):
        problems.append(f"watch.retry_max_delay: {watch.retry_max_delay!r} is shorter than "
                        f"watch.retry_delay {watch.retry_delay!r}")


def parse_config(data: dict[str, Any], path: Path) -> Config:
    """Validate an already-parsed TOML document; raises ConfigError with every problem."""
    problems: list[str] = []
    config = Config(path=path)
    for key in data:
        if key not in _TOP_KEYS:
            problems.append(_unknown(key, _TOP_KEYS, ""))

    metarr = data.get("metarr", {})
    if not isinstance(metarr, dict):
        problems.append("metarr: must be a table")
        metarr = {}
    for key in metarr:
        if key not in _METARR_KEYS:
            problems.append(_unknown(key, _METARR_KEYS, "metarr"))
    if "database" in metarr and _check_type(metarr["database"], str, "metarr.database", problems):
        if not metarr["database"].strip():
            problems.append("metarr.database: must not be empty")
        config.metarr.database = metarr["database"]
    if "password" in metarr:
        config.metarr.password = _parse_secret(metarr["password"], "metarr.password", problems)

    sync = data.get("sync", {})
    if not isinstance(sync, dict):
        problems.append("sync: must be a table")
        sync = {}
    for key, value in sync.items():
        if key not in _SYNC_FIELDS:
            problems.append(_unknown(key, list(_SYNC_FIELDS), "sync"))
        elif key in _GUARD_KEYS:
            continue  # _parse_removal_guard checks them, as for players
        elif (_check_type(value, _SYNC_FIELDS[key], f"sync.{key}", problems)
              and key != "sync_interval"):
            setattr(config.sync, key, float(value) if key == "timeout" else value)
    s = config.sync
    limit, percent, anchors = _parse_removal_guard(sync, "sync", problems)
    s.max_removals = s.max_removals if limit is None else limit
    s.max_removal_percent = s.max_removal_percent if percent is None else percent
    s.anchors = s.anchors if anchors is None else anchors
    if s.batch_size < 1:
        problems.append(f"sync.batch_size: must be at least 1, not {s.batch_size}")
    if not s.timeout > 0:  # written so that nan is refused too
        problems.append(f"sync.timeout: must be a positive number of seconds, not {s.timeout}")
    elif s.timeout > MAX_TIMEOUT:  # inf would let a run hang forever
        problems.append(f"sync.timeout: must be at most {MAX_TIMEOUT} seconds, "
                        f"not {s.timeout:g}")
    if s.retry_attempts < 0:
        problems.append(f"sync.retry_attempts: must not be negative, not {s.retry_attempts}")
    if s.max_attempts < 1:
        problems.append(f"sync.max_attempts: must be at least 1 (runs in a row an item may "
                        f"fail before it waits for a person), not {s.max_attempts}")
    _check_max_defer(s.max_defer, "sync.max_defer", problems)
    try:
        stamps.lookback_seconds(s.initial_lookback)
    except ValueError:
        problems.append(
            f"sync.initial_lookback: {s.initial_lookback!r} is not a duration like "
            "\"24h\", \"7d\", \"30m\", or \"all\" / \"none\""
        )

    _parse_watch(data.get("watch", {}), config.watch, problems)

    groups = data.get("groups", {})
    if not isinstance(groups, dict):
        problems.append("groups: must be a table of [groups.NAME] tables")
        groups = {}
    for name, raw in groups.items():
        where = f"groups.{name}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table")
            continue
        group = GroupConfig(name=name)
        for key, value in raw.items():
            if key not in _GROUP_FIELDS:
                problems.append(_unknown(key, list(_GROUP_FIELDS), where))
            elif _check_type(value, _GROUP_FIELDS[key], f"{where}.{key}", problems):
                setattr(group, key, value)
        if group.sync_mode not in SYNC_MODES:
            problems.append(f"{where}.sync_mode: must be \"parallel\" or \"sequential\", "
                            f"not {group.sync_mode!r}")
        config.groups[name] = group

    players = data.get("players", {})
    if not isinstance(players, dict):
        problems.append("players: must be a table of [players.NAME] tables")
        players = {}
    for name, raw in players.items():
        player = _parse_player(name, raw, problems)
        if player is None:
            continue
        if player.group is not None and player.group not in config.groups:
            known = list(config.groups)
            close = _close_matches(player.group, known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(
                f"players.{name}.group: no [groups.{player.group}] table{hint}"
            )
        config.players[name] = player
    for name in config.groups:
        members = [p for p in config.players.values() if p.group == name]
        if not members:
            problems.append(f"groups.{name}: no player names this group")
        elif config.groups[name].shared_library:
            # Only Kodi keeps its library in a database several boxes can share (MySQL).
            servers = [p.name for p in members if p.type in kinds.TYPES
                       and not kinds.TYPES[p.type].shares_library]
            if servers:
                problems.append(f"groups.{name}.shared_library: only Kodi players share a "
                                f"library, not {', '.join(servers)}")

    if "alerts" in data:
        config.alerts = _parse_alerts(data["alerts"], problems)

    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return config


def resolve_player_secrets(player: PlayerConfig) -> list[str]:
    """Read one player's env/file secrets now; the reasons for those that fail."""
    problems: list[str] = []
    for key in ("password", "token"):
        secret: Secret | None = getattr(player, key)
        if secret is None:
            continue
        try:
            value = secret.resolve()
        except ValueError as exc:
            problems.append(f"players.{player.name}.{key}: {exc}")
            continue
        if not value:
            problems.append(f"players.{player.name}.{key}: is empty")
        setattr(player, f"{key}_value", value)
    return problems


def resolve_secrets(config: Config) -> None:
    """Read every env/file secret now; raises ConfigError naming each that is missing."""
    problems = [f"{config.path}: {problem}" for player in config.players.values()
                for problem in resolve_player_secrets(player)]
    if config.metarr.password:
        try:
            config.metarr.password_value = config.metarr.password.resolve()
        except ValueError as exc:
            problems.append(f"{config.path}: metarr.password: {exc}")
    config.alerts.url_values = []
    for i, secret in enumerate(config.alerts.urls):
        try:
            value = secret.resolve().strip()
        except ValueError as exc:
            problems.append(f"{config.path}: alerts.urls[{i}]: {exc}")
            continue
        if not value:
            problems.append(f"{config.path}: alerts.urls[{i}]: is empty")
        config.alerts.url_values.append(value)
    if problems:
        raise ConfigError(problems)


def _line_of(exc: tomllib.TOMLDecodeError) -> str:
    match = re.search(r"at line (\d+), column (\d+)", str(exc))
    return f"line {match.group(1)}, column {match.group(2)}" if match else "unknown line"


def read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError([
            f"{path}: no configuration file here; create one with `metarr-sync config init` "
            "or point --config / METARR_SYNC_CONFIG at yours"
        ]) from None
    except IsADirectoryError:
        raise ConfigError([f"{path}: is a directory, not a configuration file"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot be read: {exc.strerror}"]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: not UTF-8 text (byte {exc.start})"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        key = _key_at(text, exc)
        where = f" (in {key})" if key else ""
        raise ConfigError([f"{path}: {_line_of(exc)}: TOML syntax error{where}: {reason}"]
                          ) from None


_TABLE_RE = re.compile(r"^\s*\[\[?\s*([^\]#]+?)\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(r"^\s*([A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')((?:\s*\.\s*(?:[A-Za-z0-9_-]+|"
                     r"\"[^\"]*\"|'[^']*'))*)\s*=")


def _key_at(text: str, exc: tomllib.TOMLDecodeError) -> str | None:
    """The key path (`players.tv.url`) on the line of a syntax error, never its value:
    tomllib's messages ("Cannot overwrite a value") do not say which key, and the line
    itself may hold a password."""
    match = re.search(r"at line (\d+)", str(exc))
    lines = text.splitlines()
    if not match or not 1 <= int(match.group(1)) <= len(lines):
        return None
    number = int(match.group(1))
    key = _KEY_RE.match(lines[number - 1])
    if key is None:
        return None
    table = next((m.group(1) for line in reversed(lines[:number - 1])
                  if (m := _TABLE_RE.match(line))), None)
    dotted = re.compile(r"\s*\.\s*")
    name = dotted.sub(".", key.group(1) + key.group(2))
    return f"{dotted.sub('.', table)}.{name}" if table else name


def load_config(path: Path | None = None, *, secrets: bool = True) -> Config:
    """Load, validate and (unless secrets=False) resolve secrets of the config file."""
    path = path or default_config_path()
    config = parse_config(read_toml(path), path)
    if secrets:
        resolve_secrets(config)
    if _has_inline_secrets(config):
        try:
            mode = path.stat().st_mode
        except OSError:
            mode = 0
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            config.warnings.append(
                f"{path} holds passwords or tokens and is readable by others; "
                f"fix with: chmod 600 {path}"
            )
    return config


def _has_inline_secrets(config: Config) -> bool:
    secrets = [p.password for p in config.players.values()]
    secrets += [p.token for p in config.players.values()]
    secrets.append(config.metarr.password)
    # An alert URL counts when it carries something secret (more than the URL itself).
    urls = [u for u in config.alerts.urls
            if u.value is not None and len(alert_url_secrets(u.value)) > 1]
    return any(s is not None and s.inline for s in secrets) or bool(urls)


# --- writing ------------------------------------------------------------------------------

def to_document(config: Config) -> dict[str, Any]:
    """The TOML document for `config`, keeping only values that differ from defaults."""
    doc: dict[str, Any] = {}
    metarr: dict[str, Any] = {}
    if config.metarr.database:
        metarr["database"] = config.metarr.database
    if config.metarr.password:
        metarr["password"] = config.metarr.password.to_toml()
    if metarr:
        doc["metarr"] = metarr
    defaults = SyncConfig()
    sync = {k: getattr(config.sync, k) for k in _SYNC_FIELDS
            if k != "sync_interval" and getattr(config.sync, k) != getattr(defaults, k)}
    if sync:
        doc["sync"] = sync
    watch_defaults = WatchConfig()
    watch = {k: getattr(config.watch, k) for k in _WATCH_FIELDS
             if getattr(config.watch, k) != getattr(watch_defaults, k)}
    if watch:
        doc["watch"] = watch
    if config.groups:
        doc["groups"] = {}
        for name, group in config.groups.items():
            doc["groups"][name] = {k: getattr(group, k) for k in _GROUP_FIELDS}
    if config.players:
        doc["players"] = {}
    default_player = PlayerConfig(name="", type="", url="")
    for name, player in config.players.items():
        entry: dict[str, Any] = {"type": player.type, "url": player.url}
        keys = [k for k in player_keys(player.type) if k not in ("type", "url", "mappings")]
        for key in keys:
            value = getattr(player, key)
            if value is None or value == getattr(default_player, key):
                continue
            entry[key] = value.to_toml() if isinstance(value, Secret) else value
        if player.mappings:
            entry["mappings"] = [{"metarr": m.metarr, "player": m.player}
                                 for m in player.mappings]
        doc["players"][name] = entry
    if config.alerts.urls:
        doc["alerts"] = {"urls": [u.to_toml() for u in config.alerts.urls]}
    return doc


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see the old or the new file, never half of one.

    The file is created 0600 because it may hold passwords and tokens.
    """
    import tempfile  # only to write: `status` loads the config without it

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    try:
        dir_fd = os.open(path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def save_config(config: Config, header: str = "") -> None:
    """Validate the new document, then write it atomically; the old file stays on error.

    The file a person wrote keeps its comments, order, spacing and every key whose value
    did not change: only what changed is edited in (see edited_text). `header` starts a
    file that did not exist yet.
    """
    doc = to_document(config)
    parse_config(doc, config.path)  # never write a file that would not load again
    try:
        old = config.path.read_text(encoding="utf-8")
    except FileNotFoundError:
        old = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"{config.path}: cannot be read: "
                           f"{getattr(exc, 'strerror', None) or exc}"]) from None
    text = edited_text(old, doc, config.path)
    try:
        write_atomic(config.path, text if old.strip() else header + text)
    except OSError as exc:
        raise ConfigError([f"{config.path}: cannot be written: {exc.strerror}"]) from None


def edited_text(old: str, new: dict[str, Any], path: Path) -> str:
    """`old` (a config file's text) changed so that it holds the document `new`.

    Both are compared as to_document() sees them, so a key the person wrote that the
    change leaves alone stays as written (an explicit default, a comment beside it);
    changed keys are set in place, removed ones deleted, new ones added after the last
    key of their table (before the comments that introduce the next table).
    """
    import tomlkit  # only when a command edits the file

    try:
        document = tomlkit.parse(old)
        before = to_document(parse_config(tomllib.loads(old), path))
    except (tomllib.TOMLDecodeError, tomlkit.exceptions.TOMLKitError, ConfigError):
        # Not a file this tool could load: it is written anew (callers load it first,
        # so this is a file that was empty or vanished in between).
        document, before = tomlkit.document(), {}
    _edit(document, before, new, ())
    return tomlkit.dumps(document)


def _edit(target: Any, before: dict[str, Any], after: dict[str, Any],
          path: tuple[str, ...]) -> None:
    from collections.abc import MutableMapping

    import tomlkit
    from tomlkit.items import Table

    for key in before:
        if key in after or key not in target:
            continue
        if not path and isinstance(target[key], MutableMapping):
            # [sync] back to defaults: only what differed goes; the person's explicit
            # defaults and comments stay. A player or group goes as a whole.
            _edit(target[key], before[key], {}, (key,))
        else:
            del target[key]
    for key, value in after.items():
        nested = isinstance(value, dict) and _is_table((*path, key))
        if nested and key in target and isinstance(target[key], MutableMapping):
            old = before.get(key)
            _edit(target[key], old if isinstance(old, dict) else {}, value, (*path, key))
        elif key not in target or before.get(key) != value:
            item = _toml_item(value, (*path, key))
            if isinstance(item, Table):
                item.add(tomlkit.nl())  # a blank line before whatever table follows
            if key in target or not isinstance(target, Table):
                target[key] = item
            else:
                _add_to_table(target, key, item)


def _is_table(path: tuple[str, ...]) -> bool:
    """[metarr], [sync], [groups.NAME] and [players.NAME] are tables; every other table
    value (a secret's { env = "VAR" }, a mapping) is written inline."""
    return len(path) == 1 or (len(path) == 2 and path[0] in ("groups", "players"))


def _toml_item(value: Any, path: tuple[str, ...]) -> Any:
    import tomlkit

    if isinstance(value, dict):
        made = tomlkit.table() if _is_table(path) else tomlkit.inline_table()
        for key, inner in value.items():
            made[key] = _toml_item(inner, (*path, key))
        return made
    if isinstance(value, list):
        array = tomlkit.array()
        for inner in value:
            array.append(_toml_item(inner, (*path, "[]")))
        if len(value) > 1 and any(isinstance(v, dict) for v in value):
            array.multiline(True)  # one mapping a line, as people write them
        return array
    return tomlkit.item(value)


def _add_to_table(table: Any, key: str, item: Any) -> None:
    """Append `key` after the table's last key: comments and blank lines at its end
    belong to whatever table follows."""
    body = table.value.body
    keys = [i for i, (k, _) in enumerate(body) if k is not None]
    if keys and keys[-1] + 1 < len(body):
        table.value._insert_at(keys[-1] + 1, key, item)
    else:
        table[key] = item


# --- Metarr's database: the config, else Metarr's own environment ----------------------

def metarr_database_source(config: Config) -> tuple[str | None, str]:
    """Metarr's database and where it came from (None, "not set" when nowhere).

    `[metarr] database` first; then METARR_DATABASE_URL (a file path or a postgresql://
    URL); then Metarr's own DATABASE_URL, but only with DB_TYPE=postgres as Metarr itself
    reads it: DATABASE_URL is a name many programs use, and a stray one must not point us
    at some other database.
    """
    if config.metarr.database:
        return config.metarr.database, "[metarr] database"
    value = os.environ.get("METARR_DATABASE_URL", "").strip()
    if value:
        return value, "METARR_DATABASE_URL"
    if _metarr_on_postgres():
        value = os.environ.get("DATABASE_URL", "").strip()
        if value:
            return value, "DATABASE_URL (DB_TYPE=postgres)"
    return None, "not set"


def metarr_database(config: Config) -> str:
    """The Metarr database a run reads; ConfigError (exit 3) saying how to set it."""
    database, _ = metarr_database_source(config)
    if database:
        return database
    hint = ""
    if os.environ.get("DATABASE_URL") and not _metarr_on_postgres():
        hint = "; DATABASE_URL is only used together with DB_TYPE=postgres, as Metarr does"
    raise ConfigError.one(
        f"{config.path}: [metarr] database is not set: point it at Metarr's "
        "data/metarr.sqlite or its postgresql:// URL (or set METARR_DATABASE_URL)" + hint)


def _metarr_on_postgres() -> bool:
    return os.environ.get("DB_TYPE", "").strip().lower() in ("postgres", "postgresql")
