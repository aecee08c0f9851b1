"""The benchmark (tests/bench/bench_sync.py) keeps working: a tiny scenario, budgets off.

Not a timing test. It checks that the benchmark runs end to end against the installed
`metarr-sync`, writes every figure issue 9 names, and that each fake player received
exactly the lower bound of requests the benchmark computes for it: at this size (one batch
or two per kind) any request beyond the bound is a real regression (a refresh sent twice,
a listing read again, a scan of a folder already scanned), not batching overhead. For Kodi
the bound counts JSON-RPC calls: its look-ups, refreshes and removals travel several to an
HTTP request (a JSON-RPC batch), so its HTTP requests must be fewer.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parent / "bench" / "bench_sync.py"
PLAYERS = ("kodi", "jellyfin", "plex")


def test_the_benchmark_runs_tiny_and_sends_exactly_the_lower_bound(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--scale", "0.01", "--latency", "0",
         "--growth", "30000,100000", "--naive-sample", "20", "--startup-repeats", "1",
         "--small-sizes", "", "--no-budgets", "--out", str(out),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    main = found["main"]
    assert found["library"]["rows"] == 500 + 20 + 2000
    assert main["changed"] == 300 and main["collect_plan"]["changed"] == 300

    # Requests (Kodi: calls) per player next to the lower bound: equal, endpoint by
    # endpoint in sum.
    for name in PLAYERS:
        figures = main["requests"][name]
        assert figures["sent"] == figures["lower_bound"], (name, figures["bound_detail"],
                                                           figures["by_endpoint"])
        assert sum(figures["by_endpoint"].values()) == figures["sent"]
        if name != "kodi":
            assert figures["http_requests"] == figures["sent"]
        assert main["run"]["players"][name]["status"] == "synced"
        assert main["run"]["players"][name]["synced"] == 300
    # Kodi batched: every refresh of a batch in one POST, so far fewer HTTP requests than
    # calls; the scans and the idle checks before them still went one by one.
    kodi = main["requests"]["kodi"]
    refreshes = kodi["bound_detail"]["refreshes"]
    assert refreshes > 100
    assert kodi["http_requests"] <= kodi["sent"] - refreshes + 10, kodi
    # The naive reference: one request per item and player.
    assert main["naive"]["requests"] == 3 * 300
    assert main["naive"]["requests_ratio"] == round(
        900 / sum(main["requests"][n]["sent"] for n in PLAYERS), 3)
    assert main["naive"]["wall_ratio"] > 0
    # Parallel players, collect and plan, memory, start-up.
    assert main["alone"]["player"] in PLAYERS and main["alone"]["ratio"] > 0
    for key in ("cpu_s", "collect_cpu_s", "plan_cpu_s", "peak_rss_mb"):
        assert main["collect_plan"][key] >= 0
    assert 10 < main["run"]["peak_rss_mb"] < 1000 and main["run"]["cpu_s"] > 0
    startup = found["startup"]
    assert min(startup["typer_s"], startup["version_s"], startup["status_s"]) > 0
    assert startup["status_imports_requests"] is False
    assert startup["status_imports_adapters"] == []
    # How cost grows: two sizes as dry runs, each planning exactly its lower bound (sent
    # listings plus the refreshes and scans recorded instead of sent), and the core's
    # collect, plan and record measured apart.
    assert [p["changed"] for p in found["growth"]] == [300, 1000]
    for point in found["growth"]:
        for name in PLAYERS:
            figures = point["requests"][name]
            assert figures["planned"] == figures["lower_bound"], (name, figures)
            assert 0 < figures["sent"] < figures["planned"]  # only the listings went out
        assert point["core"]["changed"] == point["changed"]
        assert point["core"]["record_cpu_s"] > 0
        assert point["wall_per_item_ms"] > 0 and point["core_cpu_per_item_ms"] > 0
    # Every budget is evaluated and reported (not enforced here).
    names = [b["name"] for b in found["budgets"]]
    assert any(n.startswith("requests kodi") for n in names)
    assert {"peak RSS of the run (MB)", "start-up status / import typer",
            "whole benchmark (s)"} <= set(names)
    assert "lower bound" in done.stdout and "budgets:" in done.stdout


def test_small_runs_cost_what_they_change_not_what_the_library_holds(tmp_path: Path
                                                                      ) -> None:
    """Issue 19's section, at 2,520 and 25,200 items: with nothing changed no player is
    contacted; one changed movie or episode costs each player the same few requests at
    both sizes (and its verification too)."""
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(BENCH), "--small-only", "--small-sizes", "2500,25000",
         "--latency", "0", "--no-budgets", "--out", str(out),
         "--workdir", str(tmp_path / "work")],
        capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(out.read_text())
    assert "main" not in found
    small = found["small_runs"]
    assert small["sizes"] == [500 + 20 + 2000, 5000 + 200 + 20000]
    points = small["points"]

    def requests(step: str, name: str) -> list[dict]:
        return [p[step]["requests"][name] for p in points]

    for point in points:
        for step in ("first_run", "one_movie", "one_episode"):
            changed = 2 if step == "first_run" else 1
            for name in PLAYERS:
                player = point[step]["players"][name]
                assert (player["status"], player["items"], player["synced"]) == (
                    "synced", changed, changed), (point["rows"], step, name, player)
    for name in PLAYERS:
        for got in requests("nothing_changed", name):
            assert got["sent"] == got["http_requests"] == 0, (name, got)
    for name in PLAYERS:
        for step in ("one_movie", "one_episode", "one_movie_verify", "one_episode_verify"):
            small_size, big = requests(step, name)
            assert small_size["sent"] == big["sent"], (name, step, small_size, big)
            assert small_size["http_requests"] == big["http_requests"], (name, step)
            assert small_size["by_endpoint"] == big["by_endpoint"], (name, step)
            if not step.endswith("_verify"):
                assert 0 < big["http_requests"] <= 10, (name, step, big)
        assert small["players"][name]["small_run_capable"] is True
    # Jellyfin and Plex bring their indexes up to date with one filtered listing
    # (minDateLastSaved, updatedAt), Kodi looks the movie up by its folder: none lists a
    # library.
    for got in requests("one_movie", "jellyfin"):
        assert got["by_endpoint"]["GET /Items"] == 1, got
    for got in requests("one_movie", "plex"):
        assert got["by_endpoint"]["GET /library/sections/{key}/all"] == 1, got
    for got in requests("one_movie", "kodi"):
        assert got["by_endpoint"]["VideoLibrary.GetMovies"] <= 2, got
    assert "small runs (issue 19)" in done.stdout and "small-run capable" in done.stdout
