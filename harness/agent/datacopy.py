"""Moving bytes: sparse-aware kernel copies, checksums, zeroing.

Checksum ("crc32-4m"): the file is cut into 4 MiB blocks of its logical content;
each block's CRC-32 (zlib) is taken, and the checksum is the SHA-256 of the
list of block CRCs. A block that is entirely a hole is known to be zeros, so
its CRC comes from a cache without reading it: the checksum does not depend on
how sparse a file is, and costs a read only of the blocks that hold data.
CRC-32 runs at ~4 GB/s here, SHA-256 at ~1.3 GB/s, so a full SHA-256 would
slow the copy down by more than the 20% the benchmark allows; CRC-32 per 4 MiB
block detects every corruption a copy is likely to make (torn, shifted,
zeroed or truncated ranges). It is a verification, not a signature.

For a qcow2 volume, ``checksum`` is this same crc32-4m taken over the volume's own layer
as a raw disk (images.layer_checksum); ``raw_checksum`` is always the file's bytes.

Copy (``copy_sparse``, used by ``agent import``; volumes themselves are copied by
qemu-img convert, see images.py): the source's data extents (SEEK_DATA / SEEK_HOLE) are copied with
``os.copy_file_range`` in chunks (falling back to ``os.sendfile``); holes stay
holes. A second thread computes the destination's checksum behind the copy,
reading blocks as soon as they are written (from the page cache), so that
the verification costs little more than the copy itself on two cores; it reads
the blocks through a shared mapping (no copy to user space), and the copying
thread joins in hashing the last blocks once its copy is done.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import random
import struct
import threading
import zlib
from collections.abc import Callable
from functools import lru_cache

BLOCK = 4 << 20
CHUNK = 16 << 20
ALGORITHM = "crc32-4m"

Extents = list[tuple[int, int]]


def data_extents(fd: int, size: int) -> Extents:
    """The [start, end) ranges of ``fd`` that hold data, in order."""
    out: Extents = []
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos
                break
            raise
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        if end > start:
            out.append((start, end))
        pos = end
    return out


def data_bytes(extents: Extents) -> int:
    return sum(e - s for s, e in extents)


@lru_cache(maxsize=8)
def _zero_crc(length: int) -> int:
    return zlib.crc32(bytes(length))


class BlockHasher:
    """Computes the checksum of a file whose data extents are known, block by block.

    ``advance(offset)`` says that every byte below ``offset`` is final; a hasher
    thread hashes the blocks below it as they become final (reading them through
    a shared read-only mapping, without copying). ``result()`` waits for the end,
    and its caller helps hash the remaining blocks, so that both cores finish the
    work together.
    """

    def __init__(self, path: str, size: int, extents: Extents) -> None:
        self.path = path
        self.size = size
        self.done_upto = 0
        self.failed = False
        self.cond = threading.Condition()
        self.nblocks = (size + BLOCK - 1) // BLOCK
        self.has_data = [False] * self.nblocks
        for s, e in extents:
            for b in range(s // BLOCK, (e - 1) // BLOCK + 1):
                self.has_data[b] = True
        self.crcs: list[int | None] = [None] * self.nblocks
        self.next_block = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._work, name="hasher", daemon=True)

    def start(self) -> BlockHasher:
        self.thread.start()
        return self

    def advance(self, offset: int) -> None:
        with self.cond:
            self.done_upto = offset
            self.cond.notify_all()

    def abort(self) -> None:
        with self.cond:
            self.failed = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join()

    def _claim(self) -> int | None:
        """The next block to hash once it is final; None when there is none left."""
        with self.cond:
            while True:
                if self.failed or self.next_block >= self.nblocks:
                    return None
                b = self.next_block
                end = min(self.size, (b + 1) * BLOCK)
                if not self.has_data[b] or self.done_upto >= end:
                    self.next_block += 1
                    return b
                self.cond.wait()

    def _work(self) -> None:
        view: memoryview | None = None
        mapping: mmap.mmap | None = None
        try:
            while (b := self._claim()) is not None:
                start = b * BLOCK
                length = min(BLOCK, self.size - start)
                if not self.has_data[b]:
                    self.crcs[b] = _zero_crc(length)
                    continue
                if view is None:
                    with open(self.path, "rb") as f:
                        mapping = mmap.mmap(f.fileno(), self.size, prot=mmap.PROT_READ)
                    view = memoryview(mapping)
                self.crcs[b] = zlib.crc32(view[start : start + length])
        except BaseException as exc:  # noqa: BLE001 - reported by result()
            self.error = exc
            with self.cond:
                self.failed = True
                self.cond.notify_all()
        finally:
            if view is not None:
                view.release()
            if mapping is not None:
                mapping.close()

    def result(self) -> str:
        self._work()  # help the thread with the blocks left
        self.thread.join()
        if self.error is not None:
            raise self.error
        if any(c is None for c in self.crcs):
            raise OSError(errno.EIO, f"checksum of {self.path} was not completed")
        return format_checksum([c for c in self.crcs if c is not None])


WORKERS = min(2, os.cpu_count() or 1)
PARALLEL_MIN_BLOCKS = 8  # fewer blocks with data than this: one thread is as quick


def each_block(fn: Callable[[int], None], blocks: range, data_blocks: int) -> None:
    """``fn(b)`` for every block ``b``, on WORKERS threads when ``data_blocks`` (how many of
    them hold data to read) is worth it: zlib.crc32 releases the GIL on large buffers, so
    the cores hash in parallel. The first error is raised once every thread has stopped."""
    if WORKERS < 2 or data_blocks < PARALLEL_MIN_BLOCKS:
        for b in blocks:
            fn(b)
        return
    todo = iter(blocks)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        while True:
            with lock:
                b = None if errors else next(todo, None)
            if b is None:
                return
            try:
                fn(b)
            except BaseException as exc:  # noqa: BLE001 - raised below, in the caller
                with lock:
                    errors.append(exc)
                return

    helpers = [threading.Thread(target=work, name="hash", daemon=True) for _ in range(WORKERS - 1)]
    for t in helpers:
        t.start()
    work()
    for t in helpers:
        t.join()
    if errors:
        raise errors[0]


def format_checksum(crcs: list[int]) -> str:
    digest = hashlib.sha256(struct.pack(f">{len(crcs)}I", *crcs)).hexdigest()
    return f"{ALGORITHM}:{digest}"


QCOW2_MAGIC = b"QFI\xfb"


def checksum(path: str) -> str:
    """The checksum of the volume at ``path`` as its ``.meta`` records it: for a qcow2 image
    the checksum of its own layer (images.layer_checksum: the same for a copy made by
    qemu-img convert, whatever its byte layout), for any other file that of its bytes."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == QCOW2_MAGIC:
        from pathlib import Path

        from .images import COW, layer_checksum

        return layer_checksum(Path(path), COW)[0]
    return raw_checksum(path)


