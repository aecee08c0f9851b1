"""`alerts`: try the [alerts] Apprise URLs (the alerts themselves go out after runs:
see metarr_sync/alerts.py)."""

from __future__ import annotations

import typer

from metarr_sync.cli import common, options
from metarr_sync.cli.options import JsonOpt

ALERTS_EXIT_HELP = (
    "Exit codes: 0 every URL took the test message; 1 at least one did not (each URL's "
    "line says why); 3 no [alerts] urls, the configuration cannot be read, or the apprise "
    "package is not installed (pip install 'metarr-sync[alerts]')."
)

app = options.command_group("Alerts to Apprise URLs ([alerts] urls): test them.")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="alerts")


@app.command("test", epilog=ALERTS_EXIT_HELP)
def test_command(ctx: typer.Context, json_out: JsonOpt = False) -> None:
    """Send a test message to every [alerts] URL and say, per URL, whether it went
    (URLs are shown with their secrets masked)."""
    from metarr_sync import alerts

    config = common.load(ctx)
    if not config.alerts.urls:
        raise common.ConfigError.one(
            f"{config.path}: no [alerts] urls to test: add urls = [\"json://host:port/path\"]"
            " (any Apprise URL) to an [alerts] table")
    alerts.require_apprise(config)
    title, body = alerts.test_message()
    deliveries = alerts.send(config.alerts.url_values, title, body, alerts.INFO)
    failed = sum(not d.sent for d in deliveries)
    if json_out:
        common.dump_json({"urls": [{"url": d.url, "sent": d.sent, "error": d.error}
                                   for d in deliveries],
                          "sent": len(deliveries) - failed, "failed": failed})
    else:
        for number, delivery in enumerate(deliveries, 1):
            common.say(f"{number}. {delivery.url}: "
                       + ("sent" if delivery.sent else f"NOT sent: {delivery.error}"))
        if failed:
            common.err(f"metarr-sync: {failed} of {len(deliveries)} alert URL(s) did not "
                       "take the test message")
    raise typer.Exit(common.EXIT_FAILED if failed else common.EXIT_OK)
