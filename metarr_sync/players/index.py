"""What an adapter may keep of a player's items between runs (Jellyfin, Plex).

The rows live in the tool's state (metarr_sync.state implements `IndexStore`); adapters
see only this contract, so the players package never imports the state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


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
