"""A JSON webhook on 127.0.0.1 that records what Apprise's json:// sends it.

    with Webhook() as hook:
        url = hook.apprise_url(user="alerts", password="SECRETPASS")  # json://...
        ... metarr-sync sends alerts to url ...
        assert [m["title"] for m in hook.messages] == [...]

Each POST is kept as its JSON body (Apprise's json:// sends version, title, message,
attachments and type) plus the request's path and Authorization header. `stop()` makes
it refuse connections (an alert target that is down).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Webhook:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        #: Requests since the last take(); `everything`: all of them.
        self.received: list[dict[str, Any]] = []
        self.everything: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self.port = 0

    def start(self) -> Webhook:
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    document = json.loads(body)
                except ValueError:
                    document = {"unparsed": body.decode("utf-8", "replace")}
                request = {"path": self.path, "body": document,
                           "authorization": self.headers.get("Authorization")}
                with hook.lock:
                    hook.received.append(request)
                    hook.everything.append(request)
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True, name="webhook").start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Webhook:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def apprise_url(self, *, user: str | None = None, password: str | None = None,
                    path: str = "/alerts") -> str:
        """Apprise's json:// URL of this webhook (a port that refuses once stopped)."""
        auth = f"{user}:{password}@" if user else ""
        return f"json://{auth}127.0.0.1:{self.port}{path}"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every JSON body received, in order (take() does not forget them here)."""
        with self.lock:
            return [r["body"] for r in self.everything]

    def take(self) -> list[dict[str, Any]]:
        """The bodies received since the last take() (`received` starts again empty)."""
        with self.lock:
            taken = [r["body"] for r in self.received]
            self.received.clear()
        return taken
