"""The storage agent simulator: a JSON-RPC 2.0 server on a Unix socket.

Run it with ``movedisk agent serve --root DIR`` or ``python -m movedisk.agent.server
--root DIR``. One request per line, one answer per line. Methods:

- VDSM's verbs (what the engine uses, see client.StorageClient): ``Image.move``,
  ``Image.delete``, ``Image.getVolumes``, ``Image.verify`` (re-reads a copy's data), ``Volume.getInfo``,
  ``StorageDomain.getImages``, ``StorageDomain.getInfo``, ``Task.getStatus``,
  ``Task.stop``, ``Task.clear``, ``Host.getAllTasksStatuses``, ``Host.ping``;
- the simulator's own ``Sim.*`` verbs (see client.SimControl): provisioning
  (domains, volumes, chains, template-based disks), capacity, and faults.
"""

from __future__ import annotations

import argparse
import base64
import fcntl
import inspect
import json
import os
import shutil
import signal
import socketserver
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import datacopy, images
from .copyverify import CopyVerifier, verify_volume
from .errors import (
    AgentAlreadyRunning,
    AgentError,
    CannotDeleteSharedVolume,
    CopyImageError,
    CouldNotValideTemplateOnTargetDomain,
    DestImageActionError,
    ImageDeleteError,
    ImageDoesNotExistInSD,
    ImageIsNotLegalChain,
    ImageLocked,
    ImageVerificationError,
    InvalidParameter,
    NoSpaceLeftOnDomain,
    ProtocolError,
    QemuImgError,
    StorageDomainAlreadyExists,
    TaskAborted,
    VolumeAlreadyExists,
    VolumeDoesNotExist,
    to_wire,
)
from .layout import (
    BLANK_UUID,
    META_SUFFIX,
    Root,
    check_uuid,
    fsync_dir,
    fsync_file,
    read_json,
    write_json_atomic,
)
from .tasks import SourceKept, Task, TaskStore

COPY_OP = 1
MOVE_OP = 2
DIE_EXIT_CODE = 86
FAULT_KINDS = {
    "copy_fail_after": "the copy fails (CopyImageError) after `bytes` bytes of the task",
    "copy_die_after": "the agent process exits (os._exit) after `bytes` bytes of the task",
    "copy_corrupt": "every copied volume gets a sector of other bytes (qemu-io) after its fsync, "
                    "before its verification (as a bad write path would)",
    "copy_delay": "slow copy: `bytes_per_second`, or `sleep_per_chunk` seconds per `chunk` bytes "
                  "(qemu-img is held still between its progress steps to keep that pace)",
    "delete_fail": "the deletion fails (ImageDeleteError) before touching anything",
    "delete_die": "the agent process exits in the middle of the deletion (after the rename)",
    "delete_delay": "slow deletion: the task runs `seconds` (default 1) before it touches anything",
    "die_at": "the agent process exits at `point`: data_synced, meta_legal, dirs_synced, "
              "copy_recorded (Move), delete_renamed, delete_removed, before_finished",
}


def _log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} agent[{os.getpid()}] {msg}", file=sys.stderr, flush=True)


class Fault:
    def __init__(self, fid: int, kind: str, sdUUID: str | None, imgUUID: str | None, count: int,
                 params: dict[str, Any]) -> None:
        self.id, self.kind, self.sdUUID, self.imgUUID = fid, kind, sdUUID, imgUUID
        self.count, self.params = count, params

    def matches(self, kind_prefix: str, domains: tuple[str, ...], imgUUID: str) -> bool:
        return (
            self.kind.startswith(kind_prefix)
            and (self.sdUUID is None or self.sdUUID in domains)
            and (self.imgUUID is None or self.imgUUID == imgUUID)
        )

    def describe(self) -> dict[str, Any]:
        return {"faultID": self.id, "kind": self.kind, "sdUUID": self.sdUUID,
                "imgUUID": self.imgUUID, "count": self.count, **self.params}


