"""The verification of a chain copied to another domain (Image.move), volume by volume.

Each volume is verified as soon as its copy is durable (qemu-img convert, then fsync), in
a worker thread, while the next volume is copied; the task waits only for the last one.
The copy was written through the page cache (images.convert_args) and fsynced, so the
verification reads the pages the fsync has just written out, not the device again.

What a verified copy guarantees, before any of its volumes is LEGAL:

- every copied qcow2 volume passes ``qemu-img check`` (its tables and refcounts agree);
- every volume's own layer, read back from the copy (images.layer_checksum), has the
  checksum recorded for the source's volume when that was written: a byte changed, lost,
  shifted or zeroed by the copy, by the source since its checksum was taken, or by anyone
  writing the copy before it is verified, shows (CRC-32 per 4 MiB block: a corruption
  goes unseen with a chance of 2^-32 per corrupted block);
- every volume has its source's shape (images.same_shape): the same virtual size, backing
  file name and format, the backing file being the chain's volume below it (its
  metadata's parent), and the same ranges answered by the layer itself (data or zero
  clusters). A chain's guest view at an offset is that of the topmost layer answering for
  it (zeros for a base), so equal shapes and equal layer checksums of every volume, the
  base included (a template's volume linked on the destination too), mean the guest sees
  the same bytes through both chains, by induction from the base up: what ``qemu-img
  compare`` would read both chains to show. So
  ``qemu-img compare`` runs only when a shape cannot be shown equal (a table this agent
  does not read, or a layout the copy did not keep); it decides then, as it always did.

What it does not catch: a device that stores other bytes than the page cache handed it
(the reads come from the page cache right after the fsync). That is what the engine's
Image.verify before phase 3 and before deleting the source is for, and what a scrub
(``movedisk agent ls --verify``) finds once the pages have left the cache.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

from . import images
from .errors import ImageVerificationError
from .layout import BLANK_UUID


def verify_volume(path: Path, fmt: str, expected: str | None, what: str,
                  **ids: Any) -> tuple[float, float]:
    """Re-read one volume: ``qemu-img check`` of a qcow2 one, then its layer checksum
    (images.layer_checksum) against ``expected``. ImageVerificationError (484) naming the
    volume as ``what``, with ``ids``, on a difference; else the seconds the check and the
    checksum took. The one re-read of a volume, for a copy (CopyVerifier) and for
    Image.verify alike."""
    t0 = time.monotonic()
    if fmt == images.COW:
        report = images.check(path)
        if not report["ok"]:
            raise ImageVerificationError(
                f"Image verification failed: qemu-img check of {what}: "
                f"{report.get('check-errors', report.get('error'))} errors, "
                f"{report.get('leaks', 0)} leaks", check=report, **ids)
    t1 = time.monotonic()
    got, _ = images.layer_checksum(path, fmt)
    if got != expected:
        raise ImageVerificationError(
            f"Image verification failed: {what} has checksum {got}, expected {expected}",
            checksum=got, expected=expected, **ids)
    return t1 - t0, time.monotonic() - t1


class CopyVerifier:
    """Verifies the volumes of one chain copy; use as a context manager (leaving it, on an
    error too, waits for the worker: nothing reads the copy after the task ends)."""

    def __init__(self, src_dir: Path, dst_dir: Path, dst: str) -> None:
        self.src_dir, self.dst_dir, self.dst = src_dir, dst_dir, dst
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="verify")
        self.jobs: list[Future[None]] = []
        self.lock = threading.Lock()
        self.took = {"check": 0.0, "checksum": 0.0, "shape": 0.0, "compare": 0.0,
                     "verify_wait": 0.0}
        self.unproven: list[tuple[str, str]] = []  # (volume, why its shape is not shown equal)

    def __enter__(self) -> CopyVerifier:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for job in self.jobs:
            job.cancel()
        self.pool.shutdown(wait=True)

    def add(self, vol: str, meta: dict[str, Any]) -> None:
        """Verify volume ``vol`` of the copy (its data durable) against ``meta``, the
        source's metadata; raises here a failure of a volume submitted earlier."""
        self.raise_failed()
        self.jobs.append(self.pool.submit(self._verify, vol, meta))

    def raise_failed(self) -> None:
        for job in self.jobs:
            if job.done() and not job.cancelled() and job.exception() is not None:
                job.result()

    def wait(self, leaf: str, leaf_fmt: str) -> dict[str, float]:
        """Wait for every volume's verification; ``qemu-img compare`` of the chain ending in
        ``leaf`` when a shape was not shown equal. The seconds each part took."""
        t0 = time.monotonic()
        for job in self.jobs:
            job.result()
        if self.unproven:
            t1 = time.monotonic()
            same, words = images.compare(self.src_dir / leaf, self.dst_dir / leaf, leaf_fmt,
                                         leaf_fmt)
            self.took["compare"] = time.monotonic() - t1
            if not same:
                raise ImageVerificationError(
                    f"Image verification failed: qemu-img compare of the chain ending in "
                    f"{leaf}: {words}", volUUID=leaf)
        self.took["verify_wait"] = time.monotonic() - t0
        return dict(self.took)

    def _verify(self, vol: str, meta: dict[str, Any]) -> None:
        fmt = meta.get("format", images.RAW)
        path = self.dst_dir / vol
        check_s, checksum_s = verify_volume(path, fmt, meta.get("checksum"),
                                            f"volume {vol} copied to {self.dst}", volUUID=vol)
        t2 = time.monotonic()
        parent = meta.get("parent", BLANK_UUID)
        why = images.same_shape(self.src_dir / vol, path, fmt,
                                None if parent in (None, BLANK_UUID) else parent)
        with self.lock:
            self.took["check"] += check_s
            self.took["checksum"] += checksum_s
            self.took["shape"] += time.monotonic() - t2
            if why is not None:
                self.unproven.append((vol, why))
