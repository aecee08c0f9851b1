"""Whether the tests run under CI (CI=true), where what cannot run must fail, not skip."""

from __future__ import annotations

import os


def under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
