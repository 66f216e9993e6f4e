"""The board-runtime build cache key: a -march=native build is keyed by the CPU it was built on."""

from hardware.runtime import build


def test_native_build_key_follows_the_host_cpu(monkeypatch):
    native, cross = build.TARGETS["x86_64"], build.TARGETS["riscv64"]
    monkeypatch.setattr(build, "_host_cpu", lambda: "AMD EPYC|avx2 avx512f")
    keys = build._key(native), build._key(cross)
    monkeypatch.setattr(build, "_host_cpu", lambda: "Intel Xeon|avx2")
    assert build._key(native) != keys[0]  # another CPU: another build, not a cached one that may SIGILL
    assert build._key(cross) == keys[1]  # a cross build for a fixed CPU is the same everywhere

