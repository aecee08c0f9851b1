"""A player adapter for tests that records what it is asked to do, instead of HTTP.

Plugged in with METARR_SYNC_PLUGINS=recorder=recorder_player:RecorderPlayer and told how
to behave through files in $RECORDER_DIR (so a test can change it between runs):
- `<player>.jsonl`: one JSON line per call it received (written by the adapter);
- `<player>.fail`: holds an error kind: probe raises that PlayerError;
- `<player>.playing`: someone is watching;
- `<player>.reject`: items whose path contains this text fail (rejected by the player);
- `<player>.slow`: seconds to sleep before each batch (to kill a run mid-way);
- `<player>.unverified`: items whose path contains this text are not found by verify();
- `<player>.async`: seconds before a delivery can be verified (like Plex/Jellyfin, whose
  scans run in the background); without it, deliveries are verified in the same run.
- `<player>.samples`: the player's own item paths, one a line (sample_paths(), for
  `mappings detect`); `<player>.samples_fail` holds an error kind sample_paths raises.
- `<player>.art`: the items it updates have artwork it caches, like Kodi: each delivered
  item's art URL `art:<path>` is in `cached_art` (for the other members of a shared
  library), and drop_cached_art() logs what it is asked to drop (op "drop_art"), failing
  like probe() with `<player>.fail`; `<player>.art_reject`: items whose path contains this
  text keep their cached art (outcome "retry"); `<player>.art_reject_quietly`: the same
  without a cause (an adapter may leave Outcome.error empty).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from metarr_sync.players import base


class RecorderPlayer(base.Player):
    type_name = "recorder"
    ERRORS = {"offline": base.PlayerOffline, "auth_failed": base.AuthFailed,
              "timeout": base.PlayerTimeout, "protocol_error": base.ProtocolError,
              "rejected": base.Rejected}

    def __init__(self, config, sync, *, dry_run=False):
        super().__init__(config, sync, dry_run=dry_run)
        self.dir = Path(os.environ["RECORDER_DIR"])
        delay = self._file("async")
        if delay.exists():
            self.verify_after = float(delay.read_text() or 1)

    def _file(self, suffix: str) -> Path:
        return self.dir / f"{self.name}.{suffix}"

    def _log(self, **entry) -> None:
        with self._file("jsonl").open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")

    def probe(self) -> base.ProbeResult:
        self.requests += 1
        fail = self._file("fail")
        if fail.exists():
            kind = fail.read_text().strip()
            self._log(op="probe", failed=kind)
            raise self.ERRORS[kind](f"recorder told to fail: {kind}")
        self._log(op="probe")
        # `<player>.roots`: its library roots, one a line; `<player>.steps`: discovery
        # steps as JSON [[name, ok, detail], ...] (for `players test` / `mappings detect`).
        roots = self._file("roots")
        steps = self._file("steps")
        return base.ProbeResult(
            version="1.0",
            roots=roots.read_text().splitlines() if roots.exists() else [],
            steps=[base.ProbeStep(*s) for s in json.loads(steps.read_text())]
            if steps.exists() else [])

    def sample_paths(self, limit: int = 20) -> list[str]:
        self.requests += 1
        fail = self._file("samples_fail")
        if fail.exists():
            kind = fail.read_text().strip()
            self._log(op="samples", failed=kind)
            raise self.ERRORS[kind](f"recorder told to fail listing items: {kind}")
        self._log(op="samples", limit=limit)
        samples = self._file("samples")
        return samples.read_text().splitlines()[:limit] if samples.exists() else []

    def is_playing(self) -> bool:
        return self._file("playing").exists()

    def apply(self, batch):
        slow = self._file("slow")
        if slow.exists():
            time.sleep(float(slow.read_text() or 1))
        reject = self._file("reject")
        needle = reject.read_text().strip() if reject.exists() else None
        outcomes = []
        for target in batch:
            command = f"{'remove' if target.item.removed else 'update'} {target.path}"
            self.commands.append(command)
            if needle and needle in target.path:
                outcomes.append(base.Outcome(target.key, "failed", "rejected by recorder"))
            else:
                outcomes.append(base.Outcome(target.key, "synced"))
                if self._file("art").exists() and not target.item.removed:
                    self.cached_art[target.key] = [f"art:{target.path}"]
        self.requests += 1
        if not self.dry_run:
            self._log(op="apply", targets=[
                {"key": t.key, "path": t.path, "folder": t.folder, "removed": t.item.removed,
                 "stamp": t.item.stamp, "previous": [old.path for old in t.previous]}
                for t in batch])
        return outcomes

    def verify(self, targets):
        self.requests += 1
        missing = self._file("unverified")
        needle = missing.read_text().strip() if missing.exists() else None
        self._log(op="verify", keys=[t.key for t in targets])
        return [base.Outcome(t.key, "unverified", f"recorder has no item at {t.path}")
                if needle and needle in t.path else base.Outcome(t.key, "synced")
                for t in targets]

    def drop_cached_art(self, art):
        self.requests += 1
        fail = self._file("fail")
        if fail.exists():
            kind = fail.read_text().strip()
            self._log(op="drop_art", failed=kind)
            raise self.ERRORS[kind](f"recorder told to fail: {kind}")
        for urls in art.values():
            self.commands.extend(f"drop {url}" for url in urls)
        if not self.dry_run:
            self._log(op="drop_art", art=dict(art))
        reject, quietly = self._file("art_reject"), self._file("art_reject_quietly")
        needle = (reject.read_text().strip() if reject.exists() else
                  quietly.read_text().strip() if quietly.exists() else None)
        cause = None if quietly.exists() else "recorder kept its cached art"
        return [base.Outcome(key, "retry", cause)
                if needle and any(needle in url for url in urls) else
                base.Outcome(key, "synced") for key, urls in art.items()]

    def notify(self, title, message):
        self._log(op="notify", title=title, message=message)
