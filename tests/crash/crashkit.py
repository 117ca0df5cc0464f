"""What a crash-matrix cell uses besides its fixtures: the domains' files put back as the
seeded storage has them, and each cell's result recorded (for the table at the end of the
session and for ``MOVEDISK_CRASH_REPORT``). A module of its own, not conftest: a test importing
``conftest`` by name gets whichever conftest was imported first when several test directories
are collected together."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from agenttools import AgentProcess

RESULTS: list[dict[str, Any]] = []


def restore_storage(agent: AgentProcess) -> None:
    """The domains' files as the seeded storage has them (hard links and holes kept)."""
    seeded = agent.seeded  # type: ignore[attr-defined]
    domains = sorted(p.name for p in (seeded / "domains").iterdir())
    for sd in domains:
        shutil.rmtree(agent.root / "domains" / sd, ignore_errors=True)
    subprocess.run(["cp", "-a", *[str(seeded / "domains" / sd) for sd in domains],
                    str(agent.root / "domains")], check=True)


def record(result: dict[str, Any]) -> None:
    RESULTS.append(result)
    path = os.environ.get("MOVEDISK_CRASH_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(result) + "\n")
