"""The memory a process may still allocate, for the checks that refuse a training or
an EASE fit before it starts (``model.check_training_memory``, the experiment's EASE
check).

``psutil.virtual_memory().available`` reads the host's ``/proc/meminfo``: inside a
container (Docker, a Kubeflow pod) it is the node's memory, not the container's, and
a process that passes a check against it is killed at the container's limit. So the
memory available is the least of:

- ``psutil.virtual_memory().available`` (psutil docs: memory that can be given to
  processes without swapping);
- the process's memory cgroup and its ancestors, v2 (``memory.max`` less the working set,
  ``memory.current`` less ``inactive_file`` of ``memory.stat``) or v1
  (``memory.limit_in_bytes`` less ``memory.usage_in_bytes`` less
  ``total_inactive_file``): the working set is what the kernel's cgroup OOM killer
  counts, as the kubelet does (Kubernetes docs, "Node-pressure Eviction");
- the soft ``RLIMIT_AS`` (``ulimit -v``) less the process's virtual size.

No TensorFlow here: the flag checks call it before any model is built.
"""

from __future__ import annotations

import os
import pathlib
import resource
from typing import NamedTuple

#: The cgroup file systems' mount point (cgroup v2 unified, or v1's per-controller
#: folders under it).
CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")

#: cgroup v1 writes "no limit" as a huge page-aligned number; anything at or above
#: this is no limit.
_NO_LIMIT = 2**62


class Available(NamedTuple):
    """Bytes the process may still allocate, and what set that figure."""

    bytes: int
    #: ``"free memory"``, ``"the memory cgroup's limit"`` or ``"the address-space limit
    #: (ulimit -v)"``.
    source: str

    def describe(self) -> str:
        """``"1.5 GB is available"``, naming a limit where one set it."""
        where = "" if self.source == FREE else f" under {self.source}"
        return f"{self.bytes / 1e9:,.1f} GB is available{where}"


FREE = "free memory"
CGROUP = "the memory cgroup's limit"
ADDRESS_SPACE = "the address-space limit (ulimit -v)"


def _read_int(path: pathlib.Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None  # "max": no limit


def _stat(path: pathlib.Path, key: str) -> int:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except (OSError, UnicodeDecodeError):
        pass
    return 0


def _cgroup_dirs(root: pathlib.Path, proc_cgroup: pathlib.Path) -> list[pathlib.Path]:
    """The process's own cgroup folders (v2's, v1's memory one) and their ancestors up
    to the mount (a parent's limit binds its children too), then the mounts' roots
    (inside a container the listed path is often not mounted: its root is the
    container's cgroup)."""
    folders = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        lines = []
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            mount = root
        elif "memory" in controllers.split(","):
            mount = root / "memory"
        else:
            continue
        parts = pathlib.PurePosixPath(path.strip()).parts[1:]  # without the leading "/"
        folders += [mount.joinpath(*parts[:n]) for n in range(len(parts), 0, -1)]
    return [*folders, root, root / "memory"]


def _room(folder: pathlib.Path) -> int | None:
    """One cgroup folder's limit less its working set, or None without a limit."""
    limit = _read_int(folder / "memory.max")  # v2
    used_file, inactive_key = "memory.current", "inactive_file"
    if limit is None:  # v1
        limit = _read_int(folder / "memory.limit_in_bytes")
        used_file, inactive_key = "memory.usage_in_bytes", "total_inactive_file"
    if limit is None or limit >= _NO_LIMIT:
        return None
    used = (_read_int(folder / used_file) or 0) - _stat(folder / "memory.stat", inactive_key)
    return max(limit - max(used, 0), 0)


def cgroup_available(
    root: pathlib.Path = CGROUP_ROOT, proc_cgroup: pathlib.Path = pathlib.Path("/proc/self/cgroup")
) -> int | None:
    """Bytes the process's memory cgroups still allow (the least, over its cgroup and
    their ancestors, of the limit less the working set), or None where no limit is set
    or none can be read.

    Args:
      root: the cgroup mount point (tests pass a folder laid out like it).
      proc_cgroup: the process's cgroup list (``/proc/self/cgroup``).
    """
    rooms = [r for r in map(_room, dict.fromkeys(_cgroup_dirs(root, proc_cgroup))) if r is not None]
    return min(rooms) if rooms else None


def address_space_available() -> int | None:
    """Bytes the soft ``RLIMIT_AS`` still allows (the limit less the process's virtual
    size), or None without one."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or soft >= _NO_LIMIT:
        return None
    import psutil

    return max(soft - psutil.Process(os.getpid()).memory_info().vms, 0)


def available_memory() -> Available:
    """The least of free memory, the memory cgroup's room and the address-space room
    (module docstring), with what set it."""
    import psutil

    limits = ((cgroup_available(), CGROUP), (address_space_available(), ADDRESS_SPACE))
    candidates = [
        Available(int(psutil.virtual_memory().available), FREE),
        *(Available(value, source) for value, source in limits if value is not None),
    ]
    return min(candidates, key=lambda a: a.bytes)


def room(available: int | None) -> Available:
    """``available`` bytes as given (a caller's or a test's figure, taken as free
    memory), or :func:`available_memory` where None."""
    return available_memory() if available is None else Available(available, FREE)
