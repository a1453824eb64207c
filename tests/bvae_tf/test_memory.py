"""The memory available to a check: free memory, a container's cgroup, ulimit -v."""

import resource

import pytest

from bvae_tf import memory


def _write(folder, **files):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name.replace("__", ".")).write_text(text)


def _proc(tmp_path, text):
    path = tmp_path / "proc_cgroup"
    path.write_text(text)
    return path


def test_cgroup_v2_limit_less_the_working_set(tmp_path):
    root = tmp_path / "cgroup"
    _write(
        root / "kubepods" / "pod1",
        memory__max=str(8 * 2**30),
        memory__current=str(3 * 2**30),
        memory__stat=f"anon 123\ninactive_file {2**30}\nactive_file 5\n",
    )
    proc = _proc(tmp_path, "0::/kubepods/pod1\n")
    # 8 GiB limit, 3 GiB charged of which 1 GiB is reclaimable page cache.
    assert memory.cgroup_available(root, proc) == 6 * 2**30


def test_cgroup_v1_memory_controller(tmp_path):
    root = tmp_path / "cgroup"
    _write(
        root / "memory" / "docker" / "abc",
        memory__limit_in_bytes=str(4 * 2**30),
        memory__usage_in_bytes=str(2**30),
        memory__stat="cache 10\ntotal_inactive_file 0\n",
    )
    proc = _proc(tmp_path, "4:memory:/docker/abc\n3:cpu:/docker/abc\n")
    assert memory.cgroup_available(root, proc) == 3 * 2**30


def test_a_container_whose_listed_cgroup_is_not_mounted_reads_the_mount_root(tmp_path):
    root = tmp_path / "cgroup"
    _write(root, memory__max=str(2**30), memory__current=str(2**29))
    proc = _proc(tmp_path, "0::/some/host/path\n")  # not under the container's mount
    assert memory.cgroup_available(root, proc) == 2**29


@pytest.mark.parametrize(
    "files",
    [
        {"memory__max": "max", "memory__current": "5"},  # v2 without a limit
        {"memory__limit_in_bytes": "9223372036854771712"},  # v1's "no limit"
        {},  # no memory controller at all
    ],
)
def test_no_cgroup_limit_is_none(tmp_path, files):
    root = tmp_path / "cgroup"
    _write(root, **files)
    assert memory.cgroup_available(root, _proc(tmp_path, "0::/\n")) is None


def test_a_working_set_above_the_limit_leaves_nothing(tmp_path):
    root = tmp_path / "cgroup"
    _write(root, memory__max="100", memory__current="150")
    assert memory.cgroup_available(root, _proc(tmp_path, "0::/\n")) == 0


def test_the_least_room_wins_and_is_named(monkeypatch):
    monkeypatch.setattr("psutil.virtual_memory", type("Memory", (), {"available": 10**10}))
    monkeypatch.setattr(memory, "cgroup_available", lambda: 2 * 10**9)
    monkeypatch.setattr(memory, "address_space_available", lambda: None)
    room = memory.available_memory()
    assert room == memory.Available(2 * 10**9, memory.CGROUP)
    assert room.describe() == "2.0 GB is available under the memory cgroup's limit"
    monkeypatch.setattr(memory, "address_space_available", lambda: 10**9)
    assert memory.available_memory().source == memory.ADDRESS_SPACE
    monkeypatch.setattr(memory, "cgroup_available", lambda: None)
    monkeypatch.setattr(memory, "address_space_available", lambda: None)
    room = memory.available_memory()
    assert room == memory.Available(10**10, memory.FREE)
    assert room.describe() == "10.0 GB is available"


def test_the_address_space_limit_less_the_virtual_size(monkeypatch):
    monkeypatch.setattr(resource, "getrlimit", lambda which: (resource.RLIM_INFINITY,) * 2)
    assert memory.address_space_available() is None
    monkeypatch.setattr(resource, "getrlimit", lambda which: (50 * 2**30, resource.RLIM_INFINITY))
    vms = type("Info", (), {"vms": 20 * 2**30})
    monkeypatch.setattr("psutil.Process.memory_info", lambda self: vms)
    assert memory.address_space_available() == 30 * 2**30


def test_a_training_refused_under_a_cgroup_limit_says_so(monkeypatch):
    from bvae_tf import model as Mo

    monkeypatch.setattr(memory, "cgroup_available", lambda: 10**6)
    with pytest.raises(Mo.MemoryFloorError, match=r"GB is available under the memory cgroup"):
        Mo.check_training_memory(10_000, 3, 100, 500, True, flags="--latent-dim")
    with pytest.raises(Mo.MemoryFloorError, match=r"GFF kernels alone need .* cgroup's limit"):
        Mo.check_gate_kernel_memory(1000, 3, flags="--latent-dim")
    Mo.check_gate_kernel_memory(10**6, 0, flags="--latent-dim")  # no kernels: nothing to refuse


def test_a_parent_cgroups_tighter_limit_binds(tmp_path):
    root = tmp_path / "cgroup"
    _write(root / "pods", memory__max=str(2 * 2**30), memory__current=str(2**30))
    _write(root / "pods" / "pod1", memory__max=str(8 * 2**30), memory__current=str(2**29))
    proc = _proc(tmp_path, "0::/pods/pod1\n")
    assert memory.cgroup_available(root, proc) == 2**30  # the parent's 2 GiB, 1 GiB held
