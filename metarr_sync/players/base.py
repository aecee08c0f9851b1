"""The adapter interface every player implements, and the one error taxonomy.

An adapter speaks one player's API. The engine asks it to probe the player, whether
someone is watching, to apply batches of targets, and to notify. Every failure an adapter
meets is raised as one of the PlayerError kinds below, with a message in the user's words.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from metarr_sync.config import PlayerConfig, SyncConfig
    from metarr_sync.plan import Target
    from metarr_sync.players.index import IndexStore


class PlayerError(Exception):
    """A failure talking to a player. `kind` is stable and appears in --json output."""

    kind: ClassVar[str] = "error"
    #: True when trying again later may succeed without anyone changing anything.
    transient: ClassVar[bool] = True

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
        #: Outcomes of targets of the failing batch that were settled before the failure
        #: (answered, or sent and perhaps carried out): the engine records them instead of
        #: keeping those targets pending like the rest.
        self.settled: list[Outcome] = []
        #: The HTTP status of the answer that failed, if any (set by players/http.py).
        self.status: int | None = None


class PlayerOffline(PlayerError):
    kind = "offline"


class AuthFailed(PlayerError):
    kind = "auth_failed"
    transient = False


class PlayerTimeout(PlayerError):
    kind = "timeout"


class ProtocolError(PlayerError):
    """The player answered something this tool cannot use (HTML, truncated JSON, 3xx)."""

    kind = "protocol_error"


class Rejected(PlayerError):
    """The player understood the request and refused it (403, 404, JSON-RPC error)."""

    kind = "rejected"
    transient = False


class Interrupted(PlayerError):
    """The run was told to stop (SIGINT/SIGTERM): what is not confirmed stays queued as it
    was, without counting as a failed attempt."""

    kind = "interrupted"


class StopFlag:
    """Set by SIGINT/SIGTERM while players are being synced.

    Player threads look at it between batches, and HttpClient before every request, so a
    stop waits at most for the requests already on the wire (a soft one: for the batch
    in flight). Only the main thread sets it
    (signal handlers run there); workers only read it.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: int | None = None
        self.at = 0.0
        #: True while the engine syncs players: a signal then only sets the flag.
        self.armed = False
        #: A soft stop (`watch` on SIGTERM) lets each player finish the batch in flight:
        #: players stop between batches, requests go on until harden().
        self.soft = False

    def request(self, signum: int, *, soft: bool = False) -> bool:
        """Ask the players to stop; True when they will (armed, and the first request).

        False means the caller must stop the process itself: no players are being synced
        (collection is one transaction and may simply be abandoned), or this is the
        second signal and the user wants out now.
        """
        if not self.armed or self._event.is_set():
            return False
        self.signal, self.at, self.soft = signum, time.monotonic(), soft
        self._event.set()
        return True

    def harden(self) -> None:
        """A soft stop becomes a plain one: no new request starts (the grace for those
        on the wire counts from now)."""
        if self._event.is_set() and self.soft:
            self.soft, self.at = False, time.monotonic()

    def halts_requests(self) -> bool:
        return self._event.is_set() and not self.soft

    def preset(self, signum: int) -> None:
        """Ask the run under way to stop before it contacts any player, also before the
        engine armed the flag (`watch`: a SIGTERM during collection). The engine clears
        it when the next run starts."""
        if not self._event.is_set():
            self.signal, self.at = signum, time.monotonic()
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def waited(self) -> float:
        """Seconds since the stop was requested."""
        return time.monotonic() - self.at if self.is_set() else 0.0

    def check_request(self) -> None:
        """Before a request: raise Interrupted unless no stop, or a soft one, was asked."""
        if self.halts_requests():
            self.check()

    def check(self) -> None:
        """Raise Interrupted when a stop was requested (between batches)."""
        if self._event.is_set():
            raise Interrupted(f"stopped by {signal_name(self.signal)} before finishing; "
                              "what was not confirmed stays queued for the next run")

    def clear(self) -> None:
        self._event.clear()
        self.signal, self.armed, self.soft = None, False, False


def signal_name(signum: int | None) -> str:
    import signal

    try:
        return signal.Signals(signum).name if signum is not None else "a signal"
    except ValueError:
        return f"signal {signum}"


#: The one stop flag of this process.
STOP = StopFlag()

