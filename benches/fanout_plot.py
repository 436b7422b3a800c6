"""Plots the fan-out benchmark's results: server-added p99 and server CPU against listener
count, Hallway and Mumble side by side (1 speaker rows of `cargo bench --bench fanout`).

    python3 benches/fanout_plot.py target/fanout.csv docs/fanout.png
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(source: str, out: str) -> None:
    rows = [
        r
        for r in csv.DictReader(open(source))
        if r["scenario"] == "fanout" and r["speakers"] == "1"
    ]
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(10, 4))
    for server, color in (("hallway", "tab:blue"), ("mumble", "tab:orange")):
        mine = sorted(
            (r for r in rows if r["server"] == server), key=lambda r: int(r["listeners"])
        )
        if not mine:
            continue
        x = [int(r["listeners"]) for r in mine]
        p99 = [float(r["p99_ms"]) for r in mine]
        lo = [p - float(r["p99_min_ms"]) for p, r in zip(p99, mine)]
        hi = [float(r["p99_max_ms"]) - p for p, r in zip(p99, mine)]
        lat.errorbar(x, p99, yerr=[lo, hi], marker="o", capsize=3, label=server, color=color)
        pct = [100 * float(r["cpu_s"]) / float(r["seconds"]) for r in mine]
        cpu.plot(x, pct, marker="o", label=server, color=color)
    lat.set(xscale="log", yscale="log", xlabel="listeners (1 speaker)", ylabel="send→receive p99 (ms)",
            title="latency on loopback (median of runs; bars: range)")
    cpu.set(xscale="log", xlabel="listeners (1 speaker)", ylabel="server CPU (% of one core)",
            title="server CPU while one speaker talks")
    for ax in (lat, cpu):
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:3])
