"""Orbax checkpoints of a run, verified on restore.

A checkpoint is numbered by the global optimizer step it was taken after (end of an epoch, or
the chunk boundary where a preempted run stopped) and holds three items:
  state  the TrainState as host numpy arrays (restores on any number of devices);
  best   the variables (params and model state) of the best epoch so far by validation loss;
  meta   JSON: the training loop's own state (see train.py), the sha256 of every array in
         `state` and `best` and of the meta item itself (the loop's epoch, history and best:
         an edited one is refused too), and the fingerprint of the config that wrote it.
Orbax does not detect altered array files: a restore recomputes the checksums and refuses a
checkpoint whose arrays, meta or config fingerprint do not match, so a corrupt checkpoint can
never feed a result. The manager keeps the latest `keep` checkpoints.
"""

import contextlib
import hashlib
import json
import os
import shutil
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from mnist_jax.core.errors import CheckpointError, UserError

# (How Orbax/TensorStore name it, what to say): a full disk, a read-only one, a quota.
_DISK_ERRORS = (
    ("os_error_code='28'", "No space left on device"),
    ("os_error_code='30'", "Read-only file system"),
    ("os_error_code='122'", "Disk quota exceeded"),
)


def _not_read_only_notice(record: Any) -> bool:
    """Orbax warns 'Given directory is read only=...' on every read-only manager it opens (two
    per evaluated run); that is the mode asked for, not a problem. Only that record is dropped."""
    return not (
        record.pathname.endswith("checkpoint_manager.py")
        and str(record.msg).startswith("Given directory is read only=")
    )


logging.get_absl_logger().addFilter(_not_read_only_notice)


def _not_a_disk_error_report(record: Any) -> bool:
    """Orbax logs a full or read-only disk from each of its writer threads, a traceback each;
    `Checkpointer._disk` reports it once, in one line. Only those records are dropped."""
    if "/orbax/" not in record.pathname.replace("\\", "/"):
        return True
    text = str(record.msg) + (str(record.exc_info[1]) if record.exc_info else "")
    return not any(code in text for code, _ in _DISK_ERRORS)


logging.get_absl_logger().addFilter(_not_a_disk_error_report)


def _without_late_read_callbacks(previous: Any) -> Any:
    """`previous` unraisable-exception hook, minus one message that is not an error.

    When a restore fails on one unreadable array, Orbax closes its event loop while TensorStore
    may still be reading other arrays; each read that completes afterwards tries to wake the
    closed loop, and TensorStore prints that RuntimeError ('Event loop is closed') as an
    unraisable exception: a traceback on stderr after the one-line error that reports the bad
    checkpoint. Only that exception, raised in `call_soon_threadsafe`, is dropped.
    """

    def hook(unraisable: Any) -> None:
        e = unraisable.exc_value
        frames = traceback.walk_tb(unraisable.exc_traceback)
        late = isinstance(e, RuntimeError) and str(e) == "Event loop is closed"
        if late and any(f.f_code.co_name == "call_soon_threadsafe" for f, _ in frames):
            logging.debug("ignored a read completing after a failed restore: %s", e)
            return
        previous(unraisable)

    return hook


sys.unraisablehook = _without_late_read_callbacks(sys.unraisablehook)


def _digest(meta: dict[str, Any]) -> str:
    """sha256 of the meta item as canonical JSON (sorted keys): what a restore reads back."""
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def tree_checksums(tree: Any) -> dict[str, str]:
    """'/'-joined key path -> sha256 of the leaf's dtype, shape and bytes."""
    sums = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.ascontiguousarray(np.asarray(leaf))
        digest = hashlib.sha256(f"{x.dtype.str}{x.shape}".encode())
        digest.update(x.tobytes())
        sums[jax.tree_util.keystr(path)] = digest.hexdigest()
    return sums


class Restored:
    """What `Checkpointer.restore` returns."""

    def __init__(self, step: int, state: Any, best: Any, meta: dict[str, Any]):
        self.step, self.state, self.best, self.meta = step, state, best, meta


