"""Thin ctypes wrappers over the Linux system calls that the sandbox needs.

Python 3.11's :mod:`os` has no ``unshare``, ``mount``, ``pivot_root``, ``prctl`` or
``capset``; these call the C library (or the raw system call) directly and raise
:class:`OSError` with the errno on failure. Only the sandbox server imports this module.
"""

from __future__ import annotations

import ctypes
import os
import platform

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID, _MOUNT_ATTR_NODEV = 1, 2, 4
_AT_FDCWD, _AT_RECURSIVE = -100, 0x8000
_SYS_MOUNT_SETATTR = 442  # the same number on every architecture (new syscalls are unified)
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.syscall.restype = ctypes.c_long


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _b(s: str | None) -> bytes | None:
    return None if s is None else os.fsencode(s)


def unshare(flags: int) -> None:
    """unshare(2): move this process into new namespaces (CLONE_NEWPID: its next child)."""
    _check(_libc.unshare(flags), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None) -> None:
    """mount(2)."""
    _check(_libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)), f"mount {target}")


def umount(target: str, flags: int = 0) -> None:
    """umount2(2)."""
    _check(_libc.umount2(_b(target), flags), f"umount {target}")


def prctl(option: int, arg2: int = 0) -> None:
    """prctl(2) with one argument."""
    _check(_libc.prctl(option, arg2, 0, 0, 0), f"prctl {option}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def make_readonly(path: str) -> None:
    """Make the mount at ``path`` and every mount below it read-only, nosuid and nodev.

    Uses mount_setattr(2) (Linux >= 5.12), which changes only those flags; falls back to a
    bind remount that keeps the flags the kernel would refuse to clear.
    """
    attr = _MountAttr(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID | _MOUNT_ATTR_NODEV, 0, 0, 0)
    ret = _libc.syscall(_SYS_MOUNT_SETATTR, _AT_FDCWD, _b(path), _AT_RECURSIVE, ctypes.byref(attr),
                        ctypes.sizeof(attr))
    if ret == 0:
        return
    kept = os.statvfs(path).f_flag & (MS_NOEXEC | 1024 | 2048 | 4096)  # noexec, noatime, nodiratime, relatime
    mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def enter_root(new_root: str) -> None:
    """Make ``new_root`` (a mount point) this mount namespace's ``/`` and detach the old root.

    pivot_root(2) where the architecture's number is known, else a move mount + chroot.
    """
    os.chdir(new_root)
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is not None and _libc.syscall(number, b".", b".") == 0:
        umount(".", MNT_DETACH)  # the old root, stacked on top by pivot_root(".", ".")
    else:
        mount(new_root, "/", None, 1 << 13)  # MS_MOVE
        os.chroot(".")
    os.chdir("/")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities(cap_last: int) -> None:
    """Empty the bounding, ambient, effective, permitted and inheritable capability sets.

    ``cap_last`` is /proc/sys/kernel/cap_last_cap, read before /proc went away.
    """
    for cap in range(cap_last + 1):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError:
            pass  # EINVAL for caps this kernel does not know; EPERM once CAP_SETPCAP is gone
    _libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def write_id_maps(uid: int, gid: int) -> None:
    """In a fresh user namespace: map inside 0 to the outside ``uid``/``gid``."""
    with open("/proc/self/setgroups", "w") as f:
        f.write("deny")
    with open("/proc/self/uid_map", "w") as f:
        f.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as f:
        f.write(f"0 {gid} 1")
