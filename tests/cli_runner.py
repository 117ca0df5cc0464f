"""Run the ``movedisk`` command line as a user would: a separate process, a clean environment."""

from __future__ import annotations

import os
import subprocess
import sys


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``movedisk ARGS`` without the caller's PG* and MOVEDISK_* variables, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "MOVEDISK_"))}
    return subprocess.run(
        [sys.executable, "-m", "movedisk.cli", *args],
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=120,
    )
