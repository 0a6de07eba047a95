"""The output directory of an evaluation: checked before the slow work, reused when its
comparison is of the same inputs, and replaced as one unit.

A new comparison is written complete into `<out>/.incoming.<pid>/` and then put in place: the
old comparison.json goes first and the new one last, so that at no moment do new figures sit
beside an old comparison.json (or old ones beside a new one), and a killed evaluation leaves the
old comparison whole or no comparison.json at all, never a mixture that looks finished. The
staging directory of a killed evaluation is removed by the next one.
"""

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mnist_jax.core.errors import UserError
from mnist_jax.evaluation import runs
from mnist_jax.training import faults, rundir

MARKER = "comparison.json"  # what says that a comparison is complete: written last
_STAGING = ".incoming."


def check_output_dir(output_dir: str) -> Path:
    """Creates `output_dir` and proves it writable before any slow work."""
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write to --output_dir={output_dir}: {e.strerror or e}") from None
    return path


def inputs_digest(all_runs: list[runs.Run], options: Any, env: dict[str, Any]) -> str:
    """What a comparison is a function of: the options, the code and its versions, the devices
    (`env`: provenance.collect()), and each run's config, checkpoint step, metrics and summary.
    Equal digests mean a rerun would recompute the same results (external test sets are files
    outside it: never reused)."""
    what = {
        "code": [env["git_commit"], env["versions"], env["platform"], env["num_devices"]],
        "options": dataclasses.asdict(options) | {"reuse": None},
        "runs": [
            [str(run.workdir.resolve()), run.config_dict, run.step, run.metrics, run.summary]
            for run in all_runs
        ],
    }
    return hashlib.sha256(rundir.to_json(what).encode()).hexdigest()[:16]


def up_to_date(out: Path, digest: str) -> dict[str, Any] | None:
    """The comparison in `out` if it was computed from these inputs and every file it names is
    there; None otherwise (absent, older, from other inputs, or incomplete)."""
    try:
        comparison = json.loads((out / "comparison.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(comparison, dict) or comparison.get("inputs_digest") != digest:
        return None
    files = [out / "report.md", *(out / f for f in comparison.get("figures", {}).values())]
    return comparison if all(f.is_file() for f in files) else None


@contextlib.contextmanager
def staging(out: Path) -> Iterator[Path]:
    """A fresh directory to write a complete comparison into; on success its files replace
    the comparison in `out` (`publish`); on failure it is removed and `out` is as it was."""
    for old in out.glob(_STAGING + "*"):  # a killed evaluation's: no process writes it now
        if not _alive(old.name.removeprefix(_STAGING)):
            shutil.rmtree(old, ignore_errors=True)
    stage = out / f"{_STAGING}{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
        faults.point("comparison_staged")  # test hook: complete, not yet in place
        publish(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def publish(stage: Path, out: Path) -> None:
    """Moves the comparison in `stage` into `out`: first the old comparison.json and the files
    it lists go, then the new files come, comparison.json last."""
    old = _listed(out)
    (out / MARKER).unlink(missing_ok=True)
    for name in old:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    for path in sorted(stage.iterdir(), key=lambda p: p.name == MARKER):
        target = out / path.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(path, target)
        faults.point("comparison_file_published")  # test hook: one file moved in


def _listed(out: Path) -> list[str]:
    """The files of the comparison now in `out` (report.md, figures, tensorboard/)."""
    try:
        comparison = json.loads((out / MARKER).read_text())
        figures = list(comparison.get("figures", {}).values())
    except (OSError, ValueError, AttributeError):
        figures = []
    return ["report.md", "tensorboard", *[f for f in figures if "/" not in str(f)]]


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