T = TypeVar("T")
R = TypeVar("R")


def bounded_map(call: Callable[[T], R], items: Sequence[T], limit: int,
                name: str = "player") -> list[R]:
    """`call(item)` for every item, at most `limit` at a time; the results in item order.

    For requests a player queues and answers at once (item refreshes): a few in flight
    save round trips. An exception from `call` is a failure of the whole player: once one
    is raised no further call starts (those under way finish: they are on the wire
    already), and the exception of the first item, in item order, that raised one is
    raised here. A stop request works the same way: HttpClient raises Interrupted instead
    of starting a request. With a limit of 1 this is the plain loop in the calling thread.
    """
    if limit <= 1 or len(items) <= 1:
        return [call(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor  # only runs that send refreshes

    results: list[R | None] = [None] * len(items)
    halt = threading.Event()

    def one(index: int) -> None:
        if halt.is_set():
            return  # an earlier call failed: start no new request
        try:
            results[index] = call(items[index])
        except BaseException:
            halt.set()
            raise

    with ThreadPoolExecutor(max_workers=min(limit, len(items)),
                            thread_name_prefix=f"{name}-refresh") as pool:
        futures = [pool.submit(one, index) for index in range(len(items))]
    for future in futures:  # all done: leaving the `with` waited for them
        error = future.exception()
        if error is not None:
            raise error
    return results  # type: ignore[return-value]  # every call returned


class Result(StrEnum):
    """What became of one item on one player (Outcome.result), shared by the adapters,
    the engine and the state. A StrEnum: each equals its text, which is what the state
    keeps and logs show."""

    # From adapters:
    SYNCED = "synced"
    FAILED = "failed"  # needs a person; kept as failed
    RETRY = "retry"  # kept pending, tried again by the next run
    UNVERIFIED = "unverified"  # sent, but not seen on the player
    # Sent, but no answer came: the player may have carried it out, so it is verified
    # before it is sent again (only in PlayerError.settled). The engine also turns an
    # adapter's `synced` into `sent` when it verifies: delivered, to be verified.
    SENT = "sent"
    # The engine adds:
    DEFERRED = "deferred"  # someone is watching; kept for the next run
    VERIFIED = "verified"  # seen on the player after delivery
    # A removal not sent: the guard held it, or the disk cannot tell whether its media is
    # gone.
    HELD = "held"
    DROPPED = "dropped"  # a removal candidate whose media is still on disk: leaves the queue


@dataclass(frozen=True)
class Outcome:
    """What became of one item on one player (see Result)."""

    item_key: str
    result: Result
    error: str | None = None


@dataclass(frozen=True)
class ProbeStep:
    """One step of player discovery, as `players test` shows it.

    A warning (a player setting that defeats Metarr, see players/settings.py) keeps `ok`
    true: the player works, but the viewer would not see what Metarr wrote; `fix` says
    what to change.
    """

    name: str
    ok: bool
    detail: str = ""
    warning: bool = False
    fix: str = ""


@dataclass
class ProbeResult:
    version: str = ""
    api_version: str = ""
    steps: list[ProbeStep] = field(default_factory=list)
    #: The library roots as the player sees them (Kodi sources, Jellyfin library
    #: locations, Plex section locations), used to check path mappings.
    roots: list[str] = field(default_factory=list)


class PlayerClient(Protocol):
    """What an adapter's client (HttpClient, KodiClient) shares with the engine."""

    @property
    def requests(self) -> int: ...

    commands: list[str]


class Player(ABC):
    """Base of all adapters. One instance serves one player for one run."""

    type_name: ClassVar[str] = ""
    #: Seconds after a delivery before verify() can tell whether it landed: 0 for players
    #: that scan synchronously (Kodi: verified at the end of the same run); Plex and
    #: Jellyfin scan in the background, so their deliveries are verified on a later run.
    verify_after: float = 0.0

    def __init__(self, config: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False):
        self.config = config
        self.sync = sync
        self.dry_run = dry_run
        #: Every removal of this player that is delivered and not yet verified, however
        #: recent, set by the engine before verify(): what the player marks missing for
        #: these is metarr-sync's own doing (Plex: whether its trash is all ours).
        self.removing: Sequence[Target] = ()
        self._requests = 0
        #: Every state-changing command, as text: what --dry-run prints.
        self.commands: list[str] = []
        self._client: PlayerClient | None = None
        #: Item key -> the art URLs of an item this run refreshed, as the player listed
        #: them before the refresh: images another box may still show from its own cache.
        #: The engine hands them to the other members of a shared library.
        self.cached_art: dict[str, list[str]] = {}
        #: Library folders (as the player names them) that an earlier run made the player
        #: rescan whole less than verify_after ago and whose rescan has not been seen yet
        #: (folder -> when), set by the engine before apply() when it verifies: reporting
        #: them again would only queue another rescan (Jellyfin).
        self.roots_in_flight: Mapping[str, str] = {}
        #: Library folders this run made the player rescan whole, with the keys of the
        #: items reported with them; the engine records them.
        self.roots_reported: dict[str, list[str]] = {}

    def use_client(self, client: PlayerClient) -> None:
        """Count requests and record commands in the client the adapter talks through
        (refreshes sent from several threads are each counted there)."""
        self._client = client
        self.commands = client.commands

    @property
    def requests(self) -> int:
        """HTTP requests sent to the player so far (a JSON-RPC batch is one)."""
        return self._requests if self._client is None else self._client.requests

    @requests.setter
    def requests(self, value: int) -> None:  # adapters without a client count here
        self._requests = value

    @property
    def name(self) -> str:
        return self.config.name

    def concurrently(self, call: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`bounded_map` with this player's `concurrency`: for item refreshes only (scans
        stay one at a time). Under --dry-run one at a time, so that the commands are
        recorded in a stable order."""
        limit = 1 if self.dry_run else self.config.concurrency
        return bounded_map(call, items, limit, self.name)

    @abstractmethod
    def probe(self) -> ProbeResult:
        """Check the player is reachable and the credentials work; raise PlayerError."""

    def keep_index(self, state: IndexStore) -> None:
        """Called after probe() when the run may keep what it learns: the adapter may
        keep an index of the player's items in the state between runs (Jellyfin, Plex).
        Most keep none."""
        return None

    def check_settings(self) -> list[ProbeStep]:
        """The player's own settings that silently defeat Metarr (`players test` only,
        after probe()): one step per finding, a warning with its fix when a setting is
        wrong. Read-only; raise PlayerError when they cannot be read."""
        return []

    def is_playing(self) -> bool:
        """True when someone is watching: the run then defers this player's updates."""
        return False

    @abstractmethod
    def apply(self, batch: Sequence[Target]) -> list[Outcome]:
        """Deliver one batch; return one Outcome per target.

        Raise PlayerError when the player as a whole fails: the engine then keeps the
        batch pending and stops this player for the run.
        """

    def finish(self) -> list[Outcome]:
        """Work that follows all batches (e.g. guarded trash emptying); may re-judge items."""
        return []

    def verify(self, targets: Sequence[Target]) -> list[Outcome]:
        """Check on the player that delivered (not removed) targets really landed.

        One Outcome per target: "synced" when the player has the item (at its path, or
        a refreshed item's update time moved), "unverified" with a cause the user can act
        on when it does not. Players whose scans are asynchronous (Plex, Jellyfin) are
        verified on the next run; Kodi at the end of the same run.
        """
        return [Outcome(t.key, Result.SYNCED) for t in targets]

    def sample_paths(self, limit: int = 20) -> list[str]:
        """File paths (movies, episodes) of a few items the player has, as it sees them.

        `mappings detect` matches them with Metarr's items by their trailing components
        (`The Matrix (1999)/The Matrix (1999).mkv`) to find a mapping the library roots do
        not reveal. Read-only; adapters that cannot list items return [].
        """
        return []

    def scan_all(self) -> None:
        """A full library scan, only when the user turned targeted_updates off."""
        raise Rejected(f"{self.type_name} players do not support full library scans")

    def drop_cached_art(self, art: Mapping[str, Sequence[str]]) -> list[Outcome]:
        """Drop this player's own cached copies of these images (item key -> art URLs,
        as another member of a shared library listed them), so that it shows the files
        as they are now. One Outcome per key: "synced", or "retry" with the cause. Players
        without an image cache of their own have nothing to drop."""
        return [Outcome(key, Result.SYNCED) for key in art]

    def notify(self, title: str, message: str) -> None:  # noqa: B027 - optional hook
        """Show a message on the player (send_notifications)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
