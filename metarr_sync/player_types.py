"""Every player type this tool knows, in one place.

Per type: the settings of `[players.NAME]` only it takes, the credentials it needs (and the
words used when they are missing), the port its web server listens on by default (used
when Metarr stores a host without one), whether its players can share one library,
whether its updates wait while someone watches (`skip_active`'s default), and its adapter.
Adding a player type is one entry in TYPES plus its adapter module.

Adapters are named as "module:Class" and imported only when a run talks to a player, so
this module imports nothing but the standard library: config.py validates against it, and
`status` (a monitoring check run every minute) loads the config without loading requests
or any adapter.

METARR_SYNC_PLUGINS (`type=module:Class,...`) adds types at run time, for the test
suite's recording adapters and for trying a third-party adapter without forking; such a
type takes only the common settings and no credential is required.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

#: Seconds: the longest request timeout ([sync] timeout) and scan delay or timeout
#: accepted. Sockets cannot wait much longer anyway, and a sync that waits an hour for
#: one answer is misconfigured.
MAX_TIMEOUT = 3600
#: The most refresh requests one player may have in flight at once (`concurrency`).
MAX_CONCURRENCY = 16
#: jellyfin/emby `refresh_mode`: "full" forces the NFO re-read and the providers.
REFRESH_MODES = ("default", "full")


def _accept(value: Any) -> str | None:
    return None


@dataclass(frozen=True)
class Setting:
    """One key of `[players.NAME]` that only some player types take."""

    #: The TOML value types it takes (int is accepted where float is).
    types: tuple[type, ...]
    default: Any
    #: Why a value of the right type is refused (None: accepted); the message follows
    #: "players.NAME.KEY: ".
    refuse: Callable[[Any], str | None] = _accept

    def value(self, raw: Any) -> Any:
        """The value stored for an accepted TOML value: numbers of seconds as float."""
        return float(raw) if float in self.types else raw


def _scan_delay(value: float) -> str | None:
    if value < 0:
        return "must not be negative"
    if not value <= MAX_TIMEOUT:  # also refuses nan and inf
        return f"must be at most {MAX_TIMEOUT} seconds, not {value:g}"
    return None


def _scan_timeout(value: float) -> str | None:
    if not 0 < value <= MAX_TIMEOUT:  # also refuses nan and inf
        return f"must be a positive number of seconds, at most {MAX_TIMEOUT}, not {value:g}"
    return None


def _not_negative(value: int) -> str | None:
    return "must not be negative" if value < 0 else None


def _concurrency(value: int) -> str | None:
    if not 1 <= value <= MAX_CONCURRENCY:
        return (f"must be between 1 and {MAX_CONCURRENCY} (refresh requests in flight at "
                f"once), not {value}")
    return None


#: Seconds: the longest `verify_after` accepted (a day; a delivery unseen after that is
#: not waiting for a scan any more).
MAX_VERIFY_AFTER = 86400


def _verify_after(value: float) -> str | None:
    if not 0 < value <= MAX_VERIFY_AFTER:  # also refuses nan and inf
        return (f"must be a positive number of seconds, at most {MAX_VERIFY_AFTER}, "
                f"not {value:g}")
    return None


def _refresh_mode(value: str) -> str | None:
    return None if value in REFRESH_MODES else f"must be one of {', '.join(REFRESH_MODES)}"


#: Every type-specific setting, in the order they are checked. PlayerConfig takes its
#: defaults from here.
SETTINGS: dict[str, Setting] = {
    # plex: also analyze media streams after a refresh
    "analyze": Setting((bool,), False),
    # jellyfin/emby: "full" forces the NFO re-read and the providers
    "refresh_mode": Setting((str,), "default", _refresh_mode),
    # plex: pause between partial scans (seconds)
    "scan_delay": Setting((int, float), 0.0, _scan_delay),
    # kodi: longest wait for its scanner to go idle (seconds)
    "scan_timeout": Setting((int, float), 600.0, _scan_timeout),
    # plex: refuse emptyTrash above this many missing items
    "max_trash_items": Setting((int,), 10, _not_negative),
    # jellyfin/emby/plex: item refreshes in flight at once
    "concurrency": Setting((int,), 4, _concurrency),
    # jellyfin/emby: seconds after a report before its items are looked for (and before
    # the same library folder is reported again). A new or removed movie makes Jellyfin
    # validate its whole library folder, recursively, after its 60 s monitor delay: every
    # folder listed (slow on a network share), every new item's NFO and images read. On a
    # big library that takes minutes to tens of minutes; too short a wait costs a wrong
    # `unverified` and another whole-folder validation, too long only delays `verified`.
    "verify_after": Setting((int, float), 1800.0, _verify_after),
}


@dataclass(frozen=True)
class Credentials:
    """Which of username/password/token a type reads, and which it cannot do without."""

    #: The keys of `[players.NAME]` it reads (README's "players" column says so too).
    keys: tuple[str, ...] = ()
    #: A token is required (an API key: the server refuses every request without one).
    token_required: bool = False

    def problems(self, type_name: str, *, username: bool, password: bool,
                 token: bool) -> list[tuple[str, str]]:
        """(key, why) for each credential a player of this type is missing."""
        found: list[tuple[str, str]] = []
        if "username" in self.keys and password and not username:
            found.append(("username", "needed with a password"))
        if self.token_required and not token:
            found.append(("token", f"missing ({type_name} needs an API token)"))
        return found

    def metarr_problem(self, type_name: str, *, username: bool, password: bool,
                       token: bool) -> str | None:
        """Why a player set up in Metarr cannot be imported with the credentials Metarr
        holds for it (its api_key column is our token), or None."""
        if "username" in self.keys and password and not username:
            return "Metarr has a password for it but no user name"
        if self.token_required and not token:
            return f"Metarr has no API key for it ({type_name} needs one)"
        return None


#: Kodi's web server: HTTP basic authentication, off unless the user turns it on.
LOGIN = Credentials(keys=("username", "password"))
#: Jellyfin/Emby API key, Plex X-Plex-Token: required.
API_TOKEN = Credentials(keys=("token",), token_required=True)


@dataclass(frozen=True)
class PlayerType:
    name: str
    #: Its name in prose ("Kodi").
    label: str
    #: The adapter, "module:Class", imported only when a player of this type is used.
    adapter: str
    #: The keys from SETTINGS this type takes, besides the common ones.
    settings: tuple[str, ...] = ()
    credentials: Credentials = field(default_factory=Credentials)
    #: Its web server's port when Metarr gives none (80: plain HTTP's).
    default_port: int = 80
    #: Several players of this type can keep one library (Kodi's MySQL database), so a
    #: group of them may be a `shared_library` group, synced through one member.
    shares_library: bool = False
    #: `skip_active` unless the config says otherwise: defer updates while someone watches.
    #: On where the playback is on the box itself (Kodi: a library scan there is what the
    #: viewer would notice); off for servers, whose refresh interrupts no stream. On for
    #: plugin types: not knowing the player, the run never disturbs a viewer.
    skip_active: bool = True


#: The built-in types, in the order help texts and messages name them.
TYPES: dict[str, PlayerType] = {t.name: t for t in (
    PlayerType("kodi", "Kodi", "metarr_sync.players.kodi:KodiPlayer",
               settings=("scan_timeout",), credentials=LOGIN, default_port=8080,
               shares_library=True),
    PlayerType("jellyfin", "Jellyfin", "metarr_sync.players.jellyfin:JellyfinPlayer",
               settings=("refresh_mode", "concurrency", "verify_after"),
               credentials=API_TOKEN, default_port=8096, skip_active=False),
    PlayerType("emby", "Emby", "metarr_sync.players.jellyfin:EmbyPlayer",
               settings=("refresh_mode", "concurrency", "verify_after"),
               credentials=API_TOKEN, default_port=8096, skip_active=False),
    PlayerType("plex", "Plex", "metarr_sync.players.plex:PlexPlayer",
               settings=("analyze", "scan_delay", "max_trash_items", "concurrency"),
               credentials=API_TOKEN, default_port=32400, skip_active=False),
)}
#: The built-in type names: what messages offer as "expected one of ...".
NAMES = tuple(TYPES)


def spoken_list(words: tuple[str, ...] | list[str]) -> str:
    """"a, b or c", as help texts name the types."""
    if len(words) < 2:
        return "".join(words)
    return f"{', '.join(words[:-1])} or {words[-1]}"


def labels_using(key: str) -> str:
    """"Jellyfin/Emby/Plex": the built-in types that read credential `key`."""
    return "/".join(t.label for t in TYPES.values() if key in t.credentials.keys)


def plugins() -> dict[str, str]:
    """Adapters named in METARR_SYNC_PLUGINS as `type=module:Class,...`."""
    found = {}
    for entry in filter(None, os.environ.get("METARR_SYNC_PLUGINS", "").split(",")):
        name, _, target = entry.partition("=")
        if name and target:
            found[name.strip()] = target.strip()
    return found


def known() -> tuple[str, ...]:
    """Built-in player types plus those added through METARR_SYNC_PLUGINS."""
    return NAMES + tuple(t for t in plugins() if t not in TYPES)


def get(name: str) -> PlayerType | None:
    """The type called `name` (a plugin's adapter wins over a built-in one), or None."""
    target = plugins().get(name)
    builtin = TYPES.get(name)
    if target is None:
        return builtin
    if builtin is not None:
        return replace(builtin, adapter=target)
    return PlayerType(name, name, target)
