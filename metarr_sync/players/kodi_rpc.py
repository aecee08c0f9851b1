"""Kodi's JSON-RPC 2.0 API (`POST /jsonrpc`) as the Kodi adapter talks to it.

KodiClient sends calls, alone or as JSON-RPC batches, through the one HttpClient, and
turns Kodi's answers into results or KodiRejected errors. It knows the protocol, not the
library: what to scan, refresh or remove is decided in kodi.py (KodiPlayer). Measured on
a real Kodi 20.1:
- A batch (an array of calls in one POST) is answered call by call; one call's error
  object leaves the other calls standing. Every call carries an `id`: Kodi executes a call
  without one (a notification) but never answers it.
- Kodi does not queue scans or cleans: one sent while another runs stops the running one
  and drops itself. So they are never batched, and wait_idle() polls
  `Library.IsScanningVideo` before each, for up to the player's `scan_timeout`: a big new
  show, or the scan Kodi runs at start-up, keeps it busy for minutes.
- A batch is answered only once Kodi has worked through every call in it: 120
  RefreshMovie calls (tiny local files) were answered after 7.3-10 s, 10 after 0.6-0.9 s,
  1 after 0.01 s. Other requests, on other connections, are answered meanwhile (Ping,
  GetInfoBooleans, GetMovies in 0.01-0.6 s during such a batch). A client that stops
  waiting does not stop Kodi: after a client gave up on a batch of 120 refreshes after
  1 s, Kodi still re-read all 120 NFO files (10.4-14.9 s later). So how many changes go
  into one batch is measured, not fixed (batching.BatchSizer, used by KodiPlayer).
  The refreshes themselves run in Kodi's library queue: usually done when the answer
  comes (all 120 new NFO titles listed right after it), but not always (right after a
  batch of 20 was answered, up to 6 of its movies still had their old id, for 0.5 s; on a
  loaded machine, 1 and 12 of 120 movies showed their new title only 20-80 s after the run
  that refreshed them had ended).
- Whole-library listings are paged with `limits` {start, end}; `limits.total` says how many
  rows there are, and each row is slimmed as it is parsed (a library can be 50,000 movies).

At most once: no call that changes the library (scan, refresh, clean, removal) may reach
Kodi twice. A second scan stops the first; a refresh or removal sent again fails on the id
the first invalidated (a refresh re-adds the item under a new id). So such a call is
sent again only when the connection could not be made at all (HttpClient's resend=False);
once it may have been received, a timeout or a 5xx answer becomes MaybeReceived (a
PlayerTimeout) saying so: its items are `sent`, and are looked up in Kodi (verified)
before anything is sent for them again. Reads keep the client's full retries.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.players.base import PlayerTimeout, ProtocolError, Rejected
from metarr_sync.players.http import HttpClient, MaybeReceived, parse_json

# The adapter's logger: -v/-vv lines read "metarr_sync.kodi: <player>: <method> ...".
log = logging.getLogger("metarr_sync.kodi")

#: Kodi's default web server user, used when only a password is configured.
DEFAULT_USER = "kodi"
#: Rows per page of a whole-library listing (GetMovies, GetTVShows): only one page's answer
#: is ever parsed at a time, not 50,000 movies' worth of dicts at once.
PAGE = 5000


class KodiRejected(Rejected):
    """Kodi answered one call with a JSON-RPC error object."""

    def __init__(self, method: str, error: Any):
        self.method = method
        self.code = error.get("code") if isinstance(error, dict) else None
        self.detail = _error_text(error)
        super().__init__(f"Kodi rejected {method}: {self.detail}")


def _error_text(error: Any) -> str:
    """Kodi's own words: `message`, plus which parameter and why when it says so."""
    if not isinstance(error, dict):
        return str(error)
    text = str(error.get("message") or "unknown error").strip()
    stack = (error.get("data") or {}).get("stack") if isinstance(error.get("data"), dict) \
        else None
    if isinstance(stack, dict) and stack.get("message"):
        where = f"{stack['name']}: " if stack.get("name") else ""
        text += f" ({where}{stack['message']})"
    if error.get("code") is not None:
        text += f" [code {error['code']}]"
    return text


class Row(NamedTuple):
    """One listed item as far as it is kept: its file (or folder), which id it has
    (movieid, ...; "" for a directory entry) and that id."""

    file: str
    field: str
    id: Any


_ID_FIELDS = ("movieid", "episodeid", "tvshowid")


def _slim(obj: dict[str, Any]) -> Any:
    """json object_hook for listings: each row shrinks to a Row as soon as it is parsed.

    Its label and other keys are dropped at once instead of after the whole answer: a
    50,000-entry answer then never holds 50,000 dicts (40 MB, which Python then keeps as
    fragmented heap; measured 22 MB instead)."""
    file = obj.get("file")
    if not isinstance(file, str):
        return obj
    for field in _ID_FIELDS:
        if field in obj:
            return Row(file, field, obj[field])
    return Row(file, "", None) if "filetype" in obj else obj


