"""Disk images through qemu-img and qemu-io, as VDSM handles them on file domains.

A volume is a raw file or a qcow2 image. A qcow2 volume above another names its
parent as backing file by the parent's volume id, relative to the image group's
directory (a template's volume is hard-linked into every image group based on it),
so a chain copied to another domain needs no rewriting: ``qemu-img convert -B
<parent id>`` run into the destination's image group resolves there.

What this module runs:

- ``qemu-img create`` (raw, qcow2 with ``-b PARENT -F FMT``), ``qemu-io -c "write -s
  FILE OFF LEN"`` (real data written through the qcow2 layer, copy-on-write included);
- ``qemu-img convert -p`` per volume (format kept, ``-B`` parent for a qcow2 layer so
  only the layer's own clusters are written, in the source's cluster size, holes kept;
  through the page cache, its writeback started as it writes), its own progress parsed;
- ``qemu-img check`` (qcow2 consistency), ``qemu-img compare`` (guest-visible content of
  two chains, when copyverify cannot show it from the layers' shapes), ``qemu-img info``
  and ``qemu-img map`` (format, sizes, backing, layout).

Checksum of a volume (``layer_checksum``): the crc32-4m of datacopy over the volume's
*own layer* read as a raw disk (what this layer stores; clusters it does not allocate
read as zeros, the backing file ignored). For a raw volume that is the file's content;
for a qcow2 volume the data clusters are read where ``qemu-img map`` says they are in the
file. ``qemu-img convert -B`` copies exactly the layer's clusters, so a copy keeps the
checksum of its source, whatever the byte layout of the two qcow2 files, as long as it is
written in clusters of the source's size (in larger ones, a partly written cluster would
get its backing's bytes around the write). The blocks are hashed on two threads.

Shape of a qcow2 layer (``same_shape``, from its header and tables): its virtual size, its
backing file and format, and the virtual ranges it answers for itself (data or zero
clusters); see copyverify for what equal shapes and checksums prove.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import mmap
import os
import selectors
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import datacopy
from .errors import InvalidParameter, QemuImgError, QemuToolMissing

RAW, COW = "RAW", "COW"
QEMU_FORMAT = {RAW: "raw", COW: "qcow2"}
INSTALL_HINT = "install qemu-utils (apt-get install qemu-utils; `make test` does it as root)"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise QemuToolMissing(f"{name} not found: {INSTALL_HINT}", tool=name)
    return path


def require_tools() -> None:
    """One-line failure unless both qemu-img and qemu-io are here."""
    tool("qemu-img")
    tool("qemu-io")


def normalize_format(value: Any) -> str:
    """VDSM's name (RAW / COW) of a format given as raw, cow, qcow2 (any case)."""
    v = str(value).lower()
    if v == "raw":
        return RAW
    if v in ("cow", "qcow2"):
        return COW
    raise InvalidParameter(f"format must be raw or cow (qcow2), not {value!r}", format=value)


