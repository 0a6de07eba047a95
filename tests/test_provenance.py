"""What a result records about the machine it was computed on (docs/determinism.md)."""

from pathlib import Path

from mnist_jax.core import provenance


def test_cpu_kind_names_the_extensions_and_the_xla_isa_limit(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    kind = provenance.cpu_kind()
    flags = next(
        (
            line
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("flags")
        ),
        "",
    )
    assert kind["avx512"] == (" avx512f " in f"{flags} ")
    assert kind["xla_max_isa"] is None and kind["cores"] >= 1 and kind["model"]
    monkeypatch.setenv(
        "XLA_FLAGS", "--xla_cpu_max_isa=AVX2 --xla_force_host_platform_device_count=2"
    )
    limited = provenance.cpu_kind()
    assert limited["xla_max_isa"] == "AVX2"
    text = provenance.describe_cpu(limited, 123.4)
    assert "XLA code limited to AVX2" in text and text.endswith("; 123 GFLOP/s sgemm)")


def test_cpu_kind_is_described_by_its_isa():
    base = {"model": "Some CPU", "cores": 2, "xla_max_isa": None}
    assert provenance.describe_cpu({**base, "avx512": True, "extensions": ["avx2", "avx512f"]}) == (
        "Some CPU (2 cores, AVX-512)"
    )
    assert "AVX2" in provenance.describe_cpu({**base, "avx512": False, "extensions": ["avx2"]})


def test_sgemm_speed_is_measured():
    assert provenance.sgemm_gflops(n=256, repeats=2) > 0.5  # any CPU does more than 0.5 GFLOP/s
