"""The file operations of --sort-into: put one file at a new name in DIR, never over another file.

Every name in DIR is created exclusively: a hard link (``os.link``) or a
symbolic link fails when the name exists, where ``os.replace`` would
overwrite it. A copy is written to a temporary name, fsync'ed, checked
against the fingerprint the file had when it was read for prediction, then
linked to its name. A source is never touched here unless it is to be
unlinked, and `Refused` (with a one-line reason) leaves it where it was.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

from resnet_tl.data.decode import DecodeError
from resnet_tl.fileio import fsync_dir
from resnet_tl.inference.inputs import file_kind, read_source

_CHUNK = 1 << 20


class Refused(Exception):
    """A file left where it was; str(e) is the reason, one line."""


class Changed(Refused):
    """Refused because the source changed since it was read for prediction; `kept`: DIR's copy of the version read, if any."""

    def __init__(self, reason: str, kept: str = ""):
        super().__init__(reason)
        self.kept = kept


def file_state(path: str | Path) -> os.stat_result | None:
    """os.stat (links followed), or None when nothing (reachable) is there."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def read_fingerprint(path: str | Path) -> dict | None:
    """The fingerprint `read_source` gives, or None when the file cannot be read."""
    try:
        return read_source(path, fingerprint=True)[1]
    except DecodeError:
        return None


def state_fp(st: os.stat_result) -> dict:
    """A fingerprint from a stat alone (a file that could not be read)."""
    return {"dev": st.st_dev, "ino": st.st_ino, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns}


def unchanged(st: os.stat_result | None, fp: dict | None, strict: bool = False) -> bool:
    """Whether the file stat'ed as `st` is still the one fingerprinted as `fp` (strict: its status too: chmod, links)."""
    if st is None or fp is None:
        return False
    same = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (fp["dev"], fp["ino"], fp["size"], fp["mtime_ns"])
    return same and (not strict or st.st_ctime_ns == fp["ctime_ns"])


def check_source(src: str, fp: dict | None) -> os.stat_result:
    """The source's stat, if it is a regular file still as it was read for prediction; else Refused."""
    st = os.stat(src)  # FileNotFoundError: the caller's "vanished"
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"not a regular file ({file_kind(st.st_mode)})")
    if fp is not None and fp.get("unstable"):
        raise Changed("it was being written while it was read for prediction")
    if fp is not None and not unchanged(st, fp):
        raise Changed("it changed after it was read for prediction (size or modification time)")
    return st


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def is_copy_of(path: Path, fp: dict | None) -> bool:
    """Whether `path` is a regular file with the size and sha256 in `fp`."""
    st = file_state(path)
    if fp is None or fp.get("sha256") is None or st is None or not stat.S_ISREG(st.st_mode) or st.st_size != fp["size"]:
        return False
    return sha256_file(path) == fp["sha256"]


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def link_source(src: str, dst: Path) -> bool:
    """Hard-link `src` at `dst` (a move without copying; the same inode). False when this
    filesystem pair cannot (another device, no hard links, not allowed); FileExistsError when `dst` exists."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:
        return False
    fsync_dir(dst.parent)  # the new name is durable before the old one may be unlinked
    return True


def copy_to(src: str, tmp: Path, fp: dict | None) -> None:
    """Copy `src` to `tmp` (ours: replaced if left by a killed run), fsync'ed, modification time kept;
    Refused unless the bytes copied are exactly those read for prediction."""
    if fp is None or fp.get("sha256") is None:
        raise Refused("it could not be read")
    remove(tmp)
    with open(src, "rb") as f:
        st = os.fstat(f.fileno())
        if not unchanged(st, fp):
            raise Changed("it changed after it was read for prediction (size or modification time)")
        h, n = hashlib.sha256(), 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as out:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                n += len(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    if n != fp["size"] or h.hexdigest() != fp["sha256"]:
        remove(tmp)
        raise Changed("it changed while it was being copied")
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))


def publish(tmp: Path, dst: Path) -> None:
    """Give the finished `tmp` the name `dst`, exclusively (FileExistsError when `dst` exists)."""
    try:
        os.link(tmp, dst)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS):
            raise
        # No hard links in DIR (FAT, exFAT, some network shares): claim the name with an empty
        # file created exclusively, then rename over our own claim.
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        os.replace(tmp, dst)
    else:
        os.unlink(tmp)
    fsync_dir(dst.parent)


def remove(path: str | Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def unlink_source(src: str) -> None:
    os.unlink(src)
    fsync_dir(os.path.dirname(src))
