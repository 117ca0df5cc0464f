"""The agent's files: storage domains as directories, volume metadata, task records.

::

    ROOT/
      agent.sock                      the JSON-RPC socket (default)
      agent.lock                      flock held by the running agent
      agent.log                       what `movedisk agent serve` logs
      tmp/                            scratch (data staged for qemu-io)
      tasks/<taskID>.json             one record per task, replaced atomically
      domains/<sdUUID>/dom_md.json    {"sdUUID", "spUUID", "capacity", ...}
      domains/<sdUUID>/images/<imgUUID>/<volUUID>        the volume: a qcow2 or raw image
      domains/<sdUUID>/images/<imgUUID>/<volUUID>.meta   its metadata (JSON)
      domains/<sdUUID>/images/_remove_me_<imgUUID>/      an image group being deleted

A volume's metadata (VDSM's names): ``volUUID``, ``image`` (the image group that
owns it), ``domain``, ``parent`` (BLANK_UUID for a base volume), ``format``
(COW: a qcow2 image whose backing file is its parent's volume id, relative to
the image group's directory; RAW: a raw base), ``voltype`` (LEAF, INTERNAL or
SHARED), ``legality`` (LEGAL, or ILLEGAL while it is written), ``capacity``
(virtual size in bytes), ``data_bytes`` (the data its own layer holds),
``checksum`` (of its own layer, see images.layer_checksum), ``ctime``.

Template sharing, as on VDSM file domains: a disk created from a template has
its own image group directory holding its own volumes *and a hard link* of the
template's volume file and of its ``.meta`` (whose ``image`` still names the
template's image group). So in the dependent directory a volume whose metadata
names another image group is a shared (linked) volume; it is listed with the
dependent chain (``shared: true``) but never copied, zeroed or counted twice.
Deleting the dependent image group unlinks its links; deleting the template's
image group is refused while another image group on the domain has a volume
whose parent is one of its volumes.

Every metadata file is written to a temporary name, fsynced and renamed (atomic).
Shared volumes' metadata is never rewritten (a rename would break the link).

Durability (what survives a power cut): a file's bytes are durable once the file
is fsynced, a name (creation, rename, link, removal) once its *directory* is
fsynced. :func:`fsync_file` and :func:`fsync_dir` are the only two ways the agent
makes anything durable, and the agent reports a task finished only after both
have run for everything the task wrote (see server.Agent._do_move).
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import (
    ImageDoesNotExistInSD,
    InvalidUUID,
    StorageDomainDoesNotExist,
    StorageDomainNotInPool,
    VolumeDoesNotExist,
)

BLANK_UUID = "00000000-0000-0000-0000-000000000000"
REMOVED_IMAGE_PREFIX = "_remove_me_"
META_SUFFIX = ".meta"
DOMAIN_META = "dom_md.json"


def check_uuid(value: Any, name: str) -> str:
    """``value`` as a canonical UUID string, else InvalidUUID naming the parameter."""
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise InvalidUUID(f"{name} is not a UUID: {value!r}", parameter=name) from None


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Make the bytes of ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the names in directory ``path`` durable (files created, renamed, linked, removed)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any], fsync: bool = True,
                      sync_dir: bool = False) -> None:
    """Write ``data`` to ``path`` through a temporary file (fsynced) and a rename; with
    ``sync_dir`` the rename itself is made durable too (the directory is fsynced)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True)
        if fsync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if sync_dir:
        fsync_dir(path.parent)


def read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