def raw_checksum(path: str) -> str:
    """The checksum of the file's bytes at ``path`` (reads only the blocks holding data)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        extents = data_extents(fd, size)
    finally:
        os.close(fd)
    hasher = BlockHasher(path, size, extents)
    hasher.advance(size)
    return hasher.start().result()


# A chunk hook gets (bytes about to be copied) and returns how many bytes may be
# copied in the next chunk (at most that many; it may sleep, raise or exit).
ChunkHook = Callable[[int], int]


def _copy_range(src: int, dst: int, pos: int, n: int) -> int:
    try:
        return os.copy_file_range(src, dst, n, pos, pos)
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
    os.lseek(dst, pos, os.SEEK_SET)
    return os.sendfile(dst, src, pos, n)


def copy_sparse(
    src_path: str,
    dst_path: str,
    on_chunk: ChunkHook | None = None,
    on_progress: Callable[[int], None] | None = None,
    chunk: int = CHUNK,
) -> str:
    """Copy ``src_path`` to a new ``dst_path`` keeping holes; return the copy's checksum.

    ``on_chunk(n)`` is called before each chunk and may shrink it, delay it, or
    raise to stop the copy; ``on_progress(n)`` after each chunk with its size.
    """
    src = os.open(src_path, os.O_RDONLY)
    try:
        size = os.fstat(src).st_size
        extents = data_extents(src, size)
        dst = os.open(dst_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        hasher = BlockHasher(dst_path, size, extents)
        try:
            os.ftruncate(dst, size)
            hasher.start()
            for start, end in extents:
                hasher.advance(start)
                pos = start
                while pos < end:
                    n = min(chunk, end - pos)
                    if on_chunk is not None:
                        n = max(1, min(n, on_chunk(n)))
                    k = _copy_range(src, dst, pos, n)
                    if k <= 0:
                        raise OSError(errno.EIO, f"source ended early at {pos}: {src_path}")
                    pos += k
                    hasher.advance(pos)
                    if on_progress is not None:
                        on_progress(k)
            hasher.advance(size)
        except BaseException:
            hasher.abort()
            raise
        finally:
            os.close(dst)
        return hasher.result()
    finally:
        os.close(src)


def zero_data(path: str, chunk: int = 4 << 20) -> int:
    """Overwrite every data extent of ``path`` with zeros (VDSM's postZero); bytes written."""
    fd = os.open(path, os.O_WRONLY)
    try:
        size = os.fstat(fd).st_size
        rfd = os.open(path, os.O_RDONLY)
        try:
            extents = data_extents(rfd, size)
        finally:
            os.close(rfd)
        zeros = bytes(chunk)
        written = 0
        for s, e in extents:
            pos = s
            while pos < e:
                n = os.pwrite(fd, zeros[: min(chunk, e - pos)], pos)
                pos += n
                written += n
        os.fsync(fd)
        return written
    finally:
        os.close(fd)


def write_content(
    path: str,
    size: int,
    extents: Extents | None = None,
    seed: int = 0,
    content: bytes | None = None,
) -> None:
    """Create a volume file of ``size`` bytes: ``content`` at offset 0, or pseudo-random
    data (from ``seed``) in ``extents``, holes elsewhere. Every written piece starts with
    its seed and MiB number stamped on a random 1 MiB pattern, so that a misplaced
    block shows."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        os.ftruncate(fd, size)
        if content is not None:
            os.pwrite(fd, content, 0)
        rng = random.Random(seed)
        pattern = rng.randbytes(1 << 20)
        for s, e in extents or []:
            pos = s
            while pos < e:
                block = pos >> 20
                off = pos & ((1 << 20) - 1)
                n = min((1 << 20) - off, e - pos)
                stamp = struct.pack(">QQ", seed, block)
                data = bytearray(pattern[off : off + n])
                data[: min(16, n)] = stamp[: min(16, n)]
                os.pwrite(fd, data, pos)
                pos += n
    finally:
        os.close(fd)
