"""The files of a run directory, their integrity, and what makes two configs the same run.

  <workdir>/config.json     the resolved config (checked again on resume)
  <workdir>/metrics.jsonl   one JSON object per epoch, each epoch exactly once
  <workdir>/summary.json    written once, at the very end: test metrics and provenance
  <workdir>/checkpoints/    Orbax (checkpoint.py); bad ones are moved to corrupt_checkpoints/
  <workdir>/.lock           held by the one process that writes the directory

Only process 0 writes. Every write is atomic (temporary file + rename), so a run killed at any
moment leaves the previous version of each file intact, and all JSON is strict (no NaN or
Infinity). metrics.jsonl is rewritten from the checkpoint a run resumes from, so it never holds
an epoch twice, whatever moment the run was killed at.
"""

import fcntl
import functools
import hashlib
import json
import math
import os
import re
import socket
from pathlib import Path
from typing import Any

import jax
import ml_collections
from absl import logging

from mnist_jax.core.errors import CheckpointError, UserError, WorkdirBusyError

# Keys that never change a run's numbers: a run may be resumed with other values, and runs that
# differ only in them are the same model in a comparison.
NEUTRAL_KEYS = frozenset(
    {
        "data.dir",
        "parallel.mode",
        "parallel.cpu_kernels",
        "layers.conv_impl",
        "layers.pool_impl",
        "log_every_seconds",
        "log_every_steps",
        "test_every_epochs",
        "steps_per_chunk",
        "eval_batch_size",
        "checkpoint.every_epochs",
        "checkpoint.keep",
    }
)


# A seed's directory in a set of runs: seed_0, seed-1, seed2, and a study's seed=3.
SEED_DIR = re.compile(r"seed[_=-]?\d+")


def is_seed_dir(path: str | os.PathLike) -> bool:
    """Whether a run directory is one seed of a set (runs/compare/mlp/seed_0): its parent names
    the model."""
    return SEED_DIR.fullmatch(Path(path).name) is not None


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out |= flatten(v, f"{prefix}{k}.")
        else:
            out[f"{prefix}{k}"] = v
    return out


