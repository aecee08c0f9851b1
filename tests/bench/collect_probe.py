"""Collect and plan, nothing else: the core's share of a run, timed by phase.

    python collect_probe.py [--record] METARR_DB STATE_DIR BATCH_SIZE NAME=PLAYER_ROOT...

Does what `metarr-sync run` does before it contacts any player (read every Metarr item,
compare with the state, queue what changed, map and batch each player's queue) on a copy
of the state, and prints the CPU seconds of each phase as JSON. With --record it then
stores every batch as delivered, one transaction per batch, as the engine does after each
batch a player answered (the state updates of a run). Run it through measure.py to get
its peak RSS.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from metarr_sync.config import Mapping
from metarr_sync.metarr import open_sqlite
from metarr_sync.plan import build_plan
from metarr_sync.players.base import Outcome
from metarr_sync.state import State

METARR_ROOT = "/data/media"


def main(argv: list[str]) -> int:
    record = argv[:1] == ["--record"]
    argv = argv[1:] if record else argv
    database, state_dir, batch_size = argv[0], Path(argv[1]), int(argv[2])
    roots = dict(arg.split("=", 1) for arg in argv[3:])
    source = open_sqlite(database)
    state = State(state_dir)
    started = time.process_time()
    collected = state.collect(source.items(), list(roots), 0)
    collected_at = time.process_time()
    plans, built = {}, {}
    for name, root in roots.items():
        plan = built[name] = build_plan(state.work(name), [Mapping(METARR_ROOT, root)],
                                        batch_size)
        plans[name] = {"targets": len(plan.targets), "batches": len(plan.batches),
                       "errors": len(plan.errors)}
    planned_at = time.process_time()
    if record:
        run_id = state.start_run("manual", "run")
        for name, plan in built.items():
            for batch in plan.batches:
                state.record(name, [t.item for t in batch],
                             [Outcome(t.key, "sent") for t in batch], run_id)
    recorded_at = time.process_time()
    state.close()
    source.close()
    print(json.dumps({"changed": collected.changed, "collect_cpu_s": collected_at - started,
                      "plan_cpu_s": planned_at - collected_at,
                      "record_cpu_s": recorded_at - planned_at, "plans": plans}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
