"""``movedisk agent ...`` subcommands (filled in with the agent)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """No agent subcommands yet."""