def _run(args: list[str], cwd: str | os.PathLike[str] | None = None,
         ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if res.returncode not in ok:
        err = (res.stderr or res.stdout).strip().splitlines()
        raise QemuImgError(f"{Path(args[0]).name} {args[1]} failed (exit {res.returncode}): "
                           f"{err[-1] if err else ''}", command=args[1:], exit=res.returncode)
    return res


def create(path: Path, size: int, fmt: str, backing: str | None = None,
           backing_fmt: str | None = None) -> None:
    """A new empty volume; ``backing`` is the parent's name relative to ``path``'s directory."""
    args = [tool("qemu-img"), "create", "-q", "-f", QEMU_FORMAT[fmt]]
    if fmt == COW:
        args += ["-o", "compat=1.1"]
    if backing is not None:
        args += ["-b", backing, "-F", QEMU_FORMAT[backing_fmt or COW]]
    _run(args + [str(path), str(size)], cwd=path.parent)


def _pattern(seed: int, start: int, end: int) -> Iterator[bytes]:
    """The bytes datacopy.write_content would put in [start, end) for ``seed``."""
    import random
    import struct

    pattern = random.Random(seed).randbytes(1 << 20)
    pos = start
    while pos < end:
        off = pos & ((1 << 20) - 1)
        n = min((1 << 20) - off, end - pos)
        data = bytearray(pattern[off : off + n])
        stamp = struct.pack(">QQ", seed, pos >> 20)
        data[: min(16, n)] = stamp[: min(16, n)]
        yield bytes(data)
        pos += n


def write_data(path: Path, fmt: str, extents: list[tuple[int, int]], seed: int,
               content: bytes | None, tmpdir: Path) -> None:
    """Write ``content`` at 0 and the seed's pattern in ``extents`` ([start, end)) through
    qemu-io, as a guest would (a partly written qcow2 cluster keeps its backing's bytes)."""
    pieces: list[tuple[int, Path, int]] = []
    with tempfile.TemporaryDirectory(dir=tmpdir) as tmp:
        for i, (s, e) in enumerate(extents):
            f = Path(tmp) / f"extent{i}"
            with open(f, "wb") as out:
                for chunk in _pattern(seed, s, e):
                    out.write(chunk)
            pieces.append((s, f, e - s))
        if content:
            f = Path(tmp) / "content"
            f.write_bytes(content)
            pieces.append((0, f, len(content)))
        if not pieces:
            return
        args = [tool("qemu-io"), "-f", QEMU_FORMAT[fmt]]
        for off, f, n in pieces:
            args += ["-c", f"write -q -s {f} {off} {n}"]
        _run(args + [str(path)], cwd=path.parent)


def overwrite_sector(path: Path, fmt: str) -> None:
    """Write a sector of 0x5a bytes at offset 0 of the volume's own layer (the copy_corrupt
    fault: a corruption the copy's verification must catch)."""
    _run([tool("qemu-io"), "-f", QEMU_FORMAT[fmt], "-c", "write -q -P 0x5a 0 512", str(path)],
         cwd=path.parent)


def info(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """``qemu-img info`` of one file (never its chain), read-only even while in use."""
    args = [tool("qemu-img"), "info", "-U", "--output=json"]
    if fmt is not None:
        args += ["-f", QEMU_FORMAT[fmt]]
    out: dict[str, Any] = json.loads(_run(args + [str(path)], cwd=path.parent).stdout)
    return out


def check(path: Path) -> dict[str, Any]:
    """``qemu-img check`` of a qcow2 volume: {"ok": bool, "exit": n, ...its JSON report}."""
    res = _run([tool("qemu-img"), "check", "-U", "--output=json", "-f", "qcow2", str(path)],
               cwd=path.parent, ok=(0, 2, 3))
    try:
        report: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        report = {"error": res.stderr.strip()}
    report["ok"] = res.returncode == 0
    report["exit"] = res.returncode
    return report


def compare(a: Path, b: Path, fmt_a: str, fmt_b: str) -> tuple[bool, str]:
    """Whether the guest sees the same bytes through both chains; qemu-img's own words."""
    res = _run([tool("qemu-img"), "compare", "-U", "-f", QEMU_FORMAT[fmt_a], "-F",
                QEMU_FORMAT[fmt_b], str(a), str(b)], ok=(0, 1))
    return res.returncode == 0, res.stdout.strip()


def _layer_json(path: Path) -> str:
    """A qcow2 volume opened alone: the layer, its backing file ignored."""
    return "json:" + json.dumps({"driver": "qcow2", "backing": None,
                                 "file": {"driver": "file", "filename": str(path)}})


@dataclass
class Layer:
    """The data clusters of one volume's own layer: (virtual start, length, file offset).

    Read from the qcow2 tables (qcow2_layer), a layer also knows its shape: ``decided``, the
    virtual ranges it answers for itself (data or zero clusters; a read elsewhere goes to the
    backing file), its backing file's name and format, and its cluster size."""

    size: int
    data: list[tuple[int, int, int]]
    decided: list[tuple[int, int]] | None = None
    backing: str | None = None
    backing_fmt: str | None = None
    cluster_size: int | None = None

    @property
    def data_bytes(self) -> int:
        return sum(n for _, n, _ in self.data)


_OFFSET_MASK = 0x00FFFFFFFFFFFE00
_COMPRESSED = 1 << 62
# incompatible features this reader does not follow: corrupt, external data file, extended L2
_UNREAD_INCOMPATIBLE = (1 << 1) | (1 << 2) | (1 << 4)


def qcow2_layer(path: Path) -> Layer | None:
    """The data clusters of a qcow2 layer read from its L1/L2 tables (no subprocess), or
    None when the image uses what this reader leaves to qemu-img (encryption, compressed
    clusters, an external data file, subclusters, a corrupt flag)."""
    with open(path, "rb") as f:
        hdr = f.read(104)
        if len(hdr) < 72 or hdr[:4] != datacopy.QCOW2_MAGIC:
            return None
        version, = struct.unpack_from(">I", hdr, 4)
        cluster_bits, = struct.unpack_from(">I", hdr, 20)
        size, crypt, l1_size, l1_offset = struct.unpack_from(">QIIQ", hdr, 24)
        if version not in (2, 3) or crypt != 0 or not 9 <= cluster_bits <= 21:
            return None
        if version == 3 and struct.unpack_from(">Q", hdr, 72)[0] & _UNREAD_INCOMPATIBLE:
            return None
        cs = 1 << cluster_bits
        per_l2 = cs // 8
        backing, backing_fmt = _qcow2_backing(f, hdr, version, cs)
        f.seek(l1_offset)
        l1 = struct.unpack(f">{l1_size}Q", f.read(8 * l1_size))
        data: list[tuple[int, int, int]] = []
        decided: list[tuple[int, int]] = []
        for i, l1e in enumerate(l1):
            l2_offset = l1e & _OFFSET_MASK
            if not l2_offset:
                continue
            f.seek(l2_offset)
            l2 = struct.unpack(f">{per_l2}Q", f.read(cs))
            for j, e in enumerate(l2):
                if e & _COMPRESSED:
                    return None
                host = e & _OFFSET_MASK
                zero = version == 3 and e & 1  # reads as zeros, whatever the backing holds
                if not host and not zero:  # unallocated: the backing file answers
                    continue
                start = (i * per_l2 + j) * cs
                if start >= size:
                    break
                n = min(cs, size - start)
                if decided and decided[-1][0] + decided[-1][1] == start:
                    decided[-1] = (decided[-1][0], decided[-1][1] + n)
                else:
                    decided.append((start, n))
                if zero:
                    continue
                if data and data[-1][0] + data[-1][1] == start and data[-1][2] + data[-1][1] == host:
                    data[-1] = (data[-1][0], data[-1][1] + n, data[-1][2])
                else:
                    data.append((start, n, host))
    return Layer(size, data, decided, backing, backing_fmt, cs)


_BACKING_FORMAT_EXT = 0xE2792ACA


def _qcow2_backing(f: Any, hdr: bytes, version: int, cs: int) -> tuple[str | None, str | None]:
    """A qcow2 header's backing file name and format (its header extension), or Nones."""
    offset, length = struct.unpack_from(">QI", hdr, 8)
    if not offset or not length:
        return None, None
    f.seek(offset)
    name = f.read(length).decode(errors="replace")
    header_length = struct.unpack_from(">I", hdr, 100)[0] if version == 3 and len(hdr) >= 104 else 72
    f.seek(header_length)
    ext = f.read(max(0, min(cs, offset) - header_length))
    pos, fmt = 0, None
    while pos + 8 <= len(ext):
        kind, n = struct.unpack_from(">II", ext, pos)
        if kind == 0:
            break
        if kind == _BACKING_FORMAT_EXT:
            fmt = ext[pos + 8 : pos + 8 + n].decode(errors="replace")
        pos += 8 + (n + 7) // 8 * 8
    return name, fmt


def layer(path: Path, fmt: str, use_qemu: bool = False) -> Layer:
    """Where the volume's own data is (a raw file: its data extents; a qcow2 file: its
    tables, read here or, for what this reader leaves alone or with ``use_qemu``, as
    ``qemu-img map`` of the layer opened without its backing file reports them)."""
    if fmt == RAW:
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            return Layer(size, [(s, e - s, s) for s, e in datacopy.data_extents(fd, size)])
        finally:
            os.close(fd)
    if not use_qemu:
        got = qcow2_layer(path)
        if got is not None:
            return got
    res = _run([tool("qemu-img"), "map", "-U", "--output=json", _layer_json(path)], cwd=path.parent)
    entries = json.loads(res.stdout)
    size = max((e["start"] + e["length"] for e in entries), default=0)
    data = []
    for e in entries:
        if e.get("data") and not e.get("zero"):
            if "offset" not in e:  # compressed: no place in the file to read it from
                raise _NoOffsets()
            data.append((e["start"], e["length"], e["offset"]))
    return Layer(size, data)


class _NoOffsets(Exception):
    """The layer's data cannot be read in place (compressed clusters)."""


def _converted_layer_checksum(path: Path) -> tuple[str, int]:
    """The layer converted by qemu-img to a sparse raw scratch file, then checksummed."""
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".raw")
    os.close(fd)
    try:
        _run([tool("qemu-img"), "convert", "-U", "-O", "raw", _layer_json(path), scratch],
             cwd=path.parent)
        lay = layer(Path(scratch), RAW)
        return datacopy.raw_checksum(scratch), lay.data_bytes
    finally:
        os.unlink(scratch)


def layer_checksum(path: Path, fmt: str, use_qemu: bool = False) -> tuple[str, int]:
    """(checksum of the volume's own layer, its data bytes); see the module's docstring."""
    try:
        lay = layer(path, fmt, use_qemu)
    except _NoOffsets:
        return _converted_layer_checksum(path)
    nblocks = (lay.size + datacopy.BLOCK - 1) // datacopy.BLOCK
    by_block: dict[int, list[tuple[int, int, int]]] = {}
    for start, n, off in lay.data:
        pos = start
        while pos < start + n:
            b = pos // datacopy.BLOCK
            end = min(start + n, (b + 1) * datacopy.BLOCK)
            by_block.setdefault(b, []).append((pos, end - pos, off + pos - start))
            pos = end
    crcs: list[int] = [0] * nblocks
    with open(path, "rb") as f:
        fsize = os.fstat(f.fileno()).st_size
        mapping = mmap.mmap(f.fileno(), fsize, prot=mmap.PROT_READ) if fsize else None
        view = memoryview(mapping) if mapping is not None else memoryview(b"")
        try:
            def block_crc(b: int) -> None:
                length = min(datacopy.BLOCK, lay.size - b * datacopy.BLOCK)
                pieces = by_block.get(b)
                if not pieces:
                    crcs[b] = datacopy._zero_crc(length)
                elif len(pieces) == 1 and pieces[0][1] == length:  # one run: read in place
                    off = pieces[0][2]
                    crcs[b] = zlib.crc32(view[off : off + length])
                else:
                    buf = bytearray(length)
                    for pos, n, off in pieces:
                        rel = pos - b * datacopy.BLOCK
                        buf[rel : rel + n] = view[off : off + n]
                    crcs[b] = zlib.crc32(buf)

            datacopy.each_block(block_crc, range(nblocks), len(by_block))
        finally:
            view.release()
            if mapping is not None:
                mapping.close()
    return datacopy.format_checksum(crcs), lay.data_bytes


def same_shape(src: Path, dst: Path, fmt: str, parent: str | None = None) -> str | None:
    """None when the copy ``dst`` has the shape of ``src``'s own layer: the same virtual size,
    backing file name and format, and the same virtual ranges answered by the layer itself
    (data or zero clusters), its backing file being ``parent`` (the chain's volume below it,
    None for a base); else what differs, or that a table could not be read here.
    Reads only the headers and tables (metadata)."""
    if fmt == RAW:
        a, b = os.stat(src).st_size, os.stat(dst).st_size
        if parent is not None:
            return f"a raw volume above {parent}"
        return None if a == b else f"size {b}, the source's {a}"
    la, lb = qcow2_layer(src), qcow2_layer(dst)
    if la is None or lb is None:
        return "a qcow2 table this agent does not read (compressed clusters, ...)"
    for what, x, y in (("virtual size", lb.size, la.size), ("backing file", lb.backing, la.backing),
                       ("backing format", lb.backing_fmt, la.backing_fmt),
                       ("backing file", lb.backing, parent)):
        if x != y:
            return f"{what} {x}, the source's {y}"
    if la.decided != lb.decided:
        return "the ranges the layer itself holds (data or zero clusters) differ from the source's"
    return None


def cluster_size(path: Path) -> int | None:
    """A qcow2 file's cluster size (its header), None if it is not a qcow2 file."""
    with open(path, "rb") as f:
        hdr = f.read(24)
    if len(hdr) < 24 or hdr[:4] != datacopy.QCOW2_MAGIC:
        return None
    return 1 << struct.unpack_from(">I", hdr, 20)[0]


def empty_checksum(size: int) -> str:
    """The checksum of a layer that holds no data (``size`` bytes of zeros)."""
    n, b = size // datacopy.BLOCK, datacopy.BLOCK
    crcs = [datacopy._zero_crc(b)] * n
    if size % b:
        crcs.append(datacopy._zero_crc(size % b))
    return datacopy.format_checksum(crcs)


# --- copying ------------------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1
try:  # resolved here, once: the child only calls it (no dynamic loading after fork)
    _prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
    _prctl = None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """qemu-img dies with the agent thread that started it (as VDSM's children do)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


CACHE_MODE = "unsafe"
WRITEBACK_INTERVAL = 0.02  # seconds between two writeback starts while qemu-img writes
_SYNC_FILE_RANGE_WRITE = 2
try:  # sync_file_range(2): start writing dirty pages back, without waiting (Linux)
    _sync_file_range: Any = ctypes.CDLL(None, use_errno=True).sync_file_range
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
except (OSError, AttributeError):  # pragma: no cover - not Linux/glibc
    _sync_file_range = None


class _Writeback:
    """Starts the writeback of ``path``'s dirty pages every WRITEBACK_INTERVAL while
    qemu-img writes it, so that the disk writes while the copy runs and the fsync after
    it has little left to write; the pages stay in the page cache for the verification."""

    def __init__(self, path: Path) -> None:
        self.path, self.fd, self.last = path, -1, 0.0

    def __enter__(self) -> _Writeback:
        return self

    def kick(self) -> None:
        now = time.monotonic()
        if _sync_file_range is None or now - self.last < WRITEBACK_INTERVAL:
            return
        self.last = now
        if self.fd < 0:
            try:
                self.fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:  # qemu-img has not created it yet
                return
        _sync_file_range(self.fd, 0, 0, _SYNC_FILE_RANGE_WRITE)

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)


def convert_args(src: Path, dst: Path, fmt: str, backing: str | None, cache: str | None = None,
                 backing_fmt: str | None = None) -> list[str]:
    """The ``qemu-img convert`` command line copying the volume ``src`` to ``dst``: the same
    format; a qcow2 layer with ``backing`` as its backing file and only its own clusters, in
    clusters of the source's size (so that the copy's layer holds the same ranges, and the
    same checksum, as its source's); cache mode ``unsafe`` (page cache, qemu-img's own
    flushes skipped: the agent fsyncs every volume before it is LEGAL, and a volume not yet
    LEGAL is thrown away after a crash), or $MOVEDISK_AGENT_QEMU_CACHE."""
    args = [tool("qemu-img"), "convert", "-p", "-f", QEMU_FORMAT[fmt], "-O", QEMU_FORMAT[fmt]]
    args += ["-t", cache or os.environ.get("MOVEDISK_AGENT_QEMU_CACHE") or CACHE_MODE]
    if fmt == COW:
        cs = cluster_size(src)
        args += ["-o", "compat=1.1" + (f",cluster_size={cs}" if cs else "")]
        if backing is not None:
            args += ["-B", backing, "-F", QEMU_FORMAT[backing_fmt or COW]]
    return args + [str(src), str(dst)]


def convert(src: Path, dst: Path, fmt: str, backing: str | None,
            on_percent: Callable[[float], float | None], should_stop: Callable[[], bool],
            cache: str | None = None, backing_fmt: str | None = None,
            on_hold: Callable[[], None] | None = None) -> None:
    """``qemu-img convert -p`` of one volume into ``dst`` (created, same format; a qcow2
    layer gets ``backing`` as its backing file and only its own clusters). ``on_percent``
    gets qemu-img's progress and may answer a number of seconds to hold qemu-img still
    (SIGSTOP .. SIGCONT: a slow copy), during which ``on_hold()`` is called every 10 ms;
    ``should_stop()`` true kills qemu-img (StopRequested)."""
    args = convert_args(src, dst, fmt, backing, cache, backing_fmt)
    with tempfile.TemporaryFile() as err, _Writeback(dst) as writeback:
        proc = subprocess.Popen(args, cwd=dst.parent, stdout=subprocess.PIPE, stderr=err,
                                preexec_fn=_die_with_parent)
        assert proc.stdout is not None
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while True:
                if should_stop():
                    raise StopRequested()
                writeback.kick()
                if not sel.select(timeout=WRITEBACK_INTERVAL):
                    if proc.poll() is not None:
                        break
                    continue
                chunk = os.read(proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                *done, buf = buf.split(b"\r")
                for item in done:
                    text = item.strip().lstrip(b"(").split(b"/")[0]
                    try:
                        pct = float(text)
                    except ValueError:
                        continue
                    pause = on_percent(pct)
                    if pause and pause > 0:
                        _hold(proc, pause, should_stop, on_hold)
            proc.wait()
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            raise
        finally:
            sel.close()
            proc.stdout.close()
        if proc.returncode != 0:
            err.seek(0)
            lines = err.read().decode(errors="replace").strip().splitlines()
            raise QemuImgError(f"qemu-img convert failed (exit {proc.returncode}): "
                               f"{lines[-1] if lines else ''}", exit=proc.returncode)


def _hold(proc: subprocess.Popen[bytes], seconds: float, should_stop: Callable[[], bool],
          on_hold: Callable[[], None] | None) -> None:
    """Keep qemu-img stopped for ``seconds`` (less if asked to stop)."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not should_stop():
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
            if on_hold is not None:
                on_hold()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)


