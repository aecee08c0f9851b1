"""A player adapter for tests whose errors repeat its own secret, as a careless server or
proxy might (echoing the Authorization header or the token in an error page).

Plugged in with METARR_SYNC_PLUGINS=leaky=support.leaky_player:LeakyPlayer; $LEAK_MODE says
where the secret shows up: `probe` (the player error of probe()), `item` (one item's
outcome error), `crash` (an unexpected exception, i.e. a bug in an adapter).
"""

from __future__ import annotations

import os

from metarr_sync.players import base


class LeakyPlayer(base.Player):
    type_name = "leaky"

    @property
    def secret(self) -> str:
        return self.config.token_value or self.config.password_value or ""

    def probe(self) -> base.ProbeResult:
        self.requests += 1
        if os.environ.get("LEAK_MODE") == "probe":
            raise base.Rejected(f"server said: token {self.secret} is not valid here")
        return base.ProbeResult(version="1")

    def apply(self, batch):
        mode = os.environ.get("LEAK_MODE")
        if mode == "crash":
            raise RuntimeError(f"adapter bug while sending Authorization: {self.secret}")
        self.commands += [f"refresh {t.path}" for t in batch]
        if mode == "item":
            return [base.Outcome(t.key, "failed", f"server echoed {self.secret} for {t.path}")
                    for t in batch]
        return [base.Outcome(t.key, "synced") for t in batch]
