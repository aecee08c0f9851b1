"""Alerts: one message to the [alerts] Apprise URLs each time a player's condition changes.

After a run is recorded, the engine calls after_run(config, state, report): for `run`,
`sync` and `verify`, and for each run `watch` starts (they go through the same engine).
Each player that took part is judged: its condition is the set of problems below, in
plain words, with the command that shows more. A player whose condition gained a problem
gets one message naming what is new; one whose problems are all gone gets one
"recovered" message; anything else (the same problems again, some of them gone) sends
nothing. The condition each player's last alert told about is kept in the state
(player_alerts), so a second failing run sends nothing.

Problems (kinds, in the order a message names them):
- auth: the player is disabled after an authentication failure;
- down: the player failed as a whole (offline, timing out, a missing anchor, ...);
- held: removals held for a person (the removal guard, or a disk that cannot tell);
- failed: items failed for a person (`queue retry` once fixed);
- unverified: items delivered MAX_DELIVERIES times and never seen on the player.

A player the run did not judge (disabled in the config, interrupted, skipped in its
group) keeps its condition. A message that no URL took is not counted as told: the next
run that finds the same condition tries again.

Sending never fails the run: whatever goes wrong is logged, kept in the state for
`status` (alert_log) and returned for the command to warn about. Apprise is imported
only here, and only when a message goes out (`status` and `--version` never load it).
Every text sent, logged or returned passes through logs.redact, which knows the players'
secrets and the secret parts of the alert URLs; a URL is only ever shown as its
config.alert_url_label.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from metarr_sync.config import Config, ConfigError, alert_url_label
from metarr_sync.logs import redact
from metarr_sync.state import MAX_DELIVERIES, QueueStatus, State

log = logging.getLogger("metarr_sync.alerts")


class JudgedPlayer(Protocol):
    """What alerts read of one player's pass (player_run.PlayerResult). Protocols, so
    that the engine, which calls after_run, is not imported back from here."""

    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...  # a player_run.PlayerStatus
    @property
    def error(self) -> str | None: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def requests(self) -> int: ...


class RecordedRun(Protocol):
    """What alerts read of a recorded run (engine.RunReport)."""

    @property
    def dry_run(self) -> bool: ...
    @property
    def players(self) -> Sequence[JudgedPlayer]: ...

KINDS = ("auth", "down", "held", "failed", "unverified")
#: Short words for each kind (message titles, "recovered" messages).
WORDS = {"auth": "authentication failed", "down": "player failed",
         "held": "removals held", "failed": "items failed",
         "unverified": "items never seen on the player"}
#: Apprise's notification types (apprise.NotifyType's values).
FAILURE, WARNING, SUCCESS, INFO = "failure", "warning", "success", "info"

INSTALL_HINT = "pip install 'metarr-sync[alerts]'"


@dataclass(frozen=True)
class Problem:
    kind: str
    text: str  # what is wrong, in plain words
    command: str  # the command that shows more


@dataclass(frozen=True)
class Message:
    player: str
    title: str
    body: str
    type: str  # failure, warning, success or info


@dataclass(frozen=True)
class Delivery:
    """One message to one URL: whether it went, and if not why (secret-free)."""

    url: str  # config.alert_url_label: never the URL itself
    sent: bool
    error: str | None = None


@dataclass
class AlertsOutcome:
    """What after_run did: the messages due and how each delivery went."""

    messages: list[Message] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    #: A reason alerts could not be sent at all (apprise missing, a bug), secret-free.
    error: str | None = None

    @property
    def failures(self) -> list[str]:
        """Each failure, as a warning line says it."""
        lines = [f"alert not sent to {d.url}: {d.error}" for d in self.deliveries
                 if not d.sent]
        return lines + ([f"alerts not sent: {self.error}"] if self.error else [])


# --- apprise --------------------------------------------------------------------------


def apprise_installed() -> bool:
    """Whether `import apprise` would find it, without importing it (that costs time)."""
    import importlib.util

    try:
        return importlib.util.find_spec("apprise") is not None
    except (ImportError, ValueError):
        return False


def require_apprise(config: Config) -> None:
    """ConfigError (exit 3) when [alerts] urls are set but apprise is not installed."""
    if config.alerts.urls and not apprise_installed():
        raise ConfigError.one(
            f"{config.path}: [alerts] urls are set, but the apprise package that sends "
            f"alerts is not installed: {INSTALL_HINT} (or remove [alerts] from the file)")


class _Capture(logging.Handler):
    """Apprise's log lines while a message is sent: each goes on to metarr-sync's own
    log (redacted there), and the warnings and errors say why a delivery failed."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = redact(record.getMessage())
        except Exception:  # noqa: BLE001 - a bad log call of apprise's must not matter
            return
        if record.levelno >= logging.WARNING:
            self.problems.append(text)
        log.log(min(record.levelno, logging.INFO) if record.levelno >= logging.WARNING
                else logging.DEBUG, "apprise: %s", text)


