"""The one HTTP client every adapter uses: pooled session, retries, errors, redaction.

Retries use urllib3's Retry (connect errors, read timeouts, 429/5xx with Retry-After),
bounded by the player's retry_attempts and timeout. A request that must not run twice
(`resend=False`: Kodi's scans, refreshes, cleans and removals — measured on Kodi 20.1: a
second Scan stops the running one and drops itself, a second Refresh fails on the id the
first one invalidated) is retried only when it certainly never reached the player: the
connection could not be
made (refused, connect timeout, unknown host), so nothing was sent. Redirects are never
followed: a player that redirects is behind a wrong URL or base path, and following a
redirect could turn a POST into a GET or carry the token to another host.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from typing import Any, cast
from urllib.parse import urlencode

import requests
import urllib3
from requests import PreparedRequest, Response, Session
from requests.adapters import HTTPAdapter
from requests.exceptions import RequestException
from requests.hooks import default_hooks
from requests.structures import CaseInsensitiveDict
from requests.utils import requote_uri
from urllib3.util.retry import Retry

from metarr_sync.config import PlayerConfig, SyncConfig
from metarr_sync.logs import redact
from metarr_sync.players.base import (
    STOP,
    AuthFailed,
    PlayerError,
    PlayerOffline,
    PlayerTimeout,
    ProtocolError,
    Rejected,
)
from metarr_sync.version import __version__

log = logging.getLogger("metarr_sync.http")
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
#: Seconds: retries wait 0.5, 1, 2, ... (urllib3 retries the first at once), at most
#: the request timeout.
BACKOFF_FACTOR = 0.5
USER_AGENT = f"metarr-sync/{__version__}"


class MaybeReceived(PlayerTimeout):
    """A request sent with resend=False got no answer in time: the player may have
    received it (and may be carrying it out), so it was not sent again."""


class BoundedRetry(Retry):
    """urllib3's Retry, but a server's Retry-After never makes us wait past `max_wait`."""

    max_wait: float = 30.0

    def get_retry_after(self, response: Any) -> float | None:
        value = super().get_retry_after(response)
        return None if value is None else min(value, self.max_wait)

    def new(self, **kw: Any) -> BoundedRetry:
        retry = super().new(**kw)
        retry.max_wait = self.max_wait
        return retry


def make_session(player: PlayerConfig, sync: SyncConfig, *,
                 resend: bool = True) -> requests.Session:
    """A session with connection reuse and bounded retries for one player.

    `resend=False`: its requests are retried only after a failed connection (refused,
    connect timeout, unknown host: nothing was sent), never after a read timeout, a
    429/5xx answer or any other error once the request may have reached the player.
    """
    attempts = sync.retry_attempts
    retry = BoundedRetry(
        total=attempts,
        connect=attempts,
        read=attempts if resend else 0,
        status=attempts if resend else 0,
        other=0,
        redirect=0,
        status_forcelist=TRANSIENT_STATUS if resend else (),
        # Every method: what the players queue (Jellyfin's and Plex's refreshes and
        # scans, every read) runs harmlessly twice; what does not is sent with resend off.
        allowed_methods=None,
        backoff_factor=BACKOFF_FACTOR,
        backoff_max=min(sync.timeout, 10.0),
        # Without resend, a 503's Retry-After must not make urllib3 send it again either.
        respect_retry_after_header=resend,
        raise_on_status=False,
        raise_on_redirect=False,
    )
    retry.max_wait = sync.timeout
    session = requests.Session()
    # One connection per refresh in flight (concurrency), so none is opened and dropped
    # again for want of a place in the pool.
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1,
                          pool_maxsize=max(4, player.concurrency))
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    session.trust_env = False  # a proxy from the environment must not see player tokens
    if player.ca_bundle:
        session.verify = player.ca_bundle
    elif not player.verify_tls:
        session.verify = False
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return session


class HttpClient:
    """Requests to one player, with every failure mapped to the error taxonomy.

    Thread-safe for the requests an adapter sends from several threads at once (item
    refreshes, see Player.concurrently): the session's connection pool is, the request
    count is kept under a lock, and list.append (commands) is atomic. Requests that must
    not run twice (resend=False) go through a second session with connect retries only,
    made on first use.
    """

    def __init__(self, player: PlayerConfig, sync: SyncConfig, *, dry_run: bool = False,
                 headers: dict[str, str] | None = None):
        self.player = player
        self.base = player.url.rstrip("/")
        self.timeout = sync.timeout
        self.retries = sync.retry_attempts
        self.dry_run = dry_run
        self.sync = sync
        self.session = make_session(player, sync)
        if headers:
            self.session.headers.update(headers)
        self._once: requests.Session | None = None  # for resend=False, see _once_session
        self._count = 0
        self._lock = threading.Lock()
        self.commands: list[str] = []
        # What requests would make of the base URL (an international host name in IDNA,
        # a path quoted): done once here, not for every request (see _prepare).
        prepared = requests.PreparedRequest()
        prepared.prepare_url(self.base, None)
        self._url_base = prepared.url.rstrip("/") if prepared.url else self.base

    @property
    def requests(self) -> int:
        """HTTP requests sent so far (each retry of urllib3 is not counted again)."""
        return self._count

    @property
    def secrets(self) -> list[str]:
        return self.player.secrets()

    def describe(self, method: str, path: str, params: dict[str, Any] | None = None,
                 body: Any = None) -> str:
        text = f"{method} {path}"
        if params:
            text += "?" + "&".join(f"{k}={v}" for k, v in params.items())
        if body is not None:
            text += " " + json.dumps(body, ensure_ascii=False, sort_keys=True)
        return redact(text, self.secrets)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                json_body: Any = None, mutating: bool = False,
                auth: tuple[str, str] | None = None,
                resend: bool = True) -> Response | None:
        """Send one request; return the response of a 2xx answer, raise PlayerError else.

        A mutating request under --dry-run is only recorded (and None returned).
        `resend=False` for a request the player must not get twice: it is sent again only
        when the connection could not be made; a timeout after sending it, a 429/5xx
        answer or an answer that broke off is the player's error at once.
        """
        if mutating:
            self.commands.append(self.describe(method, path, params, json_body))
            if self.dry_run:
                return None
        # A stop request lets the requests on the wire finish and starts no new one (a
        # soft one lets the batch in flight finish: its check is between batches).
        STOP.check_request()
        with self._lock:
            self._count += 1
        if log.isEnabledFor(logging.DEBUG):  # describe() costs: only for -vv
            log.debug("%s %s", self.player.name, self.describe(method, path, params))
        session = self.session if resend else self._once_session()
        attempt = 0
        while True:
            try:
                # Prepared afresh for every attempt: a body is read once.
                response = session.send(
                    self._prepare(method, path, params, json_body, auth),
                    timeout=(min(self.timeout, 10.0), self.timeout), allow_redirects=False)
                break
            except requests.exceptions.RequestException as exc:
                if resend and attempt < self.retries and _broke_mid_answer(exc) \
                        and not STOP.halts_requests():
                    # urllib3's Retry covers the request and the answer's head; a
                    # connection reset (or stalled) while the body arrives gets here, and
                    # is as transient: retried with the same bounded backoff.
                    attempt += 1
                    delay = min(BACKOFF_FACTOR * 2 ** (attempt - 1), self.timeout)
                    log.debug("%s: %s broke off mid-answer; retry %d of %d in %.1f s",
                              self.player.name, method, attempt, self.retries, delay)
                    time.sleep(delay)
                    continue
                failure = self._failure(exc)
                if not resend and isinstance(failure, PlayerTimeout) \
                        and not isinstance(exc, requests.exceptions.ConnectTimeout):
                    # Sent, then no answer in time: the player may be carrying it out.
                    raise MaybeReceived(failure.message) from None
                raise failure from None
        check_status(response, self.base)
        return response

    def _once_session(self) -> Session:
        """The session for requests that must not run twice, made on first use (most
        players never send one) with the main session's headers and cookie jar."""
        with self._lock:
            if self._once is None:
                once = make_session(self.player, self.sync, resend=False)
                once.headers = self.session.headers
                once.cookies = self.session.cookies
                self._once = once
            return self._once

    def _prepare(self, method: str, path: str, params: dict[str, Any] | None,
                 json_body: Any, auth: tuple[str, str] | None) -> PreparedRequest:
        """The request Session.request would prepare, at a fraction of the CPU.

        Session.request merges the session's settings into every request and parses the
        whole URL again (urllib3's parse_url, IDNA, params); with three players' threads
        in one process, that client CPU per request decides whether a run stays bound by
        the players' latency. The session's settings here are fixed (headers, no params,
        no auth, no hooks, no proxies: make_session), the base URL is prepared once, so
        only the path, the query, the body and (when a player set any) cookies remain.
        """
        prepared = requests.PreparedRequest()
        prepared.method = method.upper()
        url = self._url_base + path
        # as requests encodes them: lists repeat the key, None values are left out
        query = urlencode([(key, item) for key, value in params.items()
                           for item in (value if isinstance(value, (list, tuple)) else (value,))
                           if item is not None]) if params else ""
        prepared.url = requote_uri(f"{url}?{query}" if query else url)
        # make_session sets text headers only (the stubs allow bytes too)
        prepared.headers = CaseInsensitiveDict(cast("dict[str, str]", self.session.headers))
        prepared.hooks = default_hooks()
        # The jar goes with the request (Session.send reads it when it meets a redirect);
        # a Cookie header only when a player set cookies, which none of them does.
        # (a private attribute of requests, hence not in its type stubs)
        prepared._cookies = self.session.cookies  # type: ignore[attr-defined]
        if self.session.cookies:
            prepared.prepare_cookies(self.session.cookies)
        prepared.prepare_body(None, None, json_body)
        if auth is not None:
            prepared.prepare_auth(auth)
        return prepared

    def _failure(self, exc: RequestException) -> PlayerError:
        """The PlayerError, in the user's words, for a request that got no usable answer."""
        if isinstance(exc, requests.exceptions.SSLError):
            return ProtocolError(
                f"TLS certificate check failed for {self.base} "
                "(set ca_bundle, or verify_tls = false for a self-signed certificate)")
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return PlayerTimeout(f"no connection to {self.base} within {self.timeout:g} s "
                                 f"(player offline?)")
        if isinstance(exc, requests.exceptions.Timeout):
            return PlayerTimeout(f"{self.base} did not answer within {self.timeout:g} s")
        if isinstance(exc, requests.exceptions.RetryError):
            return _retry_error(self.base, exc)
        if isinstance(exc, requests.exceptions.ConnectionError):
            text = str(exc)
            if "Read timed out" in text:
                # With a Retry configured, urllib3 wraps a read timeout in MaxRetryError,
                # which requests raises as ConnectionError: the player is up but hung.
                return PlayerTimeout(f"{self.base} did not answer within {self.timeout:g} s")
            if "Connection refused" in text or "Errno 111" in text:
                return PlayerOffline(f"{self.base} refused the connection (player offline?)")
            if "Name or service not known" in text or "nodename nor servname" in text \
                    or "Temporary failure in name resolution" in text:
                return PlayerOffline(f"host name of {self.base} cannot be resolved")
            if "reset" in text.lower() or "aborted" in text.lower() or "broken" in text.lower():
                return ProtocolError(f"{self.base} closed the connection mid-answer")
            return PlayerOffline(f"cannot connect to {self.base}")
        if isinstance(exc, requests.exceptions.ChunkedEncodingError):
            return ProtocolError(f"{self.base} closed the connection mid-answer")
        return ProtocolError(f"request to {self.base} failed: "
                             f"{redact(str(exc), self.secrets)}")

    def json(self, method: str, path: str, **kw: Any) -> Any:
        """Send and parse a JSON answer (never parses error bodies)."""
        response = self.request(method, path, **kw)
        if response is None:
            return None
        return parse_json(response, self.base)

    def close(self) -> None:
        self.session.close()
        if self._once is not None:
            self._once.close()


