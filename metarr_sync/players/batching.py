"""How many calls go into one request to a player that answers only after the work.

Kodi answers a JSON-RPC batch of refreshes only once it has worked through every call in
it, so a batch's answer time grows with its size and with the box: measured on Kodi 20.1
with tiny local files, 1 RefreshMovie was answered in 0.01 s, 10 in 0.6-0.9 s, 40 in
2.8-4.0 s, 120 in 7.3-10 s (60-100 ms a call); a box reading NFO files over SMB is many
times slower. A fixed batch of 100 then outlasts the request timeout on a slow box, and a
batch that timed out cannot be sent again (Kodi goes on with it).

BatchSizer chooses each batch's size from the answer times it measured: it starts small,
grows while answers come back well inside the budget (a quarter of the request timeout),
and shrinks at once after a slow one, to what the measured time per call allows. It is
pure: the caller measures and reports each batch's duration.
"""

from __future__ import annotations

import math

#: Calls in the first batch: small enough for the slowest box to answer well in time.
START = 5
#: The share of the request timeout a batch may take. Answer times vary (one refresh took
#: 4 ms, the next 335 ms on the same Kodi), so a batch is planned to take a quarter of the
#: timeout: even a batch twice as slow as its predecessors stays at half of it.
BUDGET_SHARE = 0.25


class BatchSizer:
    """The size of the next batch, from the durations of the batches before it.

    `size` is the number of calls to put in the next batch (1 ≤ size ≤ limit). After
    sending a batch of `calls` calls that took `seconds` to be answered, `measured()`
    adjusts it:
    - slower than the budget: shrink to what the time per call allows within the budget,
      and at least halve;
    - within half the budget: grow, at most doubling, to what the time per call allows
      (never above `limit`);
    - otherwise: keep.
    """

    def __init__(self, timeout: float, limit: int, start: int = START,
                 share: float = BUDGET_SHARE):
        if timeout <= 0 or limit < 1 or start < 1 or not 0 < share <= 1:
            raise ValueError("timeout and share must be positive, limit and start >= 1")
        self.limit = limit
        self.budget = timeout * share
        self.size = min(start, limit)
        #: The slowest time per call seen in the run. Kodi may answer a batch before it
        #: has carried it out (measured on 21.2 and, for single calls, 20.1), and the next
        #: batch then waits behind that work: a fast answer never proves a bigger batch
        #: fits, so the size never grows past what the slowest pace allows.
        self.worst = 0.0

    def measured(self, calls: int, seconds: float) -> None:
        """A batch of `calls` calls was answered after `seconds`."""
        if calls < 1:
            return
        seconds = max(seconds, 0.0)
        per_call = seconds / calls
        self.worst = max(self.worst, per_call)
        fits = self.limit if self.worst == 0 else max(1, math.floor(self.budget / self.worst))
        if seconds > self.budget:
            self.size = max(1, min(fits, self.size // 2))
        elif seconds <= self.budget / 2 and calls >= self.size:
            # Only a full batch says the current size is comfortable: the short last
            # batch of a run says little about a bigger one.
            self.size = min(self.limit, max(self.size, min(2 * self.size, fits)))