def listed_rows(where: str, method: str, answer: Any, key: str
                ) -> tuple[list[Any], int | None]:
    """The rows of a listing's answer (Kodi may leave out the key of an empty list) and
    the number of rows Kodi has in all (`limits.total`), when it says."""
    if answer is None:
        return [], None
    if not isinstance(answer, dict) or not isinstance(answer.get(key) or [], list):
        raise ProtocolError(f"{where} answered {method} without a list of {key}: "
                            "is this Kodi's web server?")
    limits = answer.get("limits")
    total = limits.get("total") if isinstance(limits, dict) else None
    return answer.get(key) or [], total if isinstance(total, int) else None


def listed_ids(where: str, method: str, rows: list[Any], id_field: str
               ) -> Iterator[tuple[str, int]]:
    """(file, id) of each listed row (parsed with `rows=True`, see _slim)."""
    for row in rows:
        if not isinstance(row, Row) or row.field != id_field or isinstance(row.id, bool) \
                or not isinstance(row.id, int):
            raise ProtocolError(f"{where} listed a row without {id_field} in its answer to "
                                f"{method}: is this Kodi's web server?")
        yield row.file, row.id


class KodiClient:
    """One Kodi's JSON-RPC API, for one run: calls, batches, listings and the idle wait.

    `.requests` counts HTTP requests (a batch is one), `.commands` holds every call that
    changes the library, as --dry-run prints it.
    """

    def __init__(self, config: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False):
        self.config = config
        self.sync = sync
        self.dry_run = dry_run
        self.http = HttpClient(config, sync, dry_run=dry_run)
        self.commands = self.http.commands  # one list: what --dry-run prints
        self.auth: tuple[str, str] | None = None
        if config.username or config.password_value:
            self.auth = (config.username or DEFAULT_USER, config.password_value or "")
        self._next_id = 0
        # Injectable for tests: waiting for Kodi (its scanner, its background job) is the
        # only sleeping the adapter does, and both waits use this clock.
        self.sleep: Callable[[float], None] = time.sleep
        self.clock: Callable[[], float] = time.monotonic

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def where(self) -> str:
        return self.http.base

    @property
    def requests(self) -> int:
        return self.http.requests

    def call(self, method: str, params: dict[str, Any] | None = None, *,
             mutating: bool = False, rows: bool = False) -> Any:
        """One JSON-RPC call; Kodi's error object is raised as KodiRejected.

        A mutating call under --dry-run is recorded in .commands, not sent, and returns None.
        """
        (answer,) = self.call_many([(method, params)], mutating=mutating, rows=rows)
        if isinstance(answer, KodiRejected):
            raise answer
        return answer

    def call_many(self, calls: Sequence[tuple[str, dict[str, Any] | None]], *,
                  mutating: bool = False, rows: bool = False) -> list[Any]:
        """Several calls in one POST (a JSON-RPC batch), answered call by call.

        Returns one entry per call, in order: its result, or a KodiRejected carrying Kodi's
        error object for that call alone (the other calls of the batch stand). An answer
        that is not a batch, or lacks a call's answer, is a ProtocolError for the player.
        A lone call is sent as itself. Never batch scans or cleans: Kodi does not queue
        them, a second one stops the first and drops itself.

        Each mutating call is logged at -v and recorded in .commands on its own, batched
        or not (what --dry-run prints); under --dry-run nothing mutating is sent and every
        answer is None. With `rows`, each listed item arrives as a Row (see _slim).
        """
        bodies: list[dict[str, Any]] = []
        for method, params in calls:
            self._next_id += 1
            body: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
            if params is not None:
                body["params"] = params
            bodies.append(body)
            # -v shows what changes Kodi's library; -vv every call.
            level = logging.INFO if mutating else logging.DEBUG
            if log.isEnabledFor(level):
                log.log(level, "%s: %s %s%s", self.name, method,
                        json.dumps(params or {}, ensure_ascii=False, sort_keys=True),
                        " (dry run: not sent)" if mutating and self.dry_run else "")
            if mutating:
                self.commands.append(self.http.describe("POST", "/jsonrpc", body=body))
        if not bodies:
            return []
        if mutating and self.dry_run:
            return [None] * len(bodies)
        try:
            # Calls that change the library are never sent twice (see the module notes).
            answer = self._post(bodies[0] if len(bodies) == 1 else bodies, rows,
                                resend=not mutating)
        except MaybeReceived:
            raise self._maybe_received([b["method"] for b in bodies]) from None
        if len(bodies) == 1:
            return [self._answer(bodies[0]["method"], answer)]
        return self._batch_answers(bodies, answer)

    def _maybe_received(self, methods: list[str]) -> MaybeReceived:
        """A call that changes the library was sent and not answered in time."""
        names = sorted(set(methods))
        what = names[0] if len(methods) == 1 else \
            f"a batch of {len(methods)} calls ({', '.join(names)})"
        text = (f"Kodi at {self.where} did not answer {what} within {self.sync.timeout:g} s; "
                "Kodi may have received it and may be carrying it out, so it was not sent "
                "again (Kodi must not get it twice)")
        if any(name.startswith("VideoLibrary.") for name in names):
            text += "; its items are looked up in Kodi before anything is sent for them again"
        return MaybeReceived(text)

    def _post(self, payload: Any, rows: bool, *, resend: bool = True) -> Any:
        """POST to /jsonrpc; the parsed answer (None for an empty one)."""
        if not rows:
            return self.http.json("POST", "/jsonrpc", json_body=payload, auth=self.auth,
                                  resend=resend)
        response = self.http.request("POST", "/jsonrpc", json_body=payload, auth=self.auth,
                                     resend=resend)
        if response is None or not response.content:
            return None
        try:
            return json.loads(response.content, object_hook=_slim)
        except ValueError:
            # The client's own words for an HTML page or broken JSON.
            return parse_json(response, self.http.base)

    def _batch_answers(self, bodies: list[dict[str, Any]], answer: Any) -> list[Any]:
        """Each call's answer, matched by its id (Kodi keeps the order, JSON-RPC does not
        promise it)."""
        count = len(bodies)
        if not isinstance(answer, list):
            said = f" ({_error_text(answer['error'])})" if isinstance(answer, dict) \
                and answer.get("error") is not None else ""
            raise ProtocolError(f"{self.where} answered a batch of {count} JSON-RPC calls "
                                f"with something that is not one answer per call{said}: "
                                "is this Kodi's web server?")
        by_id = {entry.get("id"): entry for entry in answer if isinstance(entry, dict)}
        found = []
        for body in bodies:
            if body["id"] not in by_id:
                raise ProtocolError(f"{self.where} sent no answer to {body['method']} in a "
                                    f"batch of {count} JSON-RPC calls: is this Kodi's web "
                                    "server?")
            found.append(self._answer(body["method"], by_id[body["id"]]))
        return found

    def _answer(self, method: str, answer: Any) -> Any:
        """One call's result, or its error object as a KodiRejected (returned, not raised)."""
        if answer is None:
            raise ProtocolError(f"{self.where} sent an empty answer to {method}: "
                                "is this Kodi's web server?")
        if not isinstance(answer, dict) or not ("result" in answer or "error" in answer):
            raise ProtocolError(f"{self.where} answered {method} with something that is "
                                "not JSON-RPC: is this Kodi's web server?")
        if answer.get("error") is not None:
            return KodiRejected(method, answer["error"])
        return answer["result"]

    def paged(self, method: str, key: str, id_field: str) -> Iterator[tuple[str, int]]:
        """(file, id) of every row of a whole-library listing, PAGE rows per request.

        Kodi answers `limits` {start, end} with the rows in [start, end) and the number of
        rows in `limits.total`; a page shorter than asked for is the last. (`end: 0` would
        return no rows at all.) A server that ignores the limits sends everything at once,
        which ends the listing too. Pages are not one snapshot: a listing made while Kodi's
        background job re-adds a refreshed item at the end (after a clean, in
        KodiPlayer.verify()) may miss a row between two pages; verify() looks again for
        what it misses.
        """
        start = 0
        while True:
            answer = self.call(method, {"properties": ["file"],
                                        "limits": {"start": start, "end": start + PAGE}},
                               rows=True)
            rows, total = listed_rows(self.where, method, answer, key)
            yield from listed_ids(self.where, method, rows, id_field)
            start += len(rows)
            if len(rows) < PAGE or total is None or start >= total:
                return
            del answer, rows  # the next page replaces this one, never joins it

    def wait_idle(self) -> None:
        """Wait until Kodi's video library is neither scanning nor cleaning.

        Kodi does not queue scans: one sent now would stop the running scan and drop
        itself. Bounded by the player's `scan_timeout` (each poll by the request
        `timeout`): a scan of a big new show or Kodi's own start-up scan outlasts a
        request timeout. Past it the player fails for this run (a PlayerTimeout saying
        so) and its remaining work stays queued, counted as a failed attempt.
        """
        if self.dry_run:
            return  # nothing is sent, so nothing can collide
        limit = self.config.scan_timeout
        deadline = self.clock() + limit
        delay = 0.05
        while True:
            result = self.call("XBMC.GetInfoBooleans",
                               {"booleans": ["Library.IsScanningVideo"]})
            if not isinstance(result, dict) or "Library.IsScanningVideo" not in result:
                raise ProtocolError(f"{self.where} did not say whether its library is "
                                    "scanning (XBMC.GetInfoBooleans)")
            if not result["Library.IsScanningVideo"]:
                return
            if self.clock() + delay > deadline:
                raise PlayerTimeout(
                    f"Kodi at {self.where} was still scanning its video library after "
                    f"{limit:g} s (scan_timeout): a big new show or Kodi's start-up scan may "
                    "still be running; the remaining updates stay queued for the next run")
            self.sleep(delay)
            delay = min(delay * 2, 1.0)

    def close(self) -> None:
        self.http.close()