def _broke_mid_answer(exc: requests.exceptions.RequestException) -> bool:
    """The answer's head arrived, then its body broke off (reset, truncated, stalled)."""
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(exc, requests.exceptions.ConnectionError) and isinstance(
        cause, urllib3.exceptions.ReadTimeoutError)


def _retry_error(base: str, exc: requests.exceptions.RetryError) -> PlayerError:
    reason = str(exc)
    match = re.search(r"too many (\d{3}) error", reason)
    code = int(match.group(1)) if match else 0
    if code == 429:
        return PlayerError(f"{base} kept answering 429 Too Many Requests (rate limited)")
    if code == 503:
        return PlayerError(f"{base} kept answering 503 Service Unavailable (starting up "
                           "or overloaded)")
    if code:
        return PlayerError(f"{base} kept answering HTTP {code} (server error)")
    return PlayerError(f"{base} kept failing after retries")


def check_status(response: requests.Response, base: str) -> None:
    try:
        _check_status(response, base)
    except PlayerError as exc:
        # The HTTP status, for adapters that must tell one item's 404 from a 403 that
        # concerns the whole player (e.g. Jellyfin: item gone vs. token lacks rights).
        exc.status = response.status_code
        raise


def _check_status(response: requests.Response, base: str) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    if 300 <= code < 400:
        where = response.headers.get("Location", "elsewhere")
        raise ProtocolError(f"{base} redirects to {where}: wrong URL or base path?")
    if code == 401:
        raise AuthFailed(f"authentication failed at {base} (HTTP 401): check the "
                         "username/password or token")
    if code == 403:
        raise Rejected(f"{base} refused access (HTTP 403): the credentials lack the "
                       "rights needed")
    if code == 404:
        raise Rejected(f"{base} has no {response.request.path_url.split('?')[0]} "
                       "(HTTP 404): wrong URL, or not this kind of server?")
    if code == 429:
        raise PlayerError(f"{base} answered 429 Too Many Requests (rate limited)")
    if code == 503:
        raise PlayerError(f"{base} answered 503 Service Unavailable (starting up or "
                          "overloaded)")
    if code in (502, 504):
        raise PlayerError(f"{base} answered HTTP {code}: a proxy in front of the player "
                          "cannot reach it")
    if code >= 500:
        raise PlayerError(f"{base} answered HTTP {code} (server error)")
    raise Rejected(f"{base} rejected the request (HTTP {code})")


def parse_json(response: requests.Response, base: str) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        kind = response.headers.get("Content-Type", "")
        head = response.content[:200].lstrip().lower()
        if "html" in kind or head.startswith((b"<!doctype", b"<html")):
            raise ProtocolError(f"{base} answered with an HTML page instead of JSON: "
                                "wrong URL, or a proxy in the way?") from None
        raise ProtocolError(f"{base} sent malformed or truncated JSON") from None
