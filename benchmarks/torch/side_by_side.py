"""The seed projects' MLP and CNN trained and run by mnist_jax and by PyTorch, side by side in one
process on the same machine: training images/s at batch 128, test-set inference images/s, and
the latency of one image.

  pip install torch==2.13.0            # the CPU build (these machines hold its wheel)
  python benchmarks/torch/side_by_side.py --output_dir=benchmarks/cpu_2core/torch

The networks are benchmarks/configs/seed_mlp.py and seed_cnn.py (784-512-512-10; conv3x3x32-
pool-conv3x3x64-pool-dense64 'VALID', 121,930 parameters), each written again in PyTorch with
the same layers, dropout, loss and Adam at 1e-3, and no augmentation. What each side times:

- mnist_jax: the trainer's own compiled program, a `lax.scan` over 64 steps with the data on the
  device (batches sliced there, dropout keys drawn there); one Python call per 64 steps.
- PyTorch: its usual eager loop, `model(x)`, `loss.backward()`, `opt.step()` per step, on
  batches sliced from one pre-shuffled float tensor in memory (no DataLoader), with as many
  threads as the CPU has cores.

Rounds alternate between the two (one mnist_jax timing, then one PyTorch timing of the same 64
steps) so that a change of the shared machine's speed reaches both; medians are reported, with
the ratio mnist_jax / PyTorch. Writes side_by_side.json and side_by_side.md.
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
import torch
from torch import nn

from mnist_jax import models
from mnist_jax.benchmarks import speed
from mnist_jax.core import configuration, provenance
from mnist_jax.data import normalize

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = {
    "mlp": ROOT / "benchmarks/configs/seed_mlp.py",
    "cnn": ROOT / "benchmarks/configs/seed_cnn.py",
}
STEPS = 64  # train steps per timing
BATCH = 128


def torch_model(name: str) -> nn.Module:
    """The seed network in PyTorch, layer for layer as mnist_jax builds it."""
    if name == "mlp":
        return nn.Sequential(
            nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.2), nn.Linear(512, 10),
        )  # fmt: skip
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.25), nn.Linear(5 * 5 * 64, 64), nn.ReLU(), nn.Dropout(0.25),
        nn.Linear(64, 10),
    )  # fmt: skip


class TorchTraining:
    """PyTorch's eager loop over batches of one pre-shuffled tensor, timed `STEPS` at a time."""

    def __init__(self, name: str, images: np.ndarray, labels: np.ndarray):
        torch.manual_seed(0)
        self.model = torch_model(name)
        self.params = sum(p.numel() for p in self.model.parameters())
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        order = np.random.default_rng(0).permutation(len(images))
        self.x = torch.from_numpy(images[order][:, None].astype(np.float32))
        self.y = torch.from_numpy(labels[order].astype(np.int64))
        self.at, self.seconds = 0, []

    def run(self) -> None:
        self.model.train()
        start = time.perf_counter()
        for _ in range(STEPS):
            if self.at + BATCH > len(self.x):
                self.at = 0
            x, y = self.x[self.at : self.at + BATCH], self.y[self.at : self.at + BATCH]
            self.at += BATCH
            self.opt.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(self.model(x), y)
            loss.backward()
            self.opt.step()
        self.seconds.append(time.perf_counter() - start)


