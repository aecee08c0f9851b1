"""A Player whose answers come from a script, for in-process engine tests.

    SCRIPTS["lounge"] = Script(batches=[{"movie:2": ("failed", "rejected")}])
    report = engine.run(config, source, state_dir, Request())

Plugged in by type: METARR_SYNC_PLUGINS=scripted=support.scripted_player:ScriptedPlayer
and `type = "scripted"` in the config; the script is looked up by the player's name.
Outcome results are their string values ("synced", "retry", ...).

This module is also the one place the tests import PlayerResult from: it moves with the
player pass (engine → player_run), and only this import has to follow it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from metarr_sync.player_run import PlayerResult
from metarr_sync.players.base import Outcome, Player, PlayerError, ProbeResult

PLUGIN = "scripted=support.scripted_player:ScriptedPlayer"

#: What an item gets: a result, or (result, cause).
Answer = str | tuple[str, str]


@dataclass
class Script:
    """One player's answers for one run."""

    probe: PlayerError | None = None  # raised by probe()
    playing: bool = False
    #: One entry per apply() call, in order: a PlayerError to raise, or item key ->
    #: answer (keys not named are synced). When the list is used up, all is synced.
    batches: list[PlayerError | dict[str, Answer]] = field(default_factory=list)
    #: Item key -> verify()'s answer (keys not named are synced).
    verify: dict[str, Answer] = field(default_factory=dict)
    verify_after: float = 0.0
    #: What the engine asked, in order: (call, item keys).
    calls: list[tuple[str, list[str]]] = field(default_factory=list)


SCRIPTS: dict[str, Script] = {}


def _outcome(key: str, answer: Answer) -> Outcome:
    result, error = (answer, None) if isinstance(answer, str) else answer
    return Outcome(key, result, error)


class ScriptedPlayer(Player):
    type_name = "scripted"

    def __init__(self, config: Any, sync: Any, *, dry_run: bool = False):
        super().__init__(config, sync, dry_run=dry_run)
        self.script = SCRIPTS[config.name]
        self.verify_after = self.script.verify_after
        self._batches = list(self.script.batches)

    def probe(self) -> ProbeResult:
        self.requests += 1
        self.script.calls.append(("probe", []))
        if self.script.probe is not None:
            raise self.script.probe
        return ProbeResult(version="1.0")

    def is_playing(self) -> bool:
        return self.script.playing

    def apply(self, batch: Sequence[Any]) -> list[Outcome]:
        self.requests += 1
        keys = [t.key for t in batch]
        self.script.calls.append(("apply", keys))
        answers = self._batches.pop(0) if self._batches else {}
        if isinstance(answers, PlayerError):
            raise answers
        self.commands += [f"{'remove' if t.item.removed else 'update'} {t.path}"
                          for t in batch]
        return [_outcome(key, answers.get(key, "synced")) for key in keys]

    def verify(self, targets: Sequence[Any]) -> list[Outcome]:
        self.requests += 1
        keys = [t.key for t in targets]
        self.script.calls.append(("verify", keys))
        return [_outcome(key, self.script.verify.get(key, "synced")) for key in keys]


COUNTS = ("status", "synced", "failed", "deferred", "verified", "held", "kept", "error_kind")


def counts(result: PlayerResult) -> dict[str, Any]:
    """A player's result as the table rows of tests state it."""
    return {name: getattr(result, name) for name in COUNTS}