class Agent:
    """Every verb of the simulator, working on the files under ``root``."""

    def __init__(self, root: str | os.PathLike[str], fsync_data: bool = False) -> None:
        images.require_tools()
        self.root = Root(root)
        self.root.ensure()
        self.fsync_data = True  # always (the --fsync option is kept for old command lines)
        self.tasks = TaskStore(self.root.tasks, self._move_source_gone)
        self.lock = threading.RLock()  # validation + reservation sections
        self.busy: dict[tuple[str, str], str] = {}  # (sdUUID, imgUUID) -> taskID
        self.reserved: dict[str, int] = {}  # sdUUID -> bytes promised to running copies
        self.faults: list[Fault] = []
        self.next_fault = 1
        self.methods: dict[str, Callable[..., Any]] = {
            "Host.ping": self.ping,
            "Image.move": self.image_move,
            "Image.delete": self.image_delete,
            "Image.getVolumes": self.image_get_volumes,
            "Image.verify": self.image_verify,
            "Volume.getInfo": self.volume_get_info,
            "StorageDomain.getImages": self.domain_get_images,
            "StorageDomain.getInfo": self.domain_get_info,
            "Task.getStatus": self.task_get_status,
            "Task.stop": self.task_stop,
            "Task.clear": self.task_clear,
            "Host.getAllTasksStatuses": self.all_tasks_statuses,
            "Sim.createDomain": self.sim_create_domain,
            "Sim.createVolume": self.sim_create_volume,
            "Sim.createImage": self.sim_create_image,
            "Sim.createDiskFromTemplate": self.sim_create_disk_from_template,
            "Sim.importImages": self.sim_import_images,
            "Sim.setCapacity": self.sim_set_capacity,
            "Sim.fillDomain": self.sim_fill_domain,
            "Sim.addFault": self.sim_add_fault,
            "Sim.listFaults": self.sim_list_faults,
            "Sim.clearFaults": self.sim_clear_faults,
            "Sim.faultKinds": lambda: FAULT_KINDS,
        }

    def _move_source_gone(self, params: dict[str, Any]) -> bool:
        """Whether a Move's source image group is gone (neither live nor being removed)."""
        sd, img = params["srcDomUUID"], params["imgUUID"]
        return not (self.root.image_dir(sd, img).exists() or self.root.removal_dir(sd, img).exists())

    # --- dispatch ----------------------------------------------------------------------

    def call(self, method: str, params: Any) -> Any:
        fn = self.methods.get(method)
        if fn is None:
            raise ProtocolError(f"Method not found: {method}", method=method)
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise InvalidParameter(f"{method}: params must be an object of named parameters")
        try:
            inspect.signature(fn).bind(**params)
        except TypeError as exc:
            raise InvalidParameter(f"{method}: {exc}", method=method) from None
        return fn(**params)

    # --- helpers -----------------------------------------------------------------------

    def _domain(self, sdUUID: Any, spUUID: Any | None = None, name: str = "sdUUID") -> tuple[str, dict[str, Any]]:
        sd = check_uuid(sdUUID, name)
        sp = check_uuid(spUUID, "spUUID") if spUUID is not None else None
        return sd, self.root.domain_meta(sd, sp)

    def _check_unlocked(self, keys: list[tuple[str, str]]) -> None:
        for key in keys:
            if key in self.busy:
                raise ImageLocked(
                    f"image group {key[1]} on domain {key[0]} is locked by task {self.busy[key]}",
                    sdUUID=key[0], imgUUID=key[1], taskID=self.busy[key],
                )

    def _lock_images(self, keys: list[tuple[str, str]], taskID: str) -> None:
        self._check_unlocked(keys)
        for key in keys:
            self.busy[key] = taskID

    def _unlock(self, taskID: str) -> None:
        with self.lock:
            for key in [k for k, t in self.busy.items() if t == taskID]:
                del self.busy[key]

    def _free(self, sdUUID: str, meta: dict[str, Any]) -> int:
        return int(meta.get("capacity", 0)) - self.root.used_bytes(sdUUID) - self.reserved.get(sdUUID, 0)

    def _take_faults(self, prefix: str, domains: tuple[str, ...], imgUUID: str) -> list[Fault]:
        with self.lock:
            taken = [f for f in self.faults if f.matches(prefix, domains, imgUUID)]
            spent = set()
            for f in taken:
                if f.count > 0:  # 0: until cleared
                    f.count -= 1
                    if f.count == 0:
                        spent.add(f.id)
            self.faults = [f for f in self.faults if f.id not in spent]
            return taken

    # --- VDSM verbs: read ---------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "root": str(self.root.root), "tasks": len(self.tasks.all())}

    def image_get_volumes(self, spUUID: str, sdUUID: str, imgUUID: str) -> list[str]:
        sd, _ = self._domain(sdUUID, spUUID)
        img = check_uuid(imgUUID, "imgUUID")
        return [v["volUUID"] for v in self.root.chain(sd, img)]

    def image_verify(self, spUUID: str, sdUUID: str, imgUUID: str,
                     expected: dict[str, str] | None = None) -> dict[str, Any]:
        """Re-read the image group's own volumes on the domain (never trusting what a task
        recorded earlier): ``qemu-img check`` of each qcow2 volume and its layer checksum
        recomputed from the data, compared with ``expected`` ({volUUID: checksum}, e.g. the
        source's recorded checksums: each of those volumes must be here) or, without it, with
        each volume's own recorded checksum. ImageVerificationError (484) on any difference;
        the volumes verified and the seconds it took otherwise. Reads only."""
        sd, _ = self._domain(sdUUID, spUUID)
        img = check_uuid(imgUUID, "imgUUID")
        if expected is not None and not isinstance(expected, dict):
            raise InvalidParameter("expected must be an object {volUUID: checksum}")
        t0 = time.monotonic()
        img_dir = self.root.require_image(sd, img)
        own = {v: m for v, m in self.root.volume_metas(img_dir).items() if m.get("image") == img}
        want = {check_uuid(v, "volUUID"): str(c) for v, c in (expected or {}).items()}
        missing = sorted(set(want) - set(own))
        if missing:
            raise ImageVerificationError(
                f"Image verification failed: volume {missing[0]} of image {img} is not on {sd}",
                imgUUID=img, sdUUID=sd, volUUID=missing[0])
        verified = []
        for vol, meta in sorted(own.items()):
            if want and vol not in want:
                continue
            fmt = meta.get("format", images.RAW)
            path = img_dir / vol
            if not path.exists():
                raise ImageVerificationError(
                    f"Image verification failed: the data of volume {vol} is missing on {sd}",
                    imgUUID=img, sdUUID=sd, volUUID=vol)
            verify_volume(path, fmt, want.get(vol, meta.get("checksum")),
                          f"volume {vol} of image {img} on {sd}",
                          imgUUID=img, sdUUID=sd, volUUID=vol)
            verified.append(vol)
        return {"verified": verified, "seconds": round(time.monotonic() - t0, 4)}

    def volume_get_info(self, spUUID: str, sdUUID: str, imgUUID: str, volUUID: str) -> dict[str, Any]:
        sd, _ = self._domain(sdUUID, spUUID)
        return self.root.volume(sd, check_uuid(imgUUID, "imgUUID"), check_uuid(volUUID, "volUUID"))

    def domain_get_images(self, spUUID: str, sdUUID: str) -> list[str]:
        sd, _ = self._domain(sdUUID, spUUID)
        return self.root.image_ids(sd)

    def domain_get_info(self, spUUID: str, sdUUID: str) -> dict[str, Any]:
        sd, meta = self._domain(sdUUID, spUUID)
        used = self.root.used_bytes(sd)
        return {**meta, "used": used, "reserved": self.reserved.get(sd, 0),
                "free": int(meta.get("capacity", 0)) - used,
                "removing": self.root.removals(sd)}

    def task_get_status(self, taskID: str) -> dict[str, Any]:
        return self.tasks.get(taskID).status()

    def task_stop(self, taskID: str) -> bool:
        self.tasks.stop(taskID)
        return True

    def task_clear(self, taskID: str) -> bool:
        self.tasks.clear(taskID)
        return True

    def all_tasks_statuses(self, tag: str | None = None,
                           tags: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Every task, or those carrying ``tag`` or one of ``tags`` (an extension of VDSM's
        verb: the engine asks for its moves' tasks, never walking the others)."""
        if tag is not None and not isinstance(tag, str):
            raise InvalidParameter("tag must be a string")
        if tags is not None and not (isinstance(tags, list)
                                     and all(isinstance(x, str) for x in tags)):
            raise InvalidParameter("tags must be a list of strings")
        if tag is None and tags is None:
            return {t.id: t.status() for t in self.tasks.all()}
        wanted = ([tag] if tag is not None else []) + (tags or [])
        return {t.id: t.status() for x in wanted for t in self.tasks.with_tag(x)}

    # --- VDSM verbs: Image.move ----------------------------------------------------------

    def image_move(self, spUUID: str, srcDomUUID: str, dstDomUUID: str, imgUUID: str, op: int,
                   postZero: bool = False, force: bool = False, vmUUID: str = "",
                   tag: str | None = None) -> str:
        sp = check_uuid(spUUID, "spUUID")
        src, _ = self._domain(srcDomUUID, sp, "srcDomUUID")
        dst, dst_meta = self._domain(dstDomUUID, sp, "dstDomUUID")
        img = check_uuid(imgUUID, "imgUUID")
        if op not in (COPY_OP, MOVE_OP):
            raise InvalidParameter(f"op must be 1 (Copy) or 2 (Move), not {op!r}", op=op)
        if src == dst:
            raise InvalidParameter(f"source and destination domain are the same: {src}", sdUUID=src)
        if tag is not None and not isinstance(tag, str):
            raise InvalidParameter("tag must be a string")
        with self.lock:
            self._check_unlocked([(src, img), (dst, img)])
            chain = self.root.chain(src, img)
            if not chain:
                raise ImageDoesNotExistInSD(f"Image has no volumes: image={img}, domain={src}",
                                            imgUUID=img, sdUUID=src)
            bad = [v["volUUID"] for v in chain if v.get("legality") != "LEGAL"]
            if bad:
                raise ImageIsNotLegalChain(f"Image is not a legal chain: image={img}, illegal "
                                           f"volumes {bad}", imgUUID=img, volumes=bad)
            for v in chain:
                if v["shared"] and self.root.owner_of(dst, v["volUUID"]) != v["image"]:
                    raise CouldNotValideTemplateOnTargetDomain(
                        f"Cannot validate template on target domain: volume {v['volUUID']} of "
                        f"image {v['image']} is not on domain {dst}",
                        volUUID=v["volUUID"], templateImgUUID=v["image"], sdUUID=dst)
            dst_dir = self.root.image_dir(dst, img)
            if (dst_dir.exists() or self.root.removal_dir(dst, img).exists()) and not force:
                raise DestImageActionError(
                    f"Error during destination image manipulation: image={img}, dest domain="
                    f"{dst}: the image group already exists there (use force to replace it)",
                    imgUUID=img, sdUUID=dst)
            need = sum(v["truesize"] or 0 for v in chain if not v["shared"])
            free = self._free(dst, dst_meta)
            if need > free:
                raise NoSpaceLeftOnDomain(
                    f"No space left on domain {dst}: the image group needs {need} bytes, "
                    f"{max(free, 0)} are free", sdUUID=dst, needed=need, free=max(free, 0))
            if op == MOVE_OP:
                self._check_deletable(src, img)
            params = {"spUUID": sp, "srcDomUUID": src, "dstDomUUID": dst, "imgUUID": img,
                      "op": op, "postZero": bool(postZero), "force": bool(force)}
            total = sum(v.get("data_bytes", v["truesize"] or 0) for v in chain if not v["shared"])
            task = self.tasks.create("Image.move", params, tag, bytes_total=total)
            self._lock_images([(src, img), (dst, img)], task.id)
            self.reserved[dst] = self.reserved.get(dst, 0) + need

        def release() -> None:
            with self.lock:
                self.reserved[dst] -= need
            self._unlock(task.id)

        self.tasks.run(task, lambda t: self._do_move(t, src, dst, img, op, bool(postZero), chain), release)
        _log(f"task {task.id} Image.move op={op} {img} {src} -> {dst} tag={tag}")
        return task.id

    def _copy_volume(self, task: Task, faults: list[Fault], src: Path, dst: Path, fmt: str,
                     backing: str | None, backing_fmt: str | None, weight: int) -> None:
        """One volume through ``qemu-img convert``: progress from qemu-img's own percentage
        (``weight`` bytes for the whole volume), copy faults applied as it goes."""
        done = 0
        rate = None  # bytes per second of a slow copy (the copy_delay fault)
        for f in faults:
            if f.kind == "copy_delay":
                if "bytes_per_second" in f.params:
                    rate = float(f.params["bytes_per_second"])
                else:
                    rate = int(f.params.get("chunk", 1 << 20)) / float(
                        f.params.get("sleep_per_chunk", 0.1))
        started = time.monotonic()  # the pace counts from the start of this volume

        def apply_faults() -> None:
            for f in faults:
                if f.kind in ("copy_fail_after", "copy_die_after") and \
                        task.bytes_done >= int(f.params.get("bytes", 0)):
                    if f.kind == "copy_die_after":
                        _log(f"fault {f.id}: dying after {task.bytes_done} bytes of task {task.id}")
                        os._exit(DIE_EXIT_CODE)
                    raise CopyImageError(
                        f"low level Image copy failed: injected fault after "
                        f"{task.bytes_done} bytes", faultID=f.id, bytes_done=task.bytes_done)

        reached = 0  # what qemu-img has reported for this volume (bytes of ``weight``)

        def report(upto: int) -> None:
            """Move the task's progress to ``upto`` bytes of this volume; a slow copy shows
            no more than its pace allows, the rest comes while qemu-img is held."""
            nonlocal done
            if rate is not None:
                upto = min(upto, int(rate * (time.monotonic() - started)))
            if upto > done:
                self.tasks.progress(task, upto - done)
                done = upto
            apply_faults()

        def on_percent(pct: float) -> float | None:
            nonlocal reached
            reached = max(reached, int(weight * min(pct, 100.0) / 100))
            report(reached)
            if rate is None:
                return None
            return reached / rate - (time.monotonic() - started)

        apply_faults()
        try:
            images.convert(src, dst, fmt, backing, on_percent, task.stop_event.is_set,
                           backing_fmt=backing_fmt, on_hold=lambda: report(reached))
        except images.StopRequested:
            raise TaskAborted("Task is aborted: stopped by Task.stop", taskID=task.id) from None
        except QemuImgError as exc:
            raise CopyImageError(f"low level Image copy failed: {exc.message}",
                                 volUUID=dst.name) from None
        while rate is not None and done < weight:  # qemu-img ended before its pace did
            if task.stop_event.is_set():
                raise TaskAborted("Task is aborted: stopped by Task.stop", taskID=task.id)
            time.sleep(0.01)
            report(weight)
        if weight > done:
            self.tasks.progress(task, weight - done)
        apply_faults()

    def _die_at(self, faults: list[Fault], point: str) -> None:
        """The ``die_at`` fault: exit the agent (as a crash would) at a named point."""
        for f in faults:
            if f.kind == "die_at" and f.params.get("point") == point:
                _log(f"fault {f.id}: dying at {point}")
                os._exit(DIE_EXIT_CODE)

    def _do_move(self, task: Task, src: str, dst: str, img: str, op: int, postZero: bool,
                 chain: list[dict[str, Any]]) -> dict[str, Any]:
        """Copy the chain, make it durable, then (op=Move) delete the source.

        The order is what makes "finished" safe to act on after a power cut: each volume's
        data is fsynced before its metadata says LEGAL (metadata fsynced too), then the
        directories holding the new names (the image group's directory, and the images
        directory holding the new group), and only then does the task record say finished
        (TaskStore.run). A Move records ``copy_complete`` durably before it touches the
        source, so that whatever happens to the deletion the copy is never taken for a
        failed one (SourceImageActionError, 259)."""
        faults = self._take_faults("copy_", (src, dst), img)
        points = self._take_faults("die_at", (src, dst), img)
        src_dir = self.root.image_dir(src, img)
        dst_dir = self.root.image_dir(dst, img)
        if dst_dir.exists() or self.root.removal_dir(dst, img).exists():  # force: replace it
            self._remove_image_dir(dst, img, postZero=False)
        dst_dir.mkdir(parents=True)
        copied = []
        metas: dict[str, dict[str, Any]] = {}
        seconds = {"convert": 0.0, "fsync": 0.0}
        # each volume verified (copyverify: what that proves) while the next one copies
        with CopyVerifier(src_dir, dst_dir, dst) as verifier:
            for v in chain:
                vol = v["volUUID"]
                if v["shared"]:
                    owner_dir = self.root.image_dir(dst, v["image"])
                    os.link(owner_dir / vol, dst_dir / vol)
                    os.link(owner_dir / f"{vol}{META_SUFFIX}", dst_dir / f"{vol}{META_SUFFIX}")
                    verifier.add(vol, read_json(src_dir / f"{vol}{META_SUFFIX}"))
                    continue
                meta = read_json(src_dir / f"{vol}{META_SUFFIX}")
                meta.update(domain=dst, legality="ILLEGAL")
                # not fsynced: if a power cut loses it, the volume is no more than untracked
                # garbage inside an image group that is not LEGAL either way
                write_json_atomic(dst_dir / f"{vol}{META_SUFFIX}", meta, fsync=False)
                fmt = meta.get("format", images.RAW)
                parent = meta.get("parent", BLANK_UUID)
                parent_fmt = next((p.get("format") for p in chain if p["volUUID"] == parent), None)
                t0 = time.monotonic()
                self._copy_volume(task, faults, src_dir / vol, dst_dir / vol, fmt,
                                  parent if parent != BLANK_UUID and fmt == images.COW else None,
                                  parent_fmt, int(v.get("data_bytes", v["truesize"] or 0)))
                t1 = time.monotonic()
                fsync_file(dst_dir / vol)  # always: LEGAL must never name data still in memory
                seconds["convert"] += t1 - t0
                seconds["fsync"] += time.monotonic() - t1
                self._die_at(points, "data_synced")
                if any(f.kind == "copy_corrupt" for f in faults):
                    images.overwrite_sector(dst_dir / vol, fmt)
                metas[vol] = meta
                verifier.add(vol, meta)
            leaf = chain[-1]
            seconds.update(verifier.wait(leaf["volUUID"], leaf.get("format", images.RAW)))
        t0 = time.monotonic()
        for vol, meta in metas.items():  # every volume's data is durable and verified
            meta["legality"] = "LEGAL"
            write_json_atomic(dst_dir / f"{vol}{META_SUFFIX}", meta)
            self._die_at(points, "meta_legal")
            copied.append(vol)
        fsync_dir(dst_dir)  # the volumes' names, their metadata renames, the links
        fsync_dir(dst_dir.parent)  # the image group's own name
        seconds["legal"] = time.monotonic() - t0
        self._die_at(points, "dirs_synced")
        result: dict[str, Any] = {"copied": copied, "bytes_copied": task.bytes_done,
                                  "seconds": {k: round(x, 4) for k, x in seconds.items()}}
        if op == MOVE_OP:
            with task.lock:  # durably: from here on the destination is a complete copy
                task.result = {**task.result, **result, "copy_complete": True}
                self.tasks.save(task)
            self._die_at(points, "copy_recorded")
            try:
                with self.lock:
                    self._check_deletable(src, img)
                die = self._delete_faults(src, img)
                self._remove_image_dir(src, img, postZero, die, points)
                result["source_deleted"] = True
            except AgentError as exc:
                result["source_deleted"] = False
                result["source_delete_error"] = {"type": type(exc).__name__, "code": exc.vdsm_code,
                                                 "message": exc.message}
                raise SourceKept(exc, result) from None
        self._die_at(points, "before_finished")
        return result

    # --- VDSM verbs: Image.delete ---------------------------------------------------------

    def _check_deletable(self, sd: str, img: str) -> None:
        deps = self.root.dependents(sd, img)
        if deps:
            raise CannotDeleteSharedVolume(
                f"Shared Volume cannot be deleted: image {img} on domain {sd} has volumes that "
                f"{len(deps)} volume(s) of other image groups depend on "
                f"({', '.join(sorted({d['imgUUID'] for d in deps}))})",
                imgUUID=img, sdUUID=sd, dependents=deps)

    def image_delete(self, spUUID: str, sdUUID: str, imgUUID: str, postZero: bool = False,
                     force: bool = False, discard: bool = False, tag: str | None = None) -> str:
        sd, _ = self._domain(sdUUID, spUUID)
        img = check_uuid(imgUUID, "imgUUID")
        with self.lock:
            self._check_unlocked([(sd, img)])
            if not self.root.removal_dir(sd, img).exists():
                self.root.require_image(sd, img)
                self._check_deletable(sd, img)
            params = {"spUUID": spUUID, "sdUUID": sd, "imgUUID": img, "postZero": bool(postZero),
                      "force": bool(force)}
            task = self.tasks.create("Image.delete", params, tag)
            self._lock_images([(sd, img)], task.id)

        def work(t: Task) -> dict[str, Any]:
            die = self._delete_faults(sd, img)
            points = self._take_faults("die_at", (sd,), img)
            zeroed = self._remove_image_dir(sd, img, bool(postZero), die, points)
            return {"deleted": True, "bytes_zeroed": zeroed}

        self.tasks.run(task, work, lambda: self._unlock(task.id))
        _log(f"task {task.id} Image.delete {img} on {sd} postZero={postZero} tag={tag}")
        return task.id

    def _delete_faults(self, sd: str, img: str) -> bool:
        """Apply the deletion faults for this image group; True: die in the middle."""
        die = False
        for f in self._take_faults("delete_", (sd,), img):
            if f.kind == "delete_fail":
                raise ImageDeleteError(f"Could not remove all image's volumes: injected fault "
                                       f"{f.id}", faultID=f.id, imgUUID=img)
            die = die or f.kind == "delete_die"
            if f.kind == "delete_delay":
                time.sleep(float(f.params.get("seconds", 1.0)))
        return die

    def _remove_image_dir(self, sd: str, img: str, postZero: bool, die: bool = False,
                          points: list[Fault] | None = None) -> int:
        """Rename the image group to _remove_me_<img> (durably), zero its own volumes,
        remove it, and fsync the images directory so that the removal itself is durable
        before anyone is told it happened."""
        live = self.root.image_dir(sd, img)
        removal = self.root.removal_dir(sd, img)
        images = self.root.images_dir(sd)
        if live.exists():
            if removal.exists():
                shutil.rmtree(removal)
            os.rename(live, removal)
            fsync_dir(images)  # after a power cut the group is "being removed", never live again
        self._die_at(points or [], "delete_renamed")
        zeroed = 0
        if postZero:
            for vol, meta in self.root.volume_metas(removal).items():
                if meta.get("image") == img and (removal / vol).exists():
                    zeroed += datacopy.zero_data(str(removal / vol))
        if die:
            _log(f"fault: dying in the middle of deleting {img}")
            os._exit(DIE_EXIT_CODE)
        shutil.rmtree(removal, ignore_errors=False)
        fsync_dir(images)
        self._die_at(points or [], "delete_removed")
        return zeroed

    # --- Sim.*: provisioning --------------------------------------------------------------

    def sim_create_domain(self, sdUUID: str, spUUID: str, capacity: int,
                          description: str = "") -> dict[str, Any]:
        sd = check_uuid(sdUUID, "sdUUID")
        sp = check_uuid(spUUID, "spUUID")
        if not isinstance(capacity, int) or capacity < 0:
            raise InvalidParameter(f"capacity must be a non-negative integer, not {capacity!r}")
        with self.lock:
            if (self.root.domain_dir(sd) / "dom_md.json").exists():
                raise StorageDomainAlreadyExists(f"Storage domain already exists: {sd}", sdUUID=sd)
            self.root.images_dir(sd).mkdir(parents=True, exist_ok=True)
            meta = {"sdUUID": sd, "spUUID": sp, "capacity": capacity, "description": description,
                    "class": "Data", "type": "LOCALFS", "ctime": int(time.time())}
            self.root.write_domain_meta(sd, meta)
            fsync_dir(self.root.domains)
        return meta

    def sim_set_capacity(self, sdUUID: str, capacity: int) -> dict[str, Any]:
        sd, meta = self._domain(sdUUID)
        with self.lock:
            meta["capacity"] = int(capacity)
            self.root.write_domain_meta(sd, meta)
        return meta

    def sim_fill_domain(self, sdUUID: str) -> dict[str, Any]:
        """Set the domain's capacity to what it uses now: nothing more fits."""
        sd, _ = self._domain(sdUUID)
        return self.sim_set_capacity(sd, self.root.used_bytes(sd))

    def sim_create_volume(self, sdUUID: str, imgUUID: str, volUUID: str, size: int,
                          parent: str = BLANK_UUID, extents: list[list[int]] | None = None,
                          seed: int = 0, content_b64: str | None = None,
                          description: str = "", format: str = "cow") -> dict[str, Any]:
        """A new volume in image group imgUUID (created if needed), a real image: ``format``
        cow (qcow2, made by ``qemu-img create``, its parent as backing file by volume id) or
        raw (a base only). ``extents`` [[offset, length], ...] get pseudo-random data from
        ``seed`` (each MiB stamped with the seed and its number), ``content_b64`` is written at
        0, both through qemu-io. A parent that belongs to another image group (a template) is
        linked into this one."""
        sd, meta_sd = self._domain(sdUUID)
        fmt = images.normalize_format(format)
        img = check_uuid(imgUUID, "imgUUID")
        vol = check_uuid(volUUID, "volUUID")
        par = check_uuid(parent, "parent")
        if not isinstance(size, int) or size < 0:
            raise InvalidParameter(f"size must be a non-negative integer, not {size!r}")
        content = base64.b64decode(content_b64) if content_b64 is not None else None
        ranges = []
        for item in extents or []:
            off, length = int(item[0]), int(item[1])
            if off < 0 or length < 0 or off + length > size:
                raise InvalidParameter(f"extent {item} is outside the volume's {size} bytes")
            ranges.append((off, off + length))
        if content is not None and len(content) > size:
            raise InvalidParameter(f"content ({len(content)} bytes) is larger than size {size}")
        if fmt == images.RAW and par != BLANK_UUID:
            raise InvalidParameter("a raw volume has no backing file: only a base volume "
                                   "(parent BLANK) may be raw", format=format)
        with self.lock:
            img_dir = self.root.image_dir(sd, img)
            for other in self.root.image_ids(sd):
                if (self.root.image_dir(sd, other) / f"{vol}{META_SUFFIX}").exists():
                    raise VolumeAlreadyExists(f"Volume already exists: {vol} (image {other})",
                                              volUUID=vol)
            need = sum(e - s for s, e in ranges) + (len(content) if content else 0)
            if need > self._free(sd, meta_sd):
                raise NoSpaceLeftOnDomain(f"No space left on domain {sd}: the volume needs "
                                          f"{need} bytes", sdUUID=sd, needed=need)
            parent_meta = None
            if par != BLANK_UUID:
                owner = self.root.owner_of(sd, par)
                if owner is None:
                    raise VolumeDoesNotExist(f"Volume does not exist: parent {par} on {sd}",
                                             volUUID=par)
                parent_meta = read_json(self.root.image_dir(sd, owner) / f"{par}{META_SUFFIX}")
            img_dir.mkdir(parents=True, exist_ok=True)
            if parent_meta is not None:
                owner_dir = self.root.image_dir(sd, parent_meta["image"])
                if parent_meta["image"] != img:
                    if parent_meta.get("voltype") != "SHARED":
                        parent_meta["voltype"] = "SHARED"
                        write_json_atomic(owner_dir / f"{par}{META_SUFFIX}", parent_meta)
                    if not (img_dir / par).exists():
                        os.link(owner_dir / par, img_dir / par)
                        os.link(owner_dir / f"{par}{META_SUFFIX}", img_dir / f"{par}{META_SUFFIX}")
                elif parent_meta.get("voltype") == "LEAF":
                    parent_meta["voltype"] = "INTERNAL"
                    write_json_atomic(owner_dir / f"{par}{META_SUFFIX}", parent_meta)
            path = img_dir / vol
            if fmt == images.RAW:
                datacopy.write_content(str(path), size, ranges, seed, content)
            else:
                images.create(path, size, fmt, None if parent_meta is None else par,
                              None if parent_meta is None else parent_meta.get("format"))
                images.write_data(path, fmt, ranges, seed, content, self.root.tmp)
            if fmt == images.COW and not ranges and not content:  # nothing written: all zeros
                checksum, data = images.empty_checksum(size), 0
            else:
                checksum, data = images.layer_checksum(path, fmt)
            meta = {"volUUID": vol, "image": img, "domain": sd, "parent": par,
                    "format": fmt, "type": "SPARSE", "voltype": "LEAF", "legality": "LEGAL",
                    "capacity": size, "data_bytes": data, "checksum": checksum,
                    "description": description, "ctime": int(time.time())}
            # provisioning is the simulator's own business: not fsynced (copies and
            # deletions, what the engine relies on, are)
            write_json_atomic(img_dir / f"{vol}{META_SUFFIX}", meta, fsync=False)
        return self.root.volume(sd, img, vol)

    def sim_create_image(self, sdUUID: str, imgUUID: str, volumes: list[dict[str, Any]],
                         parent: str = BLANK_UUID) -> list[dict[str, Any]]:
        """A chain: volumes[0] on ``parent`` (BLANK or a template volume), each next on the
        previous. Each item: {volUUID, size, extents?, seed?, content_b64?, format?}."""
        if not isinstance(volumes, list) or not volumes:
            raise InvalidParameter("volumes must be a non-empty list")
        out = []
        for item in volumes:
            if not isinstance(item, dict):
                raise InvalidParameter("each volume must be an object")
            out.append(self.sim_create_volume(sdUUID, imgUUID, parent=parent, **item))
            parent = out[-1]["volUUID"]
        return out

    def sim_create_disk_from_template(self, sdUUID: str, imgUUID: str, volUUID: str,
                                      templateVolUUID: str, size: int | None = None,
                                      extents: list[list[int]] | None = None,
                                      seed: int = 0) -> list[dict[str, Any]]:
        """A new image group whose leaf ``volUUID`` has the template's volume as parent."""
        sd, _ = self._domain(sdUUID)
        tmpl = check_uuid(templateVolUUID, "templateVolUUID")
        owner = self.root.owner_of(sd, tmpl)
        if owner is None:
            raise VolumeDoesNotExist(f"Volume does not exist: template volume {tmpl} on {sd}",
                                     volUUID=tmpl)
        if size is None:
            size = int(read_json(self.root.image_dir(sd, owner) / f"{tmpl}{META_SUFFIX}")["capacity"])
        self.sim_create_volume(sd, imgUUID, volUUID, size, parent=tmpl, extents=extents, seed=seed)
        return self.root.chain(sd, check_uuid(imgUUID, "imgUUID"))

    def sim_import_images(self, sdUUID: str, directory: str) -> list[dict[str, Any]]:
        """Adopt a directory of existing qcow2/raw images as volumes of the domain: one image
        group per chain, found from the backing files; a base volume that several chains
        share becomes a template image group (SHARED, hard-linked into each dependent one).
        Files are copied (sparse; the originals are left alone), backing files rewired to the
        volume ids (qemu-img rebase -u), each qcow2 checked first. Files named as UUIDs keep
        them as volume ids, and a directory named as a UUID holding a whole chain gives its
        image group id. Returns the image groups made, each with its volumes (base first)."""
        sd, meta_sd = self._domain(sdUUID)
        src_dir = Path(str(directory)).absolute()
        if not src_dir.is_dir():
            raise InvalidParameter(f"not a directory: {src_dir}", directory=str(src_dir))
        plan = images.import_plan(src_dir)
        with self.lock:
            taken = {vol for img in self.root.image_ids(sd)
                     for vol in self.root.volume_metas(self.root.image_dir(sd, img))}
            clash = sorted(taken & {v.vol_id for g in plan for v in g.volumes})
            if clash:
                raise VolumeAlreadyExists(f"Volume already exists on {sd}: {clash[0]}",
                                          volUUID=clash[0])
            existing = set(self.root.image_ids(sd))
            for g in plan:
                if g.img_id in existing:
                    raise InvalidParameter(f"image group {g.img_id} already exists on {sd}",
                                           imgUUID=g.img_id)
            need = sum(os.stat(v.path).st_blocks * 512 for g in plan for v in g.volumes)
            if need > self._free(sd, meta_sd):
                raise NoSpaceLeftOnDomain(f"No space left on domain {sd}: the images need "
                                          f"{need} bytes", sdUUID=sd, needed=need)
            owner: dict[str, str] = {}  # volume id -> its image group
            for g in plan:
                img_dir = self.root.image_dir(sd, g.img_id)
                img_dir.mkdir(parents=True)
                for v in g.volumes:
                    owner[v.vol_id] = g.img_id
                if g.template_parent is not None:  # link the template's volume in first
                    tdir = self.root.image_dir(sd, owner[g.template_parent])
                    os.link(tdir / g.template_parent, img_dir / g.template_parent)
                    os.link(tdir / f"{g.template_parent}{META_SUFFIX}",
                            img_dir / f"{g.template_parent}{META_SUFFIX}")
                for v in g.volumes:
                    path = img_dir / v.vol_id
                    datacopy.copy_sparse(str(v.path), str(path))
                    if v.parent_id is not None:
                        images.rebase_unsafe(path, v.parent_id, v.parent_format or images.COW)
                    checksum, data = images.layer_checksum(path, v.format)
                    fsync_file(path)
                    meta = {"volUUID": v.vol_id, "image": g.img_id, "domain": sd,
                            "parent": v.parent_id or BLANK_UUID, "format": v.format,
                            "type": "SPARSE", "voltype": v.voltype, "legality": "LEGAL",
                            "capacity": v.capacity, "data_bytes": data, "checksum": checksum,
                            "description": f"imported from {v.path}",
                            "ctime": int(time.time())}
                    write_json_atomic(img_dir / f"{v.vol_id}{META_SUFFIX}", meta)
                fsync_dir(img_dir)
            fsync_dir(self.root.images_dir(sd))
        _log(f"imported {sum(len(g.volumes) for g in plan)} volume(s) in {len(plan)} image "
             f"group(s) from {src_dir} into {sd}")
        return [{"imgUUID": g.img_id, "volumes": self.root.chain(sd, g.img_id)} for g in plan]

    # --- Sim.*: faults --------------------------------------------------------------------

    def sim_add_fault(self, kind: str, sdUUID: str | None = None, imgUUID: str | None = None,
                      count: int = 1, **params: Any) -> int:
        """A fault for the next ``count`` matching tasks (0: until cleared)."""
        if kind not in FAULT_KINDS:
            raise InvalidParameter(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        sd = check_uuid(sdUUID, "sdUUID") if sdUUID is not None else None
        img = check_uuid(imgUUID, "imgUUID") if imgUUID is not None else None
        with self.lock:
            fault = Fault(self.next_fault, kind, sd, img, int(count), params)
            self.next_fault += 1
            self.faults.append(fault)
        return fault.id

    def sim_list_faults(self) -> list[dict[str, Any]]:
        with self.lock:
            return [f.describe() for f in self.faults]

    def sim_clear_faults(self) -> int:
        with self.lock:
            n = len(self.faults)
            self.faults = []
        return n


# --- the socket server ----------------------------------------------------------------------


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        for line in self.rfile:
            if not line.strip():
                continue
            reply = self.server.answer(line)
            try:
                self.wfile.write(json.dumps(reply, default=str).encode() + b"\n")
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, path: str, agent: Agent) -> None:
        self.agent = agent
        super().__init__(path, _Handler)

    def answer(self, line: bytes) -> dict[str, Any]:
        rid: Any = None
        try:
            req = json.loads(line)
            if not isinstance(req, dict) or not isinstance(req.get("method"), str):
                raise ProtocolError("Invalid Request: expected an object with a method")
            rid = req.get("id")
            return {"jsonrpc": "2.0", "id": rid, "result": self.agent.call(req["method"], req.get("params"))}
        except AgentError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": to_wire(exc)}
        except ValueError as exc:
            return {"jsonrpc": "2.0", "id": rid, "error": to_wire(ProtocolError(f"Parse error: {exc}"))}
        except Exception as exc:  # noqa: BLE001 - the agent keeps serving
            _log(f"internal error: {type(exc).__name__}: {exc}")
            return {"jsonrpc": "2.0", "id": rid,
                    "error": to_wire(AgentError(f"internal error: {type(exc).__name__}: {exc}"))}


def serve(root: str | os.PathLike[str], socket_path: str | None = None, fsync_data: bool = False,
          ready: Callable[[str], None] | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; refuse if another agent holds the root."""
    r = Root(root)
    r.ensure()
    lock_fd = os.open(r.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise AgentAlreadyRunning(f"another agent serves {r.root}", root=str(r.root)) from None
    os.ftruncate(lock_fd, 0)
    os.write(lock_fd, f"{os.getpid()}\n".encode())
    agent = Agent(r.root, fsync_data=fsync_data)
    path = str(socket_path or r.socket)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    server = _Server(path, agent)
    stopping = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    _log(f"serving {r.root} on {path}")
    if ready is not None:
        ready(path)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for task in agent.tasks.all():
            if not task.done:
                task.stop_event.set()
        deadline = time.monotonic() + 5
        while any(not t.done for t in agent.tasks.all()) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        _log("stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m movedisk.agent.server")
    parser.add_argument("--root", required=True)
    parser.add_argument("--socket", default=None)
    parser.add_argument("--fsync", action="store_true",
                        help="accepted for compatibility: every copy is always fsynced")
    args = parser.parse_args(argv)
    try:
        return serve(args.root, args.socket, args.fsync, ready=lambda p: print(f"ready {p}", flush=True))
    except AgentError as exc:
        print(f"agent: {type(exc).__name__}: {exc.message}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