@contextmanager
def _captured() -> Iterator[_Capture]:
    """Apprise's logger, for the time of one delivery, writes only to a _Capture: never
    to Python's last-resort handler (stderr, unredacted)."""
    logger = logging.getLogger("apprise")
    handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
    capture = _Capture()
    logger.handlers = [capture]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if log.isEnabledFor(logging.DEBUG) else logging.INFO)
    try:
        yield capture
    finally:
        logger.handlers = handlers
        logger.propagate = propagate
        logger.setLevel(level)


def send(urls: Sequence[str], title: str, body: str, kind: str = INFO) -> list[Delivery]:
    """Send one message to each URL; how each delivery went. Never raises for a failed
    delivery; texts and causes are redacted, URLs shown by their labels."""
    try:
        import apprise
    except ImportError as exc:
        why = f"the apprise package cannot be imported ({redact(str(exc))}): {INSTALL_HINT}"
        return [Delivery(alert_url_label(url), False, why) for url in urls]
    title, body = redact(title), redact(body)
    deliveries = []
    for url in urls:
        label = alert_url_label(url)
        with _captured() as capture:
            try:
                target = apprise.Apprise()
                if not target.add(url):
                    deliveries.append(Delivery(label, False, (
                        "Apprise does not accept this URL (check its scheme and parts)")))
                    continue
                sent = bool(target.notify(body=body, title=title, notify_type=kind))
            except Exception as exc:  # noqa: BLE001 - a plugin's bug fails this URL only
                deliveries.append(Delivery(label, False, f"apprise failed: {redact(repr(exc))}"))
                continue
        if sent:
            log.info("alert sent to %s: %s", label, title)
            deliveries.append(Delivery(label, True))
        else:
            why = "; ".join(capture.problems[-2:]) or "Apprise did not say why"
            log.warning("alert not sent to %s: %s", label, why)
            deliveries.append(Delivery(label, False, why))
    return deliveries


# --- conditions -----------------------------------------------------------------------


def problems_of(result: JudgedPlayer, state: State, before: str = ""
                ) -> list[Problem] | None:
    """The player's problems after its pass (`before`: its condition so far); None when
    the pass says nothing about them (not tried: disabled in the config, interrupted,
    skipped in its group). Statuses are player_run.PlayerStatus values (StrEnum)."""
    name = result.name
    reason = state.disabled_reason(name)
    if result.status in ("interrupted", "skipped") or (
            result.status == "disabled" and not reason):
        return None
    found: list[Problem] = []
    if reason:
        found.append(Problem("auth", f"{name} is disabled after an authentication failure "
                             f"({reason}); its work is kept. Fix its credentials, then "
                             "re-enable it with the command below.",
                             f"metarr-sync players test {name}"))
    elif result.status == "failed" and result.error_kind:
        found.append(Problem("down", f"{name} failed: {result.error or result.error_kind}. "
                             "Its work stays queued for the next run.",
                             f"metarr-sync players test {name}"))
    elif (result.status == "synced" and not result.requests and not result.error
          and state.last_pass_failed(name)):
        # Nothing to do, so not contacted (`verify` with nothing awaiting it, a `sync` of
        # other items) since its last pass failed: whether it works again is not known
        # yet, so what was said about that stands.
        found += [Problem(kind, f"{name}: {WORDS[kind]} (not tried again yet)",
                          f"metarr-sync players test {name}")
                  for kind in ("auth", "down") if kind in before.split(",")]
    facts = state.alert_facts(name)
    for status, kind, words in (
            (QueueStatus.HELD, "held", "removal(s) held, not sent"),
            (QueueStatus.FAILED, "failed", "item(s) failed and need a person"),
            (QueueStatus.UNVERIFIED, "unverified",
             f"item(s) delivered {MAX_DELIVERIES} times but never seen on the player")):
        if status in facts:
            count, cause = facts[status]
            found.append(Problem(kind, f"{count} {words} on {name}"
                                 + (f"; the first: {cause}" if cause else "") + ".",
                                 f"metarr-sync queue list --status {status.value} "
                                 f"--player {name}"))
    return found


