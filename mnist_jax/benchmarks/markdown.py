"""The benchmark's report (benchmark.json's dict) as benchmark.md: the numbers and the machine
they were measured on, in the tables benchmarks/RESULTS.md quotes."""

import statistics

from mnist_jax.core import provenance


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def markdown(report: dict) -> str:
    """benchmark.md: every section of a report (speed.run_benchmark) as markdown tables."""
    m = report["machine"]
    gf = lambda x: "-" if x is None else f"{x / 1e9:.0f}"
    out = [
        f"# mnist_jax benchmark ({m['time']})",
        "",
        f"{m['num_devices']} x {m['device_kind']} ({m['platform']}), CPU "
        f"{provenance.describe_cpu(m['cpu'], m['sgemm_gflops'])}, "
        f"jax {m['versions'].get('jax')}, flax "
        f"{m['versions'].get('flax')}, optax {m['versions'].get('optax')}, commit "
        f"{m['git_commit']}; load average {m['loadavg_start']} at the start, "
        f"{m.get('loadavg_end')} at the end. `{m['command']}`",
        "",
        "## Training throughput (after compilation; medians over interleaved rounds)",
        "",
        "| config | formulation | batch | images/s | MFLOP/image | GFLOP/s | matmul GFLOP/s "
        "| fraction of matmul | compile s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["throughput"]:
        mf = "-" if r["flops_per_image"] is None else f"{r['flops_per_image'] / 1e6:.1f}"
        frac = "-" if r["fraction_of_matmul"] is None else f"{r['fraction_of_matmul']:.2f}"
        out.append(
            f"| {r['config']} | {r['form']} | {r['batch']} | {r['images_per_second']:.0f} | {mf} "
            f"| {gf(r['achieved_flops'])} | {gf(_median(r['matmul_flops_rounds']))} | {frac} "
            f"| {r['compile_seconds']:.1f} |"
        )
    if report.get("cnn_speedup") is not None:
        out += ["", f"Default CNN vs naive formulation at batch 128: {report['cnn_speedup']:.1f}x"]
    out += [
        "",
        "## Time to accuracy (training seconds; compilation and evaluation apart)",
        "",
        "| config | epochs | batch | mean acc | min acc | median train s | min-max train s "
        "| median compile s | fraction of matmul | target met |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["time_to_accuracy"]:
        frac = r["median_fraction_of_matmul"]
        out.append(
            f"| {r['config']} | {r['epochs']} | {r['batch']} | {100 * r['mean_accuracy']:.2f}% "
            f"| {100 * r['min_accuracy']:.2f}% | {r['median_train_seconds']:.2f} "
            f"| {r['min_train_seconds']:.2f}-{r['max_train_seconds']:.2f} "
            f"| {r['median_compile_seconds']:.1f} | {'-' if frac is None else f'{frac:.2f}'} "
            f"| {r.get('target_met', '-')} |"
        )
    out += ["", "Per seed: accuracy, train s, compile s, matmul GFLOP/s measured just before:", ""]
    for r in report["time_to_accuracy"]:
        runs = ", ".join(
            f"{x['seed']}: {100 * x['test_accuracy']:.2f}% {x['train_seconds']:.2f} s "
            f"{x['compile_seconds']:.1f} s {gf(x['matmul_flops'])}"
            for x in r["runs"]
        )
        out.append(f"- {r['config']}: {runs}")
    out += [
        "",
        "## Inference",
        "",
        "| config | eval batch | test images/s | batch-1 latency ms (median / p90) |",
        "|---|---:|---:|---:|",
    ]
    for r in report["inference"]:
        out.append(
            f"| {r['config']} | {r['eval_batch']} | {r['images_per_second']:.0f} "
            f"| {r['latency_ms_batch1_median']:.2f} / {r['latency_ms_batch1_p90']:.2f} |"
        )
    return "\n".join(out) + "\n"