def torch_inference(model: nn.Module, test: np.ndarray) -> tuple[float, float]:
    """(test images/s at batch 1000, median ms of one image) in eval mode without gradients."""
    model.eval()
    x = torch.from_numpy(test[:, None].astype(np.float32))
    with torch.no_grad():
        model(x[:1000])
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            for i in range(0, len(x), 1000):
                model(x[i : i + 1000])
            runs.append(time.perf_counter() - start)
        one = x[:1]
        latency = []
        for _ in range(200):
            start = time.perf_counter()
            model(one)
            latency.append(time.perf_counter() - start)
    return len(x) / statistics.median(runs), 1e3 * statistics.median(latency)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", default="benchmarks/latest/torch")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    machine = speed.machine()
    rows, datasets = [], {}
    for name, path in CONFIGS.items():
        config = configuration.load(str(path))
        data = speed._dataset(datasets, config)
        program = speed.TrainProgram(config, data, STEPS)
        raw = data["raw"]
        train_images = np.asarray(normalize(raw.train.images))[..., 0]  # as the step does
        mine = TorchTraining(name, train_images, raw.train.labels)
        program.run(0)  # warm-up: first-call allocations
        mine.run()
        for r in range(args.rounds):
            program.run(r + 1)
            mine.run()
        jax_train = STEPS * BATCH / statistics.median(program.seconds[1:])
        torch_train = STEPS * BATCH / statistics.median(mine.seconds[1:])
        test_images = np.asarray(normalize(raw.test.images))[..., 0]
        mine_infer = speed.inference_of(config, data)  # what the benchmark measures
        jax_infer, jax_ms = mine_infer["images_per_second"], mine_infer["latency_ms_batch1_median"]
        torch_infer, torch_ms = torch_inference(mine.model, test_images)
        params = models.count_params(
            jax.eval_shape(lambda c=config: models.init_variables(
                models.create_model(c), jax.random.key(0)))["params"]
        )  # fmt: skip
        rows.append({
            "model": name, "config": str(path.relative_to(ROOT)), "parameters": params,
            "torch_parameters": mine.params,
            "train_images_per_second": {"mnist_jax": jax_train, "torch": torch_train},
            "train_rounds_seconds": {"mnist_jax": program.seconds[1:], "torch": mine.seconds[1:]},
            "inference_images_per_second": {"mnist_jax": jax_infer, "torch": torch_infer},
            "latency_ms_batch1": {"mnist_jax": jax_ms, "torch": torch_ms},
            "compile_seconds": program.compile_seconds,
        })  # fmt: skip
        print(f"{name}: train {jax_train:,.0f} vs {torch_train:,.0f} img/s; inference "
              f"{jax_infer:,.0f} vs {torch_infer:,.0f} img/s; batch-1 {jax_ms:.2f} vs "
              f"{torch_ms:.2f} ms", file=sys.stderr)  # fmt: skip
    report = {
        "machine": machine | {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                              "loadavg_end": os.getloadavg()},
        "steps_per_timing": STEPS, "batch": BATCH, "rounds": args.rounds, "models": rows,
    }  # fmt: skip
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "side_by_side.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    (out / "side_by_side.md").write_text(markdown(report))
    print(markdown(report))


def markdown(report: dict) -> str:
    m = report["machine"]
    cpu = provenance.describe_cpu(m["cpu"], m["sgemm_gflops"])
    lines = [
        f"mnist_jax (JAX {m['versions']['jax']}) and PyTorch {m['torch']} "
        f"({m['torch_threads']} threads) on {cpu}, commit {(m['git_commit'] or '?')[:10]}; "
        f"load average {m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at "
        f"the end; medians of {report['rounds']} interleaved rounds of "
        f"{report['steps_per_timing']} steps of batch {report['batch']}.",
        "",
        "Each cell: mnist_jax / PyTorch (their ratio: above 1, mnist_jax trains or infers more "
        "images per second, or takes longer for one image).",
        "",
        "| model | parameters | train img/s | test-set inference img/s | batch-1 latency ms |",
        "|---|---|---|---|---|",
    ]
    for r in report["models"]:
        cells = []
        for key in ("train_images_per_second", "inference_images_per_second",
                    "latency_ms_batch1"):  # fmt: skip
            a, b = r[key]["mnist_jax"], r[key]["torch"]
            fmt = "{:.2f}" if key.startswith("latency") else "{:,.0f}"
            cells.append(f"{fmt.format(a)} / {fmt.format(b)} ({a / b:.2f}x)")
        lines.append(f"| {r['model']} | {r['parameters']:,} | {' | '.join(cells)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
