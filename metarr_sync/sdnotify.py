"""systemd's service notifications (sd_notify), without libsystemd.

A service of `Type=notify` tells systemd through a datagram to the AF_UNIX socket named by
$NOTIFY_SOCKET: `READY=1` once it serves, `STATUS=...` a line for `systemctl status`,
`WATCHDOG=1` at least every $WATCHDOG_USEC microseconds when `WatchdogSec=` is set,
`RELOADING=1` / `STOPPING=1` around a reload or the end. A name starting with `@` is in
the abstract namespace (its first byte is NUL on the wire). Without $NOTIFY_SOCKET (not
run by systemd) every call does nothing. A failure to notify never stops the caller.
"""

from __future__ import annotations

import os
import socket


def _address() -> str | None:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        return "\0" + address[1:]
    if address.startswith("/"):
        return address
    return None  # unset, or a kind of socket (vsock) this does not speak


def notify(*fields: str) -> bool:
    """Send `fields` (`READY=1`, `STATUS=...`) as one datagram; True when it was sent.
    A field's newlines become spaces: the protocol is one field a line."""
    address = _address()
    if address is None:
        return False
    message = "\n".join(" ".join(f.splitlines()) for f in fields).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(message)
    except OSError:
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between `WATCHDOG=1` pings (half of $WATCHDOG_USEC, as sd_watchdog_enabled
    advises), or None when systemd watches no watchdog of this process."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2_000_000
