"""Run one command and write its wall time, CPU time and peak memory as JSON.

    python measure.py RESULT.json -- metarr-sync run --json

Why a launcher: Linux carries a process's peak RSS across fork and exec, so a command
started straight from the benchmark (which holds three fake players' libraries, several
hundred MB) would report the benchmark's size as its own. Started from this small
process, the child's rusage (os.wait4) is its own: peak RSS, user and system CPU.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: measure.py RESULT.json -- COMMAND [ARG...]", file=sys.stderr)
        return 2
    result, command = argv[0], argv[2:]
    started = time.perf_counter()
    child = subprocess.Popen(command)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is in KiB on Linux, in bytes on macOS.
    peak = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    with open(result, "w", encoding="utf-8") as out:
        json.dump({"wall_s": wall, "user_s": usage.ru_utime, "sys_s": usage.ru_stime,
                   "cpu_s": usage.ru_utime + usage.ru_stime, "peak_rss_mb": peak / 2**20,
                   "exit_code": child.returncode}, out)
    return child.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