def condition(problems: Sequence[Problem]) -> str:
    """The stored form of a condition: its kinds in KINDS order, comma-separated."""
    kinds = {p.kind for p in problems}
    return ",".join(k for k in KINDS if k in kinds)


def message_for(player: str, before: str, problems: Sequence[Problem]) -> Message | None:
    """The message a change from condition `before` to `problems` calls for, if any."""
    old = {k for k in before.split(",") if k}
    new = [p for p in problems if p.kind not in old]
    if new:
        kind = FAILURE if any(p.kind in ("auth", "down") for p in new) else WARNING
        title = f"metarr-sync: {player}: " + ", ".join(WORDS[p.kind] for p in new)
        body = "\n".join(f"{p.text}\nMore: {p.command}" for p in new)
        return Message(player, title, body, kind)
    if old and not problems:
        was = ", ".join(WORDS[k] for k in KINDS if k in old)
        return Message(player, f"metarr-sync: {player}: recovered",
                       f"{player} recovered: nothing is wrong with it any more (before: "
                       f"{was}).\nMore: metarr-sync status", SUCCESS)
    return None


def after_run(config: Config, state: State, report: RecordedRun) -> AlertsOutcome:
    """Send the alerts a recorded run calls for, and remember what each player's alert
    told; never raises (a failed alert never fails a run)."""
    outcome = AlertsOutcome()
    urls = config.alerts.url_values
    if not urls or report.dry_run:
        return outcome
    try:
        _after_run(urls, state, report, outcome)
    except Exception as exc:  # noqa: BLE001 - alerts must never fail the run
        log.exception("alerts failed")
        outcome.error = f"internal error: {redact(repr(exc))} (this is a bug)"
        _keep_error(state, outcome.error)
    return outcome


def _after_run(urls: Sequence[str], state: State, report: RecordedRun,
               outcome: AlertsOutcome) -> None:
    told = state.alert_conditions()
    for result in report.players:
        before = told.get(result.name, "")
        problems = problems_of(result, state, before)
        if problems is None:
            continue
        now = condition(problems)
        message = message_for(result.name, before, problems)
        if message is None:
            if now != before:  # some problems went, others stay: nothing to say
                state.set_alert_condition(result.name, now)
            continue
        outcome.messages.append(message)
        deliveries = send(urls, message.title, message.body, message.type)
        outcome.deliveries += deliveries
        failed = [d for d in deliveries if not d.sent]
        if failed:
            _keep_error(state, "; ".join(f"{d.url}: {d.error}" for d in failed))
        if len(failed) < len(deliveries):
            state.record_alert_delivery(None)
            state.set_alert_condition(result.name, now)
        # Else no URL took it: the next run with the same condition tries again.


def _keep_error(state: State, error: str) -> None:
    try:
        state.record_alert_delivery(redact(error))
    except Exception:  # noqa: BLE001 - the state is the run's; its error shows elsewhere
        log.exception("the alert error could not be kept in the state")


def test_message() -> tuple[str, str]:
    """Title and body of `metarr-sync alerts test`."""
    import socket

    return ("metarr-sync: test alert",
            f"This is a test alert from metarr-sync on {socket.gethostname()}: alerts "
            "reach you here. Players that fail, are disabled, or leave items for a person "
            "are reported here once, and once more when they recover.")
