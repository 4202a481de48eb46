"""Namespaces, a private root and another uid for the inspection sandbox (Linux only).

``run_sandbox`` starts ``python -m workers.sandbox.child`` with an ``isolation`` plan in its
request; the child calls :func:`launch` before anything else (standard library and ctypes only,
no user code has run yet). Three processes result:

* the *launcher* (the process the worker started, still in the worker's pid namespace):
  ``unshare`` (mount, network, pid, IPC and UTS namespaces; also a user namespace when the
  worker is not root) and one ``fork``; it relays the final exit status to the worker;
* the *namespace init* (pid 1 of the new pid namespace): builds the new root, drops to the
  sandbox uid, forks the inspection and reaps; when it exits the kernel kills everything
  left in the namespace;
* the *inspection* (pid 2): execs ``python -m workers.sandbox.child`` again without the
  plan, as the sandbox uid with no capabilities; user code runs here.

The new root is a tmpfs, read-only once built, holding read-only binds of ``/usr`` (and the
``/bin``, ``/lib``... links), the Python installation, the project's ``workers`` package, the
user's file and ``/etc/ld.so.cache``; ``/dev`` with null, zero, full, random and urandom; a
fresh ``/proc`` that shows only the sandbox's processes; a two-line ``/etc/passwd``; and the
job's working directory, the only writable place, bound at its own path (so ``/tmp`` holds
nothing else). The network namespace has just a loopback device, down. RLIMIT_NPROC caps
processes and threads.

Uids: a root worker switches to a uid of its own per sandbox (``_UID_BASE`` + the
launcher's pid, owning no file on the host), so RLIMIT_NPROC counts that sandbox alone and
no file of the worker is writable. A non-root worker cannot switch uid; it maps its uid to
65534 in a new user namespace instead; the namespace init drops the namespace's
capabilities once the root is built and the inspection loses them at its exec (everything
visible but the work dir is read-only, the worker's processes are in another pid namespace).
Both the launcher and the namespace init die with their parent (PR_SET_PDEATHSIG), and the
worker kills the namespace init by pid when it stops a sandbox, which ends every process in
the namespace however user code forked or changed sessions.

:func:`unavailable_reason` probes once per process whether this works on the host; set
``WEIGHTSPACE_SANDBOX=off`` to make it report the host as unable to isolate (tests, or an
operator who wants Python sources refused outright).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import signal
import sys
from pathlib import Path
from typing import Any

CLONE_NEWNS = 0x00020000
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
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_RELATIME = 1 << 21
MNT_DETACH = 2

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38

_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41}
# Per-sandbox uids for a root worker: high enough to own nothing on the host.
_UID_BASE = 2_000_000_000
# Processes and threads of one sandbox (torch starts a dozen threads).
NPROC_LIMIT = 64
# Uid and gid user code sees when the worker is not root (mapped to the worker's own).
_USERNS_ID = 65534
_DEVICES = ("null", "zero", "full", "random", "urandom")
_SETUP_FAILED = 125

_libc: Any = None
_probe_reason: str | None = None
_probed = False
_protected = False


def _lib() -> Any:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int) -> None:
    _check(_lib().prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def b(s: str | None) -> bytes | None:
        return None if s is None else os.fsencode(s)

    result = _lib().mount(
        b(source), b(target), b(fstype), ctypes.c_ulong(flags), b(data) if data else None
    )
    _check(result, f"mount {source or ''} on {target}")


# ----------------------------------------------------------------------------- worker side


def protect_worker() -> None:
    """Make this (worker) process non-dumpable: its ``/proc/<pid>/environ``, ``mem`` and
    ``fd`` then belong to root and cannot be read or ptraced by other uids. Idempotent."""
    global _protected
    if _protected or not sys.platform.startswith("linux"):
        return
    try:
        _prctl(PR_SET_DUMPABLE, 0)
        _protected = True
    except OSError:
        pass


def disabled_by_setting() -> bool:
    return os.environ.get("WEIGHTSPACE_SANDBOX", "").strip().lower() in ("off", "0", "no", "false")


def unavailable_reason() -> str | None:
    """``None`` when this host can isolate the sandbox, else why not (short, for users).

    ``WEIGHTSPACE_SANDBOX=off`` answers "isolation is switched off" without probing; otherwise
    the answer comes from one real isolated run of the child (no torch), cached per process.
    """
    global _probe_reason, _probed
    if disabled_by_setting():
        return "isolation is switched off by WEIGHTSPACE_SANDBOX=off"
    if not _probed:
        _probe_reason = _probe()
        _probed = True
    return _probe_reason


def _probe() -> str | None:
    if not sys.platform.startswith("linux"):
        return "namespaces need Linux"
    if platform.machine() not in _SYS_PIVOT_ROOT:
        return f"pivot_root is not known on {platform.machine()}"
    from workers.errors import ModelError
    from workers.sandbox import run_sandbox

    try:
        result = run_sandbox("probe", __file__, time_limit_s=30, memory_mb=512)
    except ModelError as exc:
        return str(exc).rstrip(".")[:300]
    if not isinstance(result, dict) or result.get("pid") != 2 or result.get("uid") == os.getuid():
        return f"the probe did not run isolated ({result!r:.200})"
    return None


def plan(workdir: str, rootdir: str, model_path: str, project_root: Path) -> dict[str, Any]:
    """What the child needs to build its root: computed here, where paths are known."""
    reads: list[str] = ["/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"]
    reads += [sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(sys.executable)]
    reads.append(str(project_root / "workers"))
    binds: list[str] = []
    links: list[list[str]] = []
    for path in sorted(reads, key=len):
        if not os.path.lexists(path):
            continue
        real = os.path.realpath(path)
        if os.path.isdir(real) and not any(_covers(b, real) for b in binds):
            binds.append(real)
        if real != os.path.abspath(path) and os.path.islink(path):
            links.append([os.path.abspath(path), os.readlink(path)])
    files = [os.path.realpath(model_path)]
    if os.path.isfile("/etc/ld.so.cache"):
        files.append("/etc/ld.so.cache")
    return {
        "mode": "root" if os.geteuid() == 0 else "user",
        "parent": os.getpid(),
        "root": rootdir,
        "workdir": workdir,
        "binds": sorted(binds, key=len),
        "links": links,
        "files": files,
        "nproc": NPROC_LIMIT,
    }


def _covers(bound: str, path: str) -> bool:
    # A non-recursive bind of ``bound`` shows ``path`` when it lies inside on the same mount.
    if path == bound:
        return True
    if not path.startswith(bound.rstrip("/") + "/"):
        return False
    return os.stat(bound).st_dev == os.stat(path).st_dev and not os.path.ismount(path)


# ----------------------------------------------------------------------------- child side


def launch(iso: dict[str, Any], argv: list[str], pid_fd: int | None) -> int:
    """Launcher: create the namespaces, fork the namespace init, relay its exit status.

    ``argv`` is the command line of the inspection (run as pid 2). ``pid_fd`` receives the
    namespace init's pid (in the worker's namespace) so the worker can kill the whole
    namespace. Returns the exit code; mirrors a death by signal by dying of it.
    """
    # Die with the worker (a pool process killed by the OOM killer, say); the namespace init
    # dies with this process in turn, and every other process with it.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != iso["parent"]:
        return _SETUP_FAILED
    uid, gid = os.getuid(), os.getgid()
    user_ns = iso["mode"] == "user"
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    try:
        _check(_lib().unshare(flags | (CLONE_NEWUSER if user_ns else 0)), "unshare")
        if user_ns:
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{_USERNS_ID} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{_USERNS_ID} {gid} 1")
    except OSError as exc:
        print(f"sandbox setup failed: {_why(exc)}", file=sys.stderr, flush=True)
        return _SETUP_FAILED
    status_r, status_w = os.pipe()
    launcher = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(status_r)
        if pid_fd is not None:
            os.close(pid_fd)
        code = _SETUP_FAILED
        try:
            code = _namespace_init(iso, argv, status_w, launcher)
        except BaseException as exc:  # noqa: BLE001 - reported, never propagated past fork
            print(f"sandbox setup failed: {_why(exc)}", file=sys.stderr, flush=True)
        os._exit(code)
    os.close(status_w)
    if pid_fd is not None:
        os.write(pid_fd, str(pid).encode())
        os.close(pid_fd)
    _, status = os.waitpid(pid, 0)
    reported = b""
    while chunk := os.read(status_r, 64):
        reported += chunk
    code = os.waitstatus_to_exitcode(status)
    if reported:
        code = int(reported.decode())
    if code < 0:
        sig = -code
        signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
        return 128 + sig
    return code


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc) or type(exc).__name__


def _namespace_init(iso: dict[str, Any], argv: list[str], status_w: int, launcher: int) -> int:
    user_ns = iso["mode"] == "user"
    workdir = iso["workdir"]
    if user_ns:
        sandbox_uid = sandbox_gid = _USERNS_ID
    else:
        sandbox_uid = sandbox_gid = _UID_BASE + launcher
    _build_root(iso, sandbox_uid, sandbox_gid)
    if not user_ns:
        os.setgroups([])
        os.setresgid(sandbox_gid, sandbox_gid, sandbox_gid)
        os.setresuid(sandbox_uid, sandbox_uid, sandbox_uid)
    # This process stays, as the reaper: without capabilities (in a user namespace it has
    # them until here) and non-dumpable, user code cannot borrow its rights by ptrace.
    _drop_capabilities()
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    # After the uid change, which clears it: die with the launcher.
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    import resource

    resource.setrlimit(resource.RLIMIT_NPROC, (iso["nproc"], iso["nproc"]))
    os.chdir(workdir)
    child = os.fork()
    if child == 0:
        try:
            os.close(status_w)
            os.execv(argv[0], argv)
        finally:
            os._exit(_SETUP_FAILED)
    # Reap everything (orphans are reparented here) until the inspection ends; leaving then
    # makes the kernel kill whatever else is left in the namespace.
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            os.write(status_w, str(os.waitstatus_to_exitcode(status)).encode())
            return 0


def _drop_capabilities() -> None:
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two Data structs
    data = (Data * 2)()
    _check(_lib().capset(ctypes.byref(header), data), "capset")


def _build_root(iso: dict[str, Any], uid: int, gid: int) -> None:
    root = iso["root"]
    workdir = iso["workdir"]
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m,nr_inodes=4096")
    for src in iso["binds"]:
        _bind(src, root, read_only=True, is_dir=True)
    for link, target in iso["links"]:
        dst = root + link
        if not os.path.lexists(dst):
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.symlink(target, dst)
    for src in iso["files"]:
        _bind(src, root, read_only=True, is_dir=False)
    # /dev: a handful of harmless devices.
    os.makedirs(root + "/dev", exist_ok=True)
    _mount("tmpfs", root + "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k")
    for name in _DEVICES:
        _bind(f"/dev/{name}", root, read_only=False, is_dir=False, devices=True)
    # A minimal account database instead of the host's.
    etc = root + "/etc"
    os.makedirs(etc, exist_ok=True)
    Path(etc, "passwd").write_text(
        f"root:x:0:0:root:/:/usr/sbin/nologin\nsandbox:x:{uid}:{gid}:sandbox:{workdir}:/usr/sbin/nologin\n"
    )
    Path(etc, "group").write_text(f"root:x:0:\nsandbox:x:{gid}:\n")
    # The work dir, the one writable place.
    if iso["mode"] == "root":
        os.chown(workdir, uid, gid)
    _bind(workdir, root, read_only=False, is_dir=True)
    os.makedirs(root + "/proc", exist_ok=True)
    _mount("proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # Swap roots: the old one is detached, so nothing outside the new tree stays reachable.
    os.chdir(root)
    pivot = _SYS_PIVOT_ROOT[platform.machine()]
    _check(_lib().syscall(ctypes.c_long(pivot), b".", b"."), "pivot_root")
    _check(_lib().umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")
    _mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _bind(src: str, root: str, *, read_only: bool, is_dir: bool, devices: bool = False) -> None:
    dst = root + src
    if is_dir:
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if not os.path.exists(dst):
            with open(dst, "w"):
                pass
    _mount(src, dst, None, MS_BIND)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | _locked_flags(src)
    if read_only:
        flags |= MS_RDONLY
    if not devices:
        flags |= MS_NODEV
    _mount(None, dst, None, flags)


def _locked_flags(path: str) -> int:
    # In a user namespace a bind mount cannot drop flags its source has, so keep them.
    f = os.statvfs(path).f_flag
    flags = 0
    for st, ms in (
        (os.ST_NOSUID, MS_NOSUID),
        (os.ST_NODEV, MS_NODEV),
        (os.ST_NOEXEC, MS_NOEXEC),
        (os.ST_RDONLY, MS_RDONLY),
        (getattr(os, "ST_NOATIME", 1024), MS_NOATIME),
        (getattr(os, "ST_NODIRATIME", 2048), MS_NODIRATIME),
        (getattr(os, "ST_RELATIME", 4096), MS_RELATIME),
    ):
        if f & st:
            flags |= ms
    return flags


def probe_result() -> dict[str, Any]:
    """What the probe's inspection reports: seen from inside, for the worker to check."""
    return {"pid": os.getpid(), "uid": os.getuid(), "env": sorted(os.environ)}


__all__ = ["launch", "plan", "protect_worker", "unavailable_reason", "NPROC_LIMIT"]