class Root:
    """The paths under an agent root directory."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).absolute()

    @property
    def domains(self) -> Path:
        return self.root / "domains"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def tmp(self) -> Path:
        """Scratch files (data staged for qemu-io), on the domains' filesystem."""
        return self.root / "tmp"

    @property
    def socket(self) -> Path:
        return self.root / "agent.sock"

    @property
    def lock(self) -> Path:
        return self.root / "agent.lock"

    def ensure(self) -> None:
        self.domains.mkdir(parents=True, exist_ok=True)
        self.tasks.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def domain_dir(self, sdUUID: str) -> Path:
        return self.domains / sdUUID

    def images_dir(self, sdUUID: str) -> Path:
        return self.domains / sdUUID / "images"

    def image_dir(self, sdUUID: str, imgUUID: str) -> Path:
        return self.images_dir(sdUUID) / imgUUID

    def removal_dir(self, sdUUID: str, imgUUID: str) -> Path:
        return self.images_dir(sdUUID) / f"{REMOVED_IMAGE_PREFIX}{imgUUID}"

    # --- domains -------------------------------------------------------------------

    def domain_ids(self) -> list[str]:
        if not self.domains.is_dir():
            return []
        return sorted(p.name for p in self.domains.iterdir() if (p / DOMAIN_META).is_file())

    def domain_meta(self, sdUUID: str, spUUID: str | None = None) -> dict[str, Any]:
        """The domain's metadata; StorageDomainDoesNotExist / NotInPool otherwise."""
        path = self.domain_dir(sdUUID) / DOMAIN_META
        try:
            meta = read_json(path)
        except FileNotFoundError:
            raise StorageDomainDoesNotExist(
                f"Storage domain does not exist: {sdUUID}", sdUUID=sdUUID
            ) from None
        if spUUID is not None and meta.get("spUUID") != spUUID:
            raise StorageDomainNotInPool(
                f"Storage domain not in pool: domain={sdUUID}, pool={spUUID}",
                sdUUID=sdUUID,
                spUUID=spUUID,
            )
        return meta

    def write_domain_meta(self, sdUUID: str, meta: dict[str, Any]) -> None:
        write_json_atomic(self.domain_dir(sdUUID) / DOMAIN_META, meta, sync_dir=True)

    def used_bytes(self, sdUUID: str) -> int:
        """Bytes allocated by the domain's volume files, each inode counted once."""
        seen: set[int] = set()
        total = 0
        images = self.images_dir(sdUUID)
        if not images.is_dir():
            return 0
        for img in images.iterdir():
            if not img.is_dir():
                continue
            for f in img.iterdir():
                if f.name.endswith(META_SUFFIX) or f.name.startswith("."):
                    continue
                st = f.stat()
                if st.st_ino in seen:
                    continue
                seen.add(st.st_ino)
                total += st.st_blocks * 512
        return total

    # --- image groups ---------------------------------------------------------------

    def image_ids(self, sdUUID: str) -> list[str]:
        images = self.images_dir(sdUUID)
        if not images.is_dir():
            return []
        return sorted(
            p.name
            for p in images.iterdir()
            if p.is_dir() and not p.name.startswith((REMOVED_IMAGE_PREFIX, "."))
        )

    def removals(self, sdUUID: str) -> list[str]:
        """Image groups whose deletion started and did not finish."""
        images = self.images_dir(sdUUID)
        if not images.is_dir():
            return []
        return sorted(
            p.name[len(REMOVED_IMAGE_PREFIX) :]
            for p in images.iterdir()
            if p.name.startswith(REMOVED_IMAGE_PREFIX)
        )

    def require_image(self, sdUUID: str, imgUUID: str) -> Path:
        path = self.image_dir(sdUUID, imgUUID)
        if not path.is_dir():
            raise ImageDoesNotExistInSD(
                f"Image does not exist in domain: image={imgUUID}, domain={sdUUID}",
                imgUUID=imgUUID,
                sdUUID=sdUUID,
            )
        return path

    def volume_metas(self, image_dir: Path) -> dict[str, dict[str, Any]]:
        """Every volume in an image group directory, by id (linked template volumes included)."""
        out: dict[str, dict[str, Any]] = {}
        try:
            names = list(image_dir.iterdir())
        except (FileNotFoundError, NotADirectoryError):  # none, or deleted meanwhile
            return out
        for f in names:
            if f.name.endswith(META_SUFFIX) and not f.name.startswith("."):
                try:
                    out[f.name[: -len(META_SUFFIX)]] = read_json(f)
                except (OSError, ValueError):
                    continue
        return out

    def chain(self, sdUUID: str, imgUUID: str) -> list[dict[str, Any]]:
        """The image group's volumes, base first, each with ``shared`` and file facts."""
        img_dir = self.require_image(sdUUID, imgUUID)
        return ordered_chain(img_dir, self.volume_metas(img_dir), imgUUID)

    def volume(self, sdUUID: str, imgUUID: str, volUUID: str) -> dict[str, Any]:
        img_dir = self.require_image(sdUUID, imgUUID)
        path = img_dir / f"{volUUID}{META_SUFFIX}"
        try:
            meta = read_json(path)
        except FileNotFoundError:
            raise VolumeDoesNotExist(
                f"Volume does not exist: {volUUID} in image {imgUUID} on {sdUUID}",
                volUUID=volUUID,
            ) from None
        return with_file_facts(img_dir, meta, imgUUID)

    def owner_of(self, sdUUID: str, volUUID: str) -> str | None:
        """The image group on the domain that owns ``volUUID`` (not one that links it)."""
        for img in self.image_ids(sdUUID):
            meta_path = self.image_dir(sdUUID, img) / f"{volUUID}{META_SUFFIX}"
            if meta_path.is_file():
                try:
                    meta = read_json(meta_path)
                except (OSError, ValueError):
                    continue
                if meta.get("image") == img:
                    return img
        return None

    def dependents(self, sdUUID: str, imgUUID: str) -> list[dict[str, str]]:
        """Volumes in other image groups of the domain whose parent belongs to ``imgUUID``."""
        own = {
            v
            for v, m in self.volume_metas(self.image_dir(sdUUID, imgUUID)).items()
            if m.get("image") == imgUUID
        }
        out = []
        for img in self.image_ids(sdUUID):
            if img == imgUUID:
                continue
            for vol, meta in self.volume_metas(self.image_dir(sdUUID, img)).items():
                if meta.get("image") == img and meta.get("parent") in own:
                    out.append({"imgUUID": img, "volUUID": vol, "parent": meta["parent"]})
        return sorted(out, key=lambda d: (d["imgUUID"], d["volUUID"]))


