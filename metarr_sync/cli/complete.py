"""Values the shells complete from the user's configuration and the CLI's fixed choices:
player and group names, triggers, player types, queue states (see cli/completions.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# --- values completed from the configuration ------------------------------------------
# Completion must never fail loudly: a missing or broken config completes nothing.

def _config(ctx: Any) -> Any:
    try:
        from metarr_sync.config import default_config_path, load_config

        given = ctx.find_root().params.get("config") if ctx is not None else None
        return load_config(Path(given) if given else default_config_path(), secrets=False)
    except Exception:  # noqa: BLE001 - see above
        return None


def player_names(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    """Configured players, with their type and address as the shells' description."""
    config = _config(ctx)
    if config is None:
        return []
    return [(name, f"{p.type} {p.url}" + ("" if p.enabled else " (disabled)"))
            for name, p in config.players.items() if name.startswith(incomplete or "")]


def group_names(ctx: Any, incomplete: str) -> list[tuple[str, str]]:
    config = _config(ctx)
    if config is None:
        return []
    return [(name, f"{g.sync_mode} group") for name, g in config.groups.items()
            if name.startswith(incomplete or "")]


def triggers(incomplete: str) -> list[str]:
    from metarr_sync.engine import TRIGGERS

    return [t for t in TRIGGERS if t.startswith(incomplete or "")]


def player_types(incomplete: str) -> list[str]:
    from metarr_sync.player_types import NAMES

    return [t for t in NAMES if t.startswith(incomplete or "")]


def queue_statuses(incomplete: str) -> list[str]:
    from metarr_sync.state import QUEUE_STATUSES

    return [s for s in QUEUE_STATUSES if s.startswith(incomplete or "")]
