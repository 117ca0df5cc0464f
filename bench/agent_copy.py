"""Benchmark: the agent's copy of a 1 GiB qcow2 chain against qemu-img convert run directly
and against cp + sync.

Starts the real agent process and creates, through it, a chain of three qcow2 volumes of
1 GiB virtual size each on one domain (real data written through qemu-io: 512 MiB in the
base, 384 MiB in the middle, 128 MiB in the top, 1 GiB of data in all). Then, in turns,
with ``sync`` (untimed) before each so that every side starts with no dirty pages:

- ``agent``: Image.move op=Copy to a second domain, timed from the call to the end the
  finished task records; that includes what the agent always does: qemu-img convert per
  volume (through the page cache, its writeback started as it writes), fsync of every
  volume and directory, and the verification of each volume (qemu-img check, its layer
  checksum, its shape; qemu-img compare of the chain only when a shape differs), run
  while the next volume copies (harness/agent/copyverify.py);
- ``convert``: the same three ``qemu-img convert`` commands the agent runs (same options,
  images.convert_args: -t unsafe, -B parent, the source's cluster size), run directly,
  each file fsynced after (a durable copy, no verification);
- ``cp_sync``: ``cp --sparse=auto`` of the three files, then ``sync`` of those files and
  their directory (durable: what "cp + sync" costs without syncing the whole machine);
- ``cp``: the same cp without any sync (data left in the page cache: not durable).

Prints one JSON object: medians in seconds and MiB/s of data, time ratios (agent/convert,
agent/cp_sync, convert/cp_sync), the agent's own split from its task results (convert,
fsync, check, checksum, shape, compare: work time, the verification's overlapping the next
copy; verify_wait: what the task waited for the verification after its last fsync;
legal: the LEGAL metadata and directory fsyncs), and the load average. Environment: BENCH_RUNS (default
5), BENCH_MIB (1024, the virtual size and total data), BENCH_DIR (default: a directory on
the filesystem of /work).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from movedisk.agent import images  # noqa: E402
from movedisk.agent.client import COPY, SimControl, StorageClient, wait_for_agent  # noqa: E402

MiB = 1 << 20


def bench_dir() -> Path:
    """A directory on the filesystem of /work (not tmpfs)."""
    if os.environ.get("BENCH_DIR"):
        return Path(os.environ["BENCH_DIR"])
    tmp = Path(tempfile.gettempdir())
    if os.stat(tmp).st_dev == os.stat("/work").st_dev:
        return tmp
    return Path("/work")


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "5"))
    total = int(os.environ.get("BENCH_MIB", "1024")) * MiB
    data = [total // 2, total * 3 // 8, total // 8]  # bytes of data per volume
    offsets = [0, total // 4, total * 3 // 4]  # where each volume writes it
    base = bench_dir()
    work = Path(tempfile.mkdtemp(prefix="bench-agent-copy-", dir=base))
    sockdir = tempfile.mkdtemp(prefix="mdb-", dir="/tmp")
    sock = os.path.join(sockdir, "agent.sock")
    root = work / "agent"
    root.mkdir()
    log = open(work / "agent.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "movedisk.agent.server", "--root", str(root), "--socket", sock],
        stdout=subprocess.DEVNULL, stderr=log, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        wait_for_agent(sock)
        client, sim = StorageClient(sock, timeout=3600), SimControl(sock, timeout=3600)
        sp, src, dst = (str(uuid.uuid4()) for _ in range(3))
        sim.create_domain(src, sp, 4 * total)
        sim.create_domain(dst, sp, 4 * total)
        img = str(uuid.uuid4())
        vols = [str(uuid.uuid4()) for _ in data]
        t = time.perf_counter()
        infos = sim.create_image(src, img, [
            {"volUUID": v, "size": total, "extents": [(off, n)], "seed": i}
            for i, (v, off, n) in enumerate(zip(vols, offsets, data))
        ])
        create_s = time.perf_counter() - t
        data_bytes = sum(i["data_bytes"] for i in infos)
        src_dir = root / "domains" / src / "images" / img
        src_files = [src_dir / v for v in vols]
        direct_dir = work / "convert-target"
        cp_dir = work / "cp-target"
        cache = os.environ.get("MOVEDISK_AGENT_QEMU_CACHE") or images.CACHE_MODE

        times: dict[str, list[float]] = {"agent": [], "convert": [], "cp_sync": [], "cp": []}
        split: dict[str, list[float]] = {}
        for _ in range(runs):
            # the agent: Image.move op=Copy, until the task's recorded end
            if client.get_images(sp, dst):
                client.wait_task(client.delete_image(sp, dst, img))
            os.sync()
            t = time.time()
            task = client.move_image(sp, src, dst, img, COPY)
            st = client.wait_task(task, timeout=3600, interval=0.05)
            if st["taskResult"] != "success":
                raise SystemExit(f"copy failed: {st}")
            times["agent"].append(st["updated"] - t)
            for k, x in st["result"]["seconds"].items():
                split.setdefault(k, []).append(x)
            client.clear_task(task)

            # qemu-img convert directly, the agent's own options, each volume fsynced
            shutil.rmtree(direct_dir, ignore_errors=True)
            direct_dir.mkdir()
            os.sync()
            t = time.perf_counter()
            parent = None
            for v, f in zip(vols, src_files):
                args = images.convert_args(f, direct_dir / v, images.COW, parent)
                subprocess.run(args, check=True, cwd=direct_dir, stdout=subprocess.DEVNULL)
                fsync(direct_dir / v)
                parent = v
            fsync(direct_dir)
            times["convert"].append(time.perf_counter() - t)

            # cp + sync of the same files
            for key, sync in (("cp_sync", True), ("cp", False)):
                shutil.rmtree(cp_dir, ignore_errors=True)
                cp_dir.mkdir()
                os.sync()
                t = time.perf_counter()
                subprocess.run(["cp", "--sparse=auto", *map(str, src_files), str(cp_dir)],
                               check=True)
                if sync:
                    subprocess.run(["sync", *(str(cp_dir / v) for v in vols), str(cp_dir)],
                                   check=True)
                times[key].append(time.perf_counter() - t)

        med = {k: statistics.median(v) for k, v in times.items()}
        result = {
            "bench": "agent_copy",
            "what": "Image.move op=Copy of a 3-volume qcow2 chain vs qemu-img convert vs cp",
            "virtual_mib_per_volume": total // MiB,
            "data_mib": round(data_bytes / MiB, 1),
            "runs": runs,
            "cache_mode": cache,
            "median_s": {k: round(x, 3) for k, x in med.items()},
            "mib_s": {k: round(data_bytes / MiB / x, 1) for k, x in med.items()},
            "ratio_agent_over_convert": round(med["agent"] / med["convert"], 2),
            "ratio_agent_over_cp_sync": round(med["agent"] / med["cp_sync"], 2),
            "ratio_convert_over_cp_sync": round(med["convert"] / med["cp_sync"], 2),
            "ratio_cp_sync_over_cp": round(med["cp_sync"] / med["cp"], 2),
            "agent_split_median_s": {k: round(statistics.median(v), 3) for k, v in split.items()},
            "runs_s": {k: [round(x, 3) for x in v] for k, v in times.items()},
            "create_s": round(create_s, 1),
            "loadavg_1min_at_end": float(Path("/proc/loadavg").read_text().split()[0]),
            "filesystem_dir": str(base),
        }
        print(json.dumps(result, sort_keys=True))
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(sockdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