def with_file_facts(img_dir: Path, meta: dict[str, Any], imgUUID: str) -> dict[str, Any]:
    """``meta`` plus what the file says: apparent size, allocated bytes, shared or not."""
    info = dict(meta)
    path = img_dir / meta["volUUID"]
    try:
        st = path.stat()
        info["apparentsize"] = st.st_size
        info["truesize"] = st.st_blocks * 512
    except FileNotFoundError:
        info["apparentsize"] = None
        info["truesize"] = None
    info["shared"] = meta.get("image") != imgUUID
    return info


def ordered_chain(
    img_dir: Path, metas: dict[str, dict[str, Any]], imgUUID: str
) -> list[dict[str, Any]]:
    """The volumes base first (parent before child); volumes off the chain come last."""
    children: dict[str, list[str]] = {}
    for vol, meta in metas.items():
        children.setdefault(meta.get("parent", BLANK_UUID), []).append(vol)
    roots = [v for v, m in metas.items() if m.get("parent", BLANK_UUID) not in metas]
    order: list[str] = []
    stack = sorted(roots, reverse=True)
    while stack:
        vol = stack.pop()
        if vol in order:
            continue
        order.append(vol)
        stack.extend(sorted(children.get(vol, []), reverse=True))
    order += sorted(set(metas) - set(order))
    return [with_file_facts(img_dir, metas[v], imgUUID) for v in order]


def walk(root: Root, sdUUID: str | None = None) -> Iterator[dict[str, Any]]:
    """Every domain with its image groups and volumes, read from the files only."""
    for sd in root.domain_ids():
        if sdUUID is not None and sd != sdUUID:
            continue
        meta = root.domain_meta(sd)
        images = []
        for img in root.image_ids(sd):
            try:
                chain = root.chain(sd, img)
            except ImageDoesNotExistInSD:
                # deleted (renamed away) since the listing: the removals, read after this,
                # show it while its deletion is under way
                continue
            images.append({"imgUUID": img, "volumes": chain})
        yield {
            "sdUUID": sd,
            "spUUID": meta.get("spUUID"),
            "capacity": meta.get("capacity"),
            "used": root.used_bytes(sd),
            "images": images,
            "removing": root.removals(sd),
        }
