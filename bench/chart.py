"""Draw the results JSON that bench/run.py wrote as one PNG (runs in the peers' venv).

    python chart.py RESULTS.json OUT.png

One row per scenario: req/s on the left, server CPU microseconds per response on the right,
bars at the median with min-max whiskers; failed cells are listed as such.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

COLORS = {"velocior": "#d62728", "floor": "#7f7f7f", "peer": "#1f77b4"}
FLOORS = {"velocior-native", "rust-floor", "nginx-return"}


def kind(server: str) -> str:
    if server == "velocior":
        return "velocior"
    return "floor" if server in FLOORS else "peer"


def main() -> int:
    src, dst = sys.argv[1], sys.argv[2]
    data: dict[str, Any] = json.loads(open(src).read())
    results = data["results"]
    scens = [s for s in data["scenarios"] if s in results]
    servers = data["servers"]
    meta = data["meta"]
    rows = len(scens)
    fig, axes = plt.subplots(rows, 2, figsize=(13, 2.0 + 0.32 * len(servers) * rows),
                             squeeze=False)
    for i, scen in enumerate(scens):
        res = results[scen]
        names = [s for s in servers if s in res]
        for j, (key, label) in enumerate((("rps", "req/s"),
                                          ("cpu_us", "server CPU us / response"))):
            ax = axes[i][j]
            ys = list(range(len(names)))
            vals, lo, hi, colors, labels = [], [], [], [], []
            for name in names:
                a = res[name]
                if a.get("ok_rounds"):
                    v = a[key]
                    vals.append(v)
                    lo.append(v - a[key + "_min"])
                    hi.append(a[key + "_max"] - v)
                    labels.append(name)
                else:
                    vals.append(0)
                    lo.append(0)
                    hi.append(0)
                    labels.append(f"{name} (failed)")
                colors.append(COLORS[kind(name)])
            ax.barh(ys, vals, xerr=[lo, hi], color=colors, capsize=2)
            if key == "cpu_us" and any(v > 0 for v in vals):
                # The slowest peers cost 100x the fastest: only a log axis keeps both readable.
                ax.set_xscale("log")
            else:
                ax.xaxis.set_major_formatter(FuncFormatter(
                    lambda x, _pos: f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k"))
            ax.set_yticks(ys)
            ax.set_yticklabels(labels if j == 0 else [""] * len(labels), fontsize=8)
            ax.invert_yaxis()
            ax.tick_params(axis="x", labelsize=8)
            ax.set_title(f"{scen}: {label}", fontsize=9)
            top = max(vals) if vals and max(vals) > 0 else 1
            for y, v in zip(ys, vals):
                if v > 0:
                    if key == "rps":
                        ax.text(v + top * 0.01, y, f"{v / 1000:.1f}k", va="center", fontsize=7)
                    else:
                        ax.text(v * 1.05, y, f"{v:.0f}" if v >= 100 else f"{v:.3g}", va="center",
                                fontsize=7)
            if key == "rps":
                ax.set_xlim(0, top * 1.18)
            elif any(v > 0 for v in vals):
                ax.set_xlim(min(v for v in vals if v > 0) * 0.5, top * 3)
    fig.suptitle(f"Velocior vs peers, {meta['mode']} mode, {meta['date']} "
                 f"(server on 1 CPU, wrk on the other; load avg at start {meta['load_start']})",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985))
    fig.savefig(dst, dpi=80)
    return 0


if __name__ == "__main__":
    sys.exit(main())
