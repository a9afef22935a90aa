"""A seccomp filter for sandboxed runs: the kernel surface programs never need, refused.

Built once per sandbox server with libseccomp (through ``pyseccomp``), loaded by every run
process (the program's and the test's) after it dropped its privileges. Default: allow;
each rule below answers an error number instead of running the system call:

- new namespaces (``unshare``, ``setns``, ``clone`` with a ``CLONE_NEW*`` flag; ``clone3``
  answers ENOSYS so the C library falls back to ``clone``): an unprivileged user namespace
  would hand the program every capability inside it, and netlink with them;
- kernel keyrings (``keyctl``, ``add_key``, ``request_key``): keys outlive the job;
- other processes' memory and descriptors (``ptrace``, ``process_vm_readv/writev``,
  ``pidfd_getfd``, ``kcmp``, ``process_madvise``);
- mounts, modules, kexec, BPF, perf events, userfaultfd, io_uring, swap, reboot, accounting,
  quotas, file handles, syslog, I/O ports, ``personality``, clock setting, page migration;
- sockets other than AF_UNIX, AF_INET and AF_INET6 (netlink, packet, ALG, vsock ...).

Where libseccomp or pyseccomp is missing, :func:`build` raises and the server records the
filter as unavailable (loud degradation, see ``server.py``). libseccomp compiles the rules to
a BPF program once, in the server; each run process installs that program with one
``prctl`` (compiling it again per process would cost a millisecond or more per job).
"""

from __future__ import annotations

import ctypes
import errno
import tempfile

DENIED = (
    "unshare", "setns", "keyctl", "add_key", "request_key",
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp", "process_madvise",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount", "fsconfig",
    "fspick", "mount_setattr", "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "bpf", "perf_event_open", "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "swapon", "swapoff", "reboot", "acct", "quotactl", "quotactl_fd", "open_by_handle_at", "name_to_handle_at",
    "lookup_dcookie", "syslog", "vhangup", "iopl", "ioperm", "modify_ldt", "uselib", "personality",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "migrate_pages", "move_pages",
    "fanotify_init", "nfsservctl", "sysfs", "ustat", "_sysctl",
)
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
ALLOWED_FAMILIES = (1, 2, 10)  # AF_UNIX, AF_INET, AF_INET6


class Filter:
    """A compiled BPF program; :meth:`load` installs it in the calling process."""

    def __init__(self, program: bytes) -> None:
        if not program or len(program) % 8:
            raise ValueError(f"a BPF program is a whole number of 8-byte instructions, got {len(program)} bytes")
        self.program = program
        self._buffer = ctypes.create_string_buffer(program, len(program))
        self._fprog = _SockFprog(len(program) // 8, ctypes.cast(self._buffer, ctypes.c_void_p))
        self._prctl = ctypes.CDLL(None, use_errno=True).prctl
        self._prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]

    def load(self) -> None:
        """Install the filter (needs ``no_new_privs`` or CAP_SYS_ADMIN)."""
        if self._prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(self._fprog), 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_SECCOMP): {errno.errorcode.get(err, err)}")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def build() -> Filter:
    """The compiled filter (``.load()`` it in each run). Raises on a missing libseccomp."""
    import pyseccomp as sc

    flt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)

    def rule(action: int, name: str, *args: object) -> None:
        try:
            flt.add_rule(action, name, *args)
        except (OSError, ValueError, RuntimeError):
            pass  # a call this architecture does not have

    for name in DENIED:
        rule(eperm, name)
    for flag in NAMESPACE_FLAGS:
        rule(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for call in ("socket", "socketpair"):
        for family in range(max(ALLOWED_FAMILIES)):
            if family not in ALLOWED_FAMILIES:
                rule(sc.ERRNO(errno.EAFNOSUPPORT), call, sc.Arg(0, sc.EQ, family))
        rule(sc.ERRNO(errno.EAFNOSUPPORT), call, sc.Arg(0, sc.GT, max(ALLOWED_FAMILIES)))
    with tempfile.TemporaryFile() as f:
        flt.export_bpf(f)
        f.seek(0)
        return Filter(f.read())