def config_to_dict(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """The config as plain JSON values (tuples become lists)."""
    return json.loads(config.to_json_best_effort())


def identity(config_dict: dict[str, Any], *, ignore: frozenset[str] = frozenset()) -> dict:
    """What a run's numbers depend on: `model`, and every other key whose value differs from
    configs/default.py, except NEUTRAL_KEYS, the sections of model families other than the
    run's own (a model is built from its own section only), and `ignore`.

    Keys at their defaults are left out, so a key added later with its "off" default, or a new
    family's section, changes no earlier run's identity."""
    flat, defaults = flatten(config_dict), _defaults()
    model = flat.get("model")
    others = tuple(f"{name}." for name in _families() if name != model)
    return {
        k: v
        for k, v in sorted(flat.items())
        if k == "model"
        or (
            k not in NEUTRAL_KEYS | ignore
            and not k.startswith(others)
            and (k not in defaults or v != defaults[k])
        )
    }


def fingerprint(config_dict: dict[str, Any]) -> str:
    """sha256 of the run's identity: equal for configs that produce the same numbers."""
    return _digest(identity(config_dict))


def _digest(identity_dict: dict[str, Any]) -> str:
    text = json.dumps(identity_dict, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def accepted_fingerprints(config_dict: dict[str, Any]) -> tuple[str, str]:
    """The fingerprints a checkpoint of this config may carry: today's, and the one checkpoints
    written before identities left out keys at their defaults carry (every key but the neutral
    ones; ema_decay only when on), so that those run directories still resume and evaluate."""
    flat = flatten(config_dict)
    legacy = {
        k: v
        for k, v in sorted(flat.items())
        if k not in NEUTRAL_KEYS and not (k == "optimizer.ema_decay" and v == 0.0)
    }
    return fingerprint(config_dict), _digest(legacy)


@functools.cache
def _defaults() -> dict[str, Any]:
    from mnist_jax.configs import default  # the package's own config files

    return flatten(config_to_dict(default.get_config()))


def _families() -> tuple[str, ...]:
    from mnist_jax.models import registry  # importing mnist_jax.models registers every family

    return tuple(registry.MODELS)


def to_json(value: Any, **kwargs: Any) -> str:
    """Strict JSON: a non-finite float is a bug here, never written as NaN/Infinity."""
    return json.dumps(value, allow_nan=False, **kwargs)


def finite_or_none(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


def finite_tree(value: Any) -> Any:
    """`value` with every non-finite float (in nested dicts, lists, tuples) replaced by None."""
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: finite_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_tree(v) for v in value]
    return value


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def strict_loads(text: str) -> Any:
    """json.loads without Python's NaN/Infinity extension: files written here never hold them."""
    return json.loads(text, parse_constant=_reject_constant)


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from a file, or a one-line error naming the file and what is wrong."""
    try:
        value = strict_loads(path.read_text())
    except OSError as e:
        raise UserError(f"cannot read {what} {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise UserError(f"{what} {path} is not valid JSON ({e}); it is corrupt") from None
    if not isinstance(value, dict):
        raise UserError(
            f"{what} {path} holds a JSON {type(value).__name__}, not an object; it is corrupt"
        )
    return value


# What readers of summary.json take from it (evaluation, studies), each a number or null.
SUMMARY_NUMBERS = ("test_accuracy", "test_loss", "train_seconds", "epochs_run", "best_epoch")


def describe(config: ml_collections.ConfigDict) -> str:
    """What a config trains, in one short line (the fingerprint tells configs apart)."""
    opt, data = config.optimizer, config.data
    fraction = f" on {data.train_fraction:.0%} of the data" if data.train_fraction < 1 else ""
    return (
        f"{config.model}, seed {config.seed}, {config.num_epochs} epoch(s) of batch "
        f"{config.batch_size}{fraction}, {opt.name} lr {opt.learning_rate:g} "
        f"({config.schedule.name}), fingerprint {fingerprint(config_to_dict(config))}"
    )


class RunDir:
    """Reads and writes one run directory."""

    def __init__(self, workdir: str | os.PathLike, what: str = "workdir"):
        self.path = Path(workdir)
        self.what = what  # how errors name the directory ('workdir', 'study output directory')
        self.is_writer = jax.process_index() == 0
        self.config_path = self.path / "config.json"
        self.metrics_path = self.path / "metrics.jsonl"
        self.summary_path = self.path / "summary.json"
        self.checkpoint_dir = self.path / "checkpoints"
        self.lock_path = self.path / ".lock"
        self._lock_file = None

    def check_usable(self) -> None:
        """A workdir that exists must be a writable directory that no other run holds (checked
        before any work; `lock` takes the lock itself, later)."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"workdir {self.path} exists and is not a directory")
        probe = self.path if self.path.exists() else _existing_parent(self.path)
        if not probe.is_dir():
            raise UserError(f"workdir {self.path} cannot be created: {probe} is not a directory")
        if not os.access(probe, os.W_OK | os.X_OK):
            raise UserError(f"workdir {self.path} is not writable ({probe} denies writing)")
        if self.is_writer and self.lock_path.is_file():
            with open(self.lock_path) as f:
                self._try_lock(f)
                fcntl.flock(f, fcntl.LOCK_UN)

    def check_config(self, config: ml_collections.ConfigDict) -> None:
        """If the directory holds a run, it must be of `config` (up to neutral keys)."""
        if not self.config_path.exists():
            return
        old = read_json(self.config_path, "run config")
        a, b = identity(old), identity(config_to_dict(config))
        changed = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        if changed:
            diffs = "; ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in changed[:5])
            raise CheckpointError(
                f"{self.path} holds a run with a different config ({diffs}); "
                "use a new --workdir, or delete this one to start over"
            )

    def lock(self) -> None:
        """Become the one writer of this directory, or fail naming the current holder.

        An flock is released by the kernel when its holder dies (even by kill -9), so a dead
        run's lock never blocks the next one.
        """
        if not self.is_writer:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.lock_path, "a+")  # noqa: SIM115  (held until release())
        try:
            self._try_lock(f)
        except UserError:
            f.close()
            raise
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on host {socket.gethostname()}\n")
        f.flush()
        self._lock_file = f
        # The one writer now: a temporary file of write_atomic here is a killed writer's.
        for stale in self.path.glob(".*.tmp[0-9]*"):
            stale.unlink(missing_ok=True)

    def _try_lock(self, f: Any) -> None:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise WorkdirBusyError(
                f"{self.what} {self.path} is in use by {holder}; wait for it to finish or use "
                f"another {self.what}"
            ) from None

    def wait_for_holder(self) -> None:
        """Returns once no process holds this directory's lock (at once if none does)."""
        if not self.lock_path.is_file():
            return
        with open(self.lock_path) as f:
            fcntl.flock(f, fcntl.LOCK_SH)  # blocks while a writer holds LOCK_EX
            fcntl.flock(f, fcntl.LOCK_UN)

    def release(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def write_config(self, config: ml_collections.ConfigDict) -> None:
        """config.json (every key); the log gets one short line, not the whole config."""
        if self.is_writer and not self.config_path.exists():
            write_atomic(self.config_path, to_json(config_to_dict(config), indent=2) + "\n")
        logging.info("Config: %s; every key in %s", describe(config), self.config_path)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The epoch records; a torn last line (a kill mid-write) is dropped with a warning."""
        if not self.metrics_path.exists():
            return []
        try:
            lines = [line for line in self.metrics_path.read_text().splitlines() if line.strip()]
        except OSError as e:
            raise UserError(f"cannot read {self.metrics_path}: {e.strerror or e}") from None
        records = []
        for i, line in enumerate(lines):
            try:
                record = strict_loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not an object")
                records.append(record)
            except ValueError:
                if i != len(lines) - 1:
                    raise UserError(
                        f"{self.metrics_path} line {i + 1} is not valid JSON; the file is corrupt"
                    ) from None
                logging.warning("%s: ignoring a torn last line (%d bytes, a write cut short)",
                                self.metrics_path, len(line))  # fmt: skip
        return records

    def restore_metrics(self, records: list[dict[str, Any]]) -> None:
        """Rewrite metrics.jsonl as `records` (the epochs of the checkpoint a run resumes from).

        A kill can leave the file with a torn last line, or with epochs logged after the last
        checkpoint (they are trained again, and must not appear twice); a warning names what
        is repaired.
        """
        if not self.is_writer:
            return
        try:
            old = self.read_metrics()  # warns about a torn last line
        except UserError as e:
            logging.warning("%s; rewriting it from the checkpoint", e)
            old = []
        if len(old) > len(records):
            dropped = [r.get("epoch") for r in old[len(records) :]]
            logging.warning(
                "%s: dropping epochs %s, logged after the checkpoint this run resumes from; they "
                "are trained again", self.metrics_path, dropped,
            )  # fmt: skip
        self.write_metrics(records)

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        """Replace metrics.jsonl (on resume: the records of the checkpoint resumed from)."""
        if self.is_writer:
            write_atomic(self.metrics_path, "".join(to_json(r) + "\n" for r in records))

    def append_metrics(self, record: dict[str, Any]) -> None:
        if not self.is_writer:
            return
        with open(self.metrics_path, "a") as f:
            f.write(to_json(record) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_summary(self, required: tuple[str, ...] = ()) -> dict[str, Any] | None:
        """summary.json, its numbers checked (a hand-edited or foreign file is one line):
        each of SUMMARY_NUMBERS present is a number or null (a loss that was not finite), and
        each key of `required` is there."""
        if not self.summary_path.exists():
            return None
        summary = read_json(self.summary_path, "run summary")
        for key in SUMMARY_NUMBERS:
            value = summary.get(key)
            if (key not in summary and key in required) or isinstance(
                value, bool | str | list | dict
            ):
                raise UserError(
                    f"run summary {self.summary_path}: {key!r} is {value!r}, not a number; it "
                    "is corrupt (delete it and rerun training to write it again)"
                )
        return summary

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.is_writer:
            write_atomic(self.summary_path, to_json(summary, indent=2) + "\n")


def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path
