"""PNG plots of bench/results.json (matplotlib: the optional extra ``bench``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _by(figures: list[dict[str, Any]], group: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for f in figures:
        if f.get("group") == group and "lookup" in f:
            out.setdefault(f["lookup"], []).append(f)
    for fs in out.values():
        fs.sort(key=lambda f: f["images"])
    return out


def lookups(result: dict[str, Any], path: Path) -> None:
    """Median latency against table size, pre-feature and extended, one panel per lookup."""
    series = _by(result["figures"], "lookups")
    n = len(series)
    if not n:
        return
    cols = 4
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False)
    for ax, (name, fs) in zip(axes.flat, series.items()):
        x = [f["images"] for f in fs]
        ax.plot(x, [f["baseline"] for f in fs], "o--", color="tab:gray", label="before the feature")
        ax.plot(x, [f["value"] for f in fs], "o-", color="tab:blue", label="with the feature")
        ax.set_xscale("log")
        ys = [f["baseline"] for f in fs] + [f["value"] for f in fs]
        if max(ys) / min(ys) > 20:
            ax.set_yscale("log")
        else:
            ax.set_ylim(0, max(ys) * 1.15)
        ax.set_title(f"{name}\nx{fs[-1]['ratio']:.3g} at {x[-1]:,} images", fontsize=9)
        ax.set_xlabel("images")
        ax.set_ylabel(f"median {fs[0]['unit']}")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"Lookups, 1% of images in moves ({result['date'][:10]}, "
                 f"{result['machine']['cores']} cores)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def ratios(result: dict[str, Any], path: Path) -> None:
    """Every figure's ratio with its spread, against its goal."""
    figs = [f for f in result["figures"] if f["ratio"] is not None and f.get("goal")
            and f["goal"].startswith("ratio")]
    if not figs:
        return
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(figs) + 1.2))
    for i, f in enumerate(figs):
        sp = f.get("spread")
        color = "tab:green" if f["met"] else "tab:red"
        if sp:
            ax.plot([sp["ratio_p25"], sp["ratio_p75"]], [i, i], "-", color=color, alpha=0.4, lw=6)
        ax.plot([f["ratio"]], [i], "o", color=color)
        bound = float(f["goal"].split()[-1])
        ax.plot([bound], [i], "|", color="black", ms=12)
    if max(f["ratio"] for f in figs) > 10:
        ax.set_xscale("log")
    ax.set_yticks(range(len(figs)))
    ax.set_yticklabels([f["name"] for f in figs], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ratio to the baseline (dot: ratio of medians, bar: IQR of per-round "
                  "ratios, |: goal)", fontsize=8)
    ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def storage_match(result: dict[str, Any], path: Path) -> None:
    series = _by(result["figures"], "storage_match")
    if not series:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for name, fs in series.items():
        ax.plot([f["images"] for f in fs], [f["value"] for f in fs], "o-", label=name)
    first = next(iter(series.values()))
    ax.plot([f["images"] for f in first], [f["baseline"] for f in first], "o--", color="tab:gray",
            label="primary-key lookup of images")
    ax.set_xscale("log")
    ax.set_xlabel("images")
    ax.set_ylabel("median ms (server CPU)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    ax.set_title("Storage match and removal plan", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def moves(result: dict[str, Any], path: Path) -> None:
    figs = sorted((f for f in result["figures"] if f.get("group") == "moves"),
                  key=lambda f: f["workers"])
    if not figs:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    w = [f["workers"] for f in figs]
    ax.plot(w, [f["moves_per_s"] for f in figs], "o-", label="moves per second")
    ax.plot(w, [f["pgbench_tps"] / 4 for f in figs], "o--", color="tab:gray",
            label="pgbench -N tps / 4 (the goal)")
    ax.set_xticks(w)
    ax.set_xlabel("workers")
    ax.set_ylabel("per second")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    real = sorted((f for f in result["figures"] if f.get("group") == "moves_real"),
                  key=lambda f: f["workers"])
    if real:
        ax.plot([f["workers"] for f in real], [f["moves_per_s"] for f in real], "o-",
                color="tab:orange", label="moves per second, real agent")
        ax.legend(fontsize=8)
    ax.set_title("Move throughput (instant agent)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def recovery(result: dict[str, Any], path: Path) -> None:
    """Time to recover N moves in flight and to end as many normally, against N: the median
    over rounds (each round a dot), the goal (2x the normal ends) and the line of linear
    growth from the smallest N."""
    figs = sorted((f for f in result["figures"] if f.get("group") == "recovery" and "moves" in f),
                  key=lambda f: f["moves"])
    if not figs:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    n = [f["recovered"] for f in figs]
    ax.plot(n, [f["value"] for f in figs], "o-", label="recovery after a crash (median)")
    ax.plot(n, [f["baseline"] for f in figs], "o--", color="tab:gray",
            label="as many normal ends, same stages")
    for f in figs:
        for key, color in (("recover_s_by_round", "tab:blue"), ("normal_s_by_round", "tab:gray")):
            rounds = f.get(key) or []
            ax.plot([f["recovered"]] * len(rounds), rounds, ".", color=color, alpha=0.5)
    ax.plot(n, [2 * f["baseline"] for f in figs], ":", color="tab:red", label="goal: 2x")
    per = figs[0]["value"] / figs[0]["recovered"]
    ax.plot([0, n[-1]], [0, per * n[-1]], "-.", color="tab:green", alpha=0.6,
            label=f"linear from {n[0]} ({per * 1000:.2f} ms/move)")
    ax.set_xlabel("moves in flight")
    ax.set_ylabel("seconds")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.set_title("Recovery (instant agent, one process)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw(result: dict[str, Any], outdir: Path) -> list[str]:
    outdir.mkdir(exist_ok=True)
    done = []
    for name, fn in (("lookups", lookups), ("storage_match", storage_match), ("moves", moves),
                     ("recovery", recovery), ("ratios", ratios)):
        path = outdir / f"{name}.png"
        fn(result, path)
        if path.exists():
            done.append(str(path))
    return done
