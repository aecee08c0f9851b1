"""What an adapter may keep of a player's items between runs (Jellyfin, Plex).

The rows live in the tool's state (metarr_sync.state implements `IndexStore`); adapters
see only this contract, so the players package never imports the state.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from metarr_sync.stamps import stamp_ago

#: A library's index is listed whole again after this long (seconds): ids the server
#: dropped without a word would otherwise pile up; one full listing a week, not one a run.
INDEX_MAX_AGE = 7 * 86400


@dataclass(frozen=True)
class IndexedLibrary:
    """What a library's index was built for (IndexStore.indexed_libraries)."""

    server_id: str
    locations: list[str]
    built_at: str
    saved_since: str


@dataclass(frozen=True)
class IndexRow:
    """One item of a player's index: its id, path (paths.match_key), type, show, and
    provider keys (as the adapter forms them)."""

    item_id: str
    path_key: str
    type: str
    series_id: str | None
    providers: tuple[str, ...] = ()


class IndexStore(Protocol):
    """The state's methods for a player's item index (see metarr_sync.state.State)."""

    def indexed_libraries(self, player: str) -> dict[str, IndexedLibrary]: ...

    def drop_index(self, player: str, library: str | None = None) -> None: ...

    def index_items(self, player: str, library: str, rows: Sequence[IndexRow], *,
                    fresh: bool = False) -> None: ...

    def forget_index_items(self, player: str, item_ids: Sequence[str]) -> None: ...

    def index_library(self, player: str, library: str, server_id: str,
                      locations: Sequence[str], saved_since: str, *, built: bool) -> None: ...

    def index_show_complete(self, player: str, series_id: str) -> None: ...

    def index_at_path(self, player: str, path_key: str, *, library: str | None = None,
                      series_id: str | None = None) -> list[tuple[str, str]]: ...

    def index_with_ids(self, player: str, keys: Sequence[str], *, library: str | None = None,
                       series_id: str | None = None) -> list[str]: ...

    def index_library_of(self, player: str, item_id: str) -> str | None: ...

    def index_show_is_complete(self, player: str, series_id: str) -> bool: ...


def why_list_again(indexed: IndexedLibrary, server_id: str,
                   locations: Sequence[str] | None, key: Callable[[str], Any], *,
                   other_server: str, gone: str) -> str | None:
    """Why a library's index must be thrown away and the library listed whole again, in
    words for the log (None: it may be kept): another server (`other_server`), the
    library gone or rebuilt under a new id (`locations` None: `gone`), its folders
    changed (compared by `key`), or the index older than INDEX_MAX_AGE."""
    if indexed.server_id != server_id:
        return other_server
    if locations is None:
        return gone
    if sorted(map(key, locations)) != sorted(map(key, indexed.locations)):
        return "the library's folders changed"
    if indexed.built_at < stamp_ago(INDEX_MAX_AGE):
        return f"listed whole more than {INDEX_MAX_AGE // 86400} days ago"
    return None
