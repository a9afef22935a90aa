"""The sandbox's root filesystem: a read-only view of the few host paths a program needs.

Built once per sandbox server, inside its private mount namespace: a small tmpfs becomes the
new ``/``, and only the system directories (``/usr``, ``/lib*``, ``/bin``, ``/etc`` ...), the
Python installation and its import path are bind-mounted into it, read-only, nosuid, nodev.
Everything else on the host (home directories, /work, the host's /tmp, /root ...) is absent.
``/dev`` holds only null, zero, full, random and urandom. ``/sandbox`` and ``/proc`` are empty
mount points that every job fills with its own tmpfs and proc; ``/tmp`` and ``/dev/shm`` are
links to ``/sandbox`` (unless a bound path lives under the host's /tmp, for example a virtual
environment there: then ``/tmp`` is that read-only view and only ``/sandbox`` is writable).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

from . import _linux as lx

WORKDIR = "/sandbox"
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")


def python_paths(extra: Iterable[str] = ()) -> list[str]:
    """The Python installation and every directory or zip on ``sys.path`` (plus ``extra``)."""
    paths = [sys.base_prefix, sys.prefix, sys.exec_prefix, *extra]
    paths += [p for p in sys.path if p and os.path.isabs(p)]
    return paths


def minimal(paths: Iterable[str]) -> list[str]:
    """Existing absolute paths, without those already inside another one."""
    out: list[str] = []
    for p in sorted({os.path.normpath(p) for p in paths if p and os.path.lexists(p)}, key=len):
        if not any(p == q or p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


def _mount_point(root: str, path: str, is_dir: bool) -> str:
    dst = root + path
    os.makedirs(dst if is_dir else os.path.dirname(dst), mode=0o755, exist_ok=True)
    if not is_dir and not os.path.exists(dst):
        open(dst, "w").close()
    return dst


def _bind(root: str, path: str, readonly: bool = True) -> None:
    if os.path.islink(path) and os.path.dirname(path) == "/":  # /bin -> usr/bin on merged-/usr
        os.symlink(os.readlink(path), root + path)
        return
    dst = _mount_point(root, path, os.path.isdir(path))
    lx.mount(path, dst, None, lx.MS_BIND | lx.MS_REC)
    if readonly:
        lx.make_readonly(dst)


def _hide(root: str, path: str) -> None:
    if not os.path.lexists(root + path):
        return
    if os.path.isdir(root + path):
        lx.mount("tmpfs", root + path, "tmpfs", lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV, "size=4k,mode=555")
    else:
        lx.mount(root + "/.empty", root + path, None, lx.MS_BIND)
        lx.make_readonly(root + path)


def build_and_enter(staging: str, readable: Iterable[str], hidden: Iterable[str], user_namespace: bool) -> list[str]:
    """Build the root at ``staging`` (an empty directory) and make it ``/``. The bound paths.

    In a user namespace the host's /proc stays mounted under every job's own /proc, which
    the kernel requires before it allows the job's mount; the job cannot unmount its own
    /proc to reach it (no capabilities).
    """
    lx.mount(None, "/", None, lx.MS_REC | lx.MS_PRIVATE)
    lx.mount("tmpfs", staging, "tmpfs", lx.MS_NOSUID | lx.MS_NODEV, "size=1m,mode=755")
    bound = minimal([*SYSTEM_PATHS, *python_paths(), *readable])
    clash = [p for p in bound if p == WORKDIR or p.startswith(WORKDIR + "/")]
    if clash:
        raise OSError(f"cannot build the sandbox root: {clash[0]} is inside {WORKDIR}, the work directory")
    for path in bound:
        _bind(staging, path)
    for name in DEVICES:
        _bind(staging, f"/dev/{name}", readonly=False)  # device nodes must stay usable
    for link, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("shm", WORKDIR)):
        os.symlink(target, f"{staging}/dev/{link}")
    for d in (WORKDIR, "/proc"):
        os.makedirs(staging + d, mode=0o755, exist_ok=True)
    if not os.path.lexists(staging + "/tmp"):
        os.symlink(WORKDIR, staging + "/tmp")
    open(staging + "/.empty", "w").close()
    if user_namespace:  # the kernel lets a user namespace mount proc only where one is visible
        lx.mount("/proc", staging + "/proc", None, lx.MS_BIND | lx.MS_REC)
    for path in hidden:
        _hide(staging, os.path.normpath(path))
    lx.mount(None, staging, None, lx.MS_REMOUNT | lx.MS_RDONLY | lx.MS_NOSUID | lx.MS_NODEV)
    lx.enter_root(staging)
    return bound
