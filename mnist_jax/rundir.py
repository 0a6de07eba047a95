"""The files of a run directory, and the record of what produced them.

  <workdir>/config.json     the resolved config (checked again on resume)
  <workdir>/metrics.jsonl   one JSON object per epoch, each epoch exactly once
  <workdir>/summary.json    written once, at the end: test metrics and provenance
  <workdir>/checkpoints/    Orbax (checkpoint.py)

Only process 0 writes; every write is atomic (temporary file + rename), so a run killed at any
moment leaves the previous version of each file intact.
"""

import datetime
import json
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import ml_collections

from mnist_jax.errors import CheckpointError

# Keys that may change between a run and its resumption without changing its numbers.
RESUMABLE_KEYS = frozenset(
    {
        "data.dir",
        "parallel.mode",
        "log_every_seconds",
        "steps_per_chunk",
        "eval_batch_size",
        "checkpoint.every_epochs",
        "checkpoint.keep",
    }
)
PACKAGES = ("jax", "jaxlib", "flax", "optax", "orbax-checkpoint", "numpy", "ml-collections")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= _flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as plain JSON values (tuples become lists)."""
    return json.loads(config.to_json_best_effort())


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir)
        self.is_writer = jax.process_index() == 0
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.summary_path = self.path / "summary.json"
        self.checkpoint_dir = self.path / "checkpoints"

    def prepare(self, config: ml_collections.ConfigDict) -> None:
        """Create the directory and config.json, or check that an existing run used `config`."""
        new = config_to_dict(config)
        if self.config_path.exists():
            old = json.loads(self.config_path.read_text())
            a, b = _flatten(old), _flatten(new)
            changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
            blocking = [k for k in changed if k not in RESUMABLE_KEYS]
            if blocking:
                diffs = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in blocking[:5])
                raise CheckpointError(
                    f"{self.path} holds a run with a different config ({diffs}); "
                    "use a new --workdir, or delete this one to start over"
                )
            return
        if self.is_writer:
            self.path.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.config_path, json.dumps(new, indent=2) + "\n")

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        lines = self.metrics_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def keep_metrics_through(self, epoch: int) -> None:
        """Drop records after `epoch` (written after the checkpoint a resumed run restarts from)."""
        if not self.is_writer:
            return
        records = [r for r in self.read_metrics() if r["epoch"] <= epoch]
        _write_atomic(self.metrics_path, "".join(json.dumps(r) + "\n" for r in records))

    def append_metrics(self, record: dict[str, Any]) -> None:
        if not self.is_writer:
            return
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_summary(self) -> dict[str, Any] | None:
        return json.loads(self.summary_path.read_text()) if self.summary_path.exists() else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.is_writer:
            _write_atomic(self.summary_path, json.dumps(summary, indent=2) + "\n")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _cpu_model() -> str:
    """The CPU's marketing name on Linux (speeds depend on it), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance() -> dict[str, Any]:
    """What produced a result: versions, devices, processes, host, code revision, time."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    devices = jax.devices()
    return {
        "versions": versions,
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "num_devices": len(devices),
        "num_processes": jax.process_count(),
        "hostname": socket.gethostname(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "git_commit": _git_commit(),
        "command": " ".join(sys.argv),
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
