"""evaluation/outputs.py: a comparison replaces the one before it as one unit (no JAX)."""

import json
from pathlib import Path

import pytest

from mnist_jax.evaluation import outputs


def _write_comparison(where: Path, figures: dict[str, str], tag: str) -> None:
    where.mkdir(parents=True, exist_ok=True)
    for file in figures.values():
        (where / file).write_text(tag)
    (where / "report.md").write_text(tag)
    (where / "tensorboard").mkdir(exist_ok=True)
    (where / "tensorboard" / "events").write_text(tag)
    (where / "comparison.json").write_text(json.dumps({"figures": figures, "tag": tag}))


def test_a_new_comparison_replaces_the_old_one_whole(tmp_path):
    out = tmp_path / "out"
    _write_comparison(out, {"seeds": "seeds.png", "robustness": "robustness.png"}, "old")
    (out / "mlp").mkdir()  # the runs of a compare live beside it: never touched
    with outputs.staging(out) as stage:
        _write_comparison(stage, {"seeds": "seeds.png", "reliability": "reliability.png"}, "new")
        assert json.loads((out / "comparison.json").read_text())["tag"] == "old"  # until done
    names = sorted(p.name for p in out.iterdir())
    assert names == ["comparison.json", "mlp", "reliability.png", "report.md", "seeds.png",
                     "tensorboard"]  # fmt: skip
    assert all((out / n).read_text() == "new" for n in ("seeds.png", "report.md"))
    assert (out / "tensorboard" / "events").read_text() == "new"


def test_a_failed_evaluation_leaves_the_old_comparison_as_it_was(tmp_path):
    out = tmp_path / "out"
    _write_comparison(out, {"seeds": "seeds.png"}, "old")
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(RuntimeError), outputs.staging(out) as stage:
        (stage / "seeds.png").write_text("new")  # a figure drawn, then the evaluation dies
        raise RuntimeError("killed")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not list(out.glob(".incoming.*"))


def test_the_staging_directory_of_a_killed_evaluation_is_removed_by_the_next(tmp_path):
    out = tmp_path / "out"
    dead = out / ".incoming.999999999"  # no such process
    dead.mkdir(parents=True)
    (dead / "seeds.png").write_text("half")
    with outputs.staging(out) as stage:
        _write_comparison(stage, {"seeds": "seeds.png"}, "new")
    assert not dead.exists() and (out / "seeds.png").read_text() == "new"
