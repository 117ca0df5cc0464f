"""What the engine reports while it works. The engine never prints: it calls ``on_event``
with these, and the command line renders them (a progress bar, one line per phase)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    kind: str  # "phase" (a stage reached), "progress" (bytes copied), "info", "warning"
    command_id: str
    message: str = ""
    stage: str = ""
    bytes_done: int = 0
    bytes_total: int = 0
    seconds: float = 0.0  # since the copy started (progress events)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Bytes per second so far (progress events)."""
        return self.bytes_done / self.seconds if self.seconds > 0 else 0.0

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate (progress events), if known."""
        if self.rate <= 0 or self.bytes_total <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.rate)


EventSink = Callable[[Event], None]


def ignore(_event: Event) -> None:
    """The default sink."""
