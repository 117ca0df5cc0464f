"""Benchmark: the agent's Image.move (op=Copy) of a 1 GiB image group against `cp`.

Starts the real simulator process, creates a 3-volume chain (512 + 384 + 128 MiB,
random data with a small hole in each volume) on one domain, then alternately
copies it to a second domain with Image.move op=Copy (timed from the call to the
end time the finished task records, checksum verification included) and with
``cp --sparse=auto`` of the same three files (timed as a subprocess). Before each
timed run the destination is removed and ``sync`` runs (untimed), so both start
with no dirty pages. Prints one JSON object: medians in MiB/s and agent/cp.

Data lives in a temp dir on the same filesystem as /work (the system temp dir when
it is on that filesystem, else /work itself; never /dev/shm) and is removed at the
end. Also reported: the CPU seconds each side used per copy (the agent verifies a
CRC-32 of every block it writes, on a second thread). Environment: BENCH_RUNS
(default 7), BENCH_MIB (1024), BENCH_DIR.
"""

from __future__ import annotations

import json
import os
import resource
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    runs = int(os.environ.get("BENCH_RUNS", "7"))
    total_mib = int(os.environ.get("BENCH_MIB", "1024"))
    sizes = [total_mib // 2, total_mib * 3 // 8, total_mib - total_mib // 2 - total_mib * 3 // 8]
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
        client, sim = StorageClient(sock, timeout=600), SimControl(sock, timeout=600)
        sp, src, dst = (str(uuid.uuid4()) for _ in range(3))
        sim.create_domain(src, sp, 4 * total_mib * MiB)
        sim.create_domain(dst, sp, 4 * total_mib * MiB)
        img = str(uuid.uuid4())
        vols = [str(uuid.uuid4()) for _ in sizes]
        t = time.perf_counter()
        infos = sim.create_image(src, img, [
            {"volUUID": v, "size": s * MiB,
             "extents": [(0, (s - 1) * MiB)],  # the last MiB of each volume is a hole
             "seed": i}
            for i, (v, s) in enumerate(zip(vols, sizes))
        ])
        create_s = time.perf_counter() - t
        data = sum(i["truesize"] for i in infos)
        src_files = [str(root / "domains" / src / "images" / img / v) for v in vols]
        cp_dir = root / "cp-target"

        agent_s: list[float] = []
        cp_s: list[float] = []
        agent_cpu: list[float] = []
        cp_cpu: list[float] = []
        for _ in range(runs):
            # agent: Image.move op=Copy, until the task status says finished
            if client.get_images(sp, dst):
                client.wait_task(client.delete_image(sp, dst, img))
            os.sync()
            c0 = cpu_seconds(proc.pid)
            t = time.time()
            task = client.move_image(sp, src, dst, img, COPY)
            # poll gently (polling steals CPU from the copy); the task's own end time
            # (wall clock, same machine) says when it finished, to the microsecond
            st = client.wait_task(task, timeout=600, interval=0.05)
            agent_s.append(st["updated"] - t)
            if st["taskResult"] != "success":
                raise SystemExit(f"copy failed: {st}")
            client.clear_task(task)
            agent_cpu.append(cpu_seconds(proc.pid) - c0)
            # cp of the same files, same disk
            shutil.rmtree(cp_dir, ignore_errors=True)
            cp_dir.mkdir()
            os.sync()
            r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run(["cp", "--sparse=auto", *src_files, str(cp_dir)], check=True)
            cp_s.append(time.perf_counter() - t)
            r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cp_cpu.append(r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)

        agent_med, cp_med = statistics.median(agent_s), statistics.median(cp_s)
        logical = sum(sizes) * MiB
        result = {
            "bench": "agent_copy",
            "what": "Image.move op=Copy of a 3-volume image group vs cp --sparse=auto",
            "volumes_mib": sizes,
            "logical_bytes": logical,
            "data_bytes": data,
            "runs": runs,
            "agent_mib_s": round(logical / MiB / agent_med, 1),
            "cp_mib_s": round(logical / MiB / cp_med, 1),
            "ratio": round(cp_med / agent_med, 3),
            "goal": 0.8,
            "agent_runs_s": [round(x, 3) for x in agent_s],
            "cp_runs_s": [round(x, 3) for x in cp_s],
            "agent_cpu_s_median": round(statistics.median(agent_cpu), 3),
            "cp_cpu_s_median": round(statistics.median(cp_cpu), 3),
            "loadavg_1min_at_end": float(Path("/proc/loadavg").read_text().split()[0]),
            "checksum": "crc32-4m (verified on every copy)",
            "create_s": round(create_s, 2),
            "filesystem_dir": str(base),
        }
        result["ok"] = result["ratio"] >= result["goal"]
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
