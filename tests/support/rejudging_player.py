"""A recording adapter whose finish() takes back what apply() reported as synced,
as Plex's guarded emptyTrash may do for removals: the engine must keep such items."""

from __future__ import annotations

from metarr_sync.players import base
from support.recorder_player import RecorderPlayer


class RejudgingPlayer(RecorderPlayer):
    type_name = "rejudging"

    def apply(self, batch):
        self.applied = [t.key for t in batch]
        return super().apply(batch)

    def finish(self):
        return [base.Outcome(key, "failed", "taken back by finish()") for key in self.applied]