class StopRequested(Exception):
    """The caller asked convert() to stop (the copy process was killed)."""


# --- adopting existing images ---------------------------------------------------------------


def rebase_unsafe(path: Path, backing: str, backing_fmt: str) -> None:
    """Point a qcow2 volume at ``backing`` (a name relative to its directory) without
    touching its data (``qemu-img rebase -u``): the same content, a new address."""
    _run([tool("qemu-img"), "rebase", "-u", "-f", "qcow2", "-b", backing, "-F",
          QEMU_FORMAT[backing_fmt], str(path)], cwd=path.parent)


@dataclass
class ImportVolume:
    path: Path
    vol_id: str
    format: str
    capacity: int
    parent_id: str | None = None
    parent_format: str | None = None
    voltype: str = "LEAF"


@dataclass
class ImportGroup:
    img_id: str
    volumes: list[ImportVolume]
    template_parent: str | None = None  # a base volume of another group this one is based on


def _uuid_or_none(name: str) -> str | None:
    import uuid

    try:
        return str(uuid.UUID(name)) if len(name) == 36 else None
    except ValueError:
        return None


def import_plan(directory: Path) -> list[ImportGroup]:
    """How the images under ``directory`` become image groups (nothing is written)."""
    import uuid

    files = sorted(p for p in directory.rglob("*") if p.is_file() and not p.name.startswith(".")
                   and not p.name.endswith((".meta", ".lease", ".json")))
    if not files:
        raise InvalidParameter(f"no image files in {directory}", directory=str(directory))
    infos: dict[Path, dict[str, Any]] = {}
    for f in files:
        inf = info(f)
        if inf.get("format") not in ("raw", "qcow2"):
            raise InvalidParameter(f"{f}: format {inf.get('format')!r} is neither raw nor qcow2",
                                   path=str(f))
        if inf["format"] == "qcow2":
            report = check(f)
            if not report["ok"]:
                raise QemuImgError(f"{f}: qemu-img check found {report.get('check-errors', '?')} "
                                   f"errors and {report.get('leaks', 0)} leaks", path=str(f))
        infos[f.resolve()] = inf
    parent_of: dict[Path, Path | None] = {}
    for f, inf in infos.items():
        backing = inf.get("full-backing-filename") or inf.get("backing-filename")
        if backing is None:
            parent_of[f] = None
            continue
        b = (f.parent / backing).resolve()
        if b not in infos:
            named = inf.get("backing-filename", backing)
            raise InvalidParameter(f"{f}: its backing file {named} is not among the images in "
                                   f"{directory}", path=str(f), backing=named)
        parent_of[f] = b
    children: dict[Path, list[Path]] = {}
    for f, par in parent_of.items():
        if par is not None:
            children.setdefault(par, []).append(f)
    used: set[str] = set()

    def vol_id(f: Path) -> str:
        got = _uuid_or_none(f.name)
        vid = got if got is not None and got not in used else str(uuid.uuid4())
        used.add(vid)
        return vid

    ids = {f: vol_id(f) for f in sorted(infos)}
    fmt = {f: COW if infos[f]["format"] == "qcow2" else RAW for f in infos}
    groups: list[ImportGroup] = []
    starts: list[tuple[Path, str | None]] = [(f, None) for f in sorted(infos) if parent_of[f] is None]
    while starts:
        first, template = starts.pop(0)
        chain = [first]
        while len(children.get(chain[-1], [])) == 1:
            chain.append(children[chain[-1]][0])
        kids = sorted(children.get(chain[-1], []))
        if kids and (len(chain) > 1 or parent_of[chain[-1]] is not None):
            raise InvalidParameter(
                f"{chain[-1]}: several chains are based on it, but it has a parent itself; only "
                f"a base volume can be shared (a template)", path=str(chain[-1]))
        dirs = {f.parent.name for f in chain}
        img = _uuid_or_none(dirs.pop()) if len(dirs) == 1 else None
        if img is None or any(g.img_id == img for g in groups):
            img = str(uuid.uuid4())
        vols = []
        for i, f in enumerate(chain):
            par = parent_of[f]
            vols.append(ImportVolume(
                path=f, vol_id=ids[f], format=fmt[f], capacity=int(infos[f]["virtual-size"]),
                parent_id=ids[par] if par is not None else None,
                parent_format=fmt[par] if par is not None else None,
                voltype="SHARED" if kids else ("LEAF" if i == len(chain) - 1 else "INTERNAL")))
        groups.append(ImportGroup(img, vols, template_parent=ids[template] if template else None))
        starts += [(k, chain[-1]) for k in kids]
    return groups