class Checkpointer:
    """Saves and restores a run's checkpoints under `<workdir>/checkpoints`."""

    def __init__(self, directory: str | os.PathLike, *, keep: int = 2, read_only: bool = False):
        if keep < 1:
            raise CheckpointError(f"checkpoint.keep must be >= 1, got {keep}")
        self.directory = Path(directory).absolute()
        self.read_only = read_only
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else keep,
            save_interval_steps=0 if read_only else 1,  # (Orbax warns when it must set it)
            read_only=read_only,
            create=not read_only,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._closed = False

    def steps(self) -> list[int]:
        """Every committed checkpoint, newest first."""
        return sorted(self._manager.all_steps(), reverse=True)

    @contextlib.contextmanager
    def _disk(self) -> Iterator[None]:
        """A full or read-only disk under Orbax (its errors are ValueErrors naming the os error,
        raised by the write or by the wait for a background one) is one line, not a traceback;
        the run keeps its last complete checkpoint."""
        try:
            yield
        except Exception as e:
            text = str(e)
            reason = next((r for code, r in _DISK_ERRORS if code in text or r in text), None)
            if reason is None:
                raise
            raise UserError(
                f"cannot write a checkpoint in {self.directory}: {reason}; free space, then rerun "
                "the same command to resume from the last complete checkpoint"
            ) from None

    def save(
        self, step: int, state: Any, best: Any, meta: dict[str, Any], fingerprint: str
    ) -> None:
        meta = dict(meta, fingerprint=fingerprint)
        meta["checksums"] = {
            "state": tree_checksums(state), "best": tree_checksums(best), "meta": _digest(meta),
        }  # fmt: skip
        with self._disk():
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state),
                    best=ocp.args.StandardSave(best),
                    meta=ocp.args.JsonSave(meta),
                ),
            )

    def restore(
        self, step: int, state: Any | None, best: Any, fingerprints: tuple[str, ...]
    ) -> Restored:
        """The checkpoint of `step`, shaped like the templates and verified; `state=None` skips
        the train state (evaluation needs only the best variables)."""
        path = self.directory / str(step)
        items = {"best": ocp.args.StandardRestore(best), "meta": ocp.args.JsonRestore()}
        if state is not None:
            items["state"] = ocp.args.StandardRestore(state)
        try:
            restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        except Exception as e:  # orbax raises many types; all mean "cannot use this checkpoint"
            first_line = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise CheckpointError(f"checkpoint {path} cannot be read ({first_line})") from e
        meta = restored.meta
        if not isinstance(meta, dict) or "checksums" not in meta:
            raise CheckpointError(f"checkpoint {path} has no checksums in its meta item")
        sums = meta["checksums"]
        # The loop state (epoch, history, best) too; a checkpoint written before it was summed
        # has no "meta" sum and is taken as it is.
        if (
            "meta" in sums
            and _digest({k: v for k, v in meta.items() if k != "checksums"}) != (sums["meta"])
        ):
            raise CheckpointError(
                f"checkpoint {path}: its loop state (epoch, history, best) does not match its "
                "checksum; it was edited or is corrupt"
            )
        if meta.get("fingerprint") not in fingerprints:
            raise CheckpointError(f"checkpoint {path} was written by a different config")
        names = ("best",) if state is None else ("state", "best")
        for name in names:
            if tree_checksums(restored[name]) != meta["checksums"][name]:
                raise CheckpointError(f"checkpoint {path}: '{name}' does not match its checksums")
        return Restored(step, restored["state"] if state is not None else None, restored.best, meta)

    def quarantine(self, step: int, reason: str) -> Path:
        """Move a bad checkpoint out of the manager's way (never delete it); returns where."""
        target = self.directory.parent / "corrupt_checkpoints" / str(step)
        suffix = 1
        while target.exists():
            target = target.with_name(f"{step}.{suffix}")
            suffix += 1
        target.parent.mkdir(exist_ok=True)
        shutil.move(self.directory / str(step), target)
        (target / "REASON.txt").write_text(reason + "\n")
        self._manager.reload()
        return target

    def wait(self) -> None:
        with self._disk():
            self._manager.wait_until_finished()

    def close(self) -> None:
        """Wait for background writes to commit, then release the manager (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            with self._disk():
                self._manager.wait_until_finished()
        finally:
            self._manager.close()
