"""Turns the trials of one ``bench/run.py`` run into the "Runtime performance" section of
bench/RESULTS.md (other sections belong to others and are kept as they are) and a PNG plot of
throughput and p99 against concurrency."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

SECTION = "## Runtime performance"
Trial = dict[str, Any]


def aggregate(trials: list[Trial]) -> dict[tuple[str, str, int], dict[str, float]]:
    """Median over repetitions per (scenario, target, connections), plus the rps spread."""
    groups: dict[tuple[str, str, int], list[Trial]] = defaultdict(list)
    for t in trials:
        groups[(t["scenario"], t["target"], t["connections"])].append(t)
    out = {}
    for key, ts in groups.items():
        rps = [t["rps"] for t in ts]
        out[key] = {
            "rps": statistics.median(rps),
            "p50_ms": statistics.median(t["p50_us"] for t in ts) / 1000,
            "p99_ms": statistics.median(t["p99_us"] for t in ts) / 1000,
            "spread": (max(rps) - min(rps)) / statistics.median(rps) if len(rps) > 1 else 0.0,
            "cpu_us": statistics.median(t.get("cpu_us", float("nan")) for t in ts),
            "errors": sum(t["errors"] for t in ts),
            "reps": len(ts),
        }
    return out


def _best_peer(agg: dict[tuple[str, str, int], dict[str, float]], scenario: str, c: int,
               peers: list[str]) -> tuple[str, dict[str, float]] | None:  # fmt: skip
    found = [(p, agg[(scenario, p, c)]) for p in peers if (scenario, p, c) in agg]
    return max(found, key=lambda pv: pv[1]["rps"]) if found else None


def render(run: dict[str, Any]) -> str:
    agg = aggregate(run["trials"])
    lines = [
        SECTION,
        "",
        f"Produced by `{run['command']}` on {run['date']} ({run['machine']})"
        + (f", at commit {run['commit']}." if "commit" in run else "."),
        "",
    ]
    lines += [
        f"Servers on CPU 0, wrk (1 thread) on CPU 1 (`taskset`); {run['reps']} interleaved "
        f"repetitions of {run['duration']} s per configuration (A,B,C,A,B,C...), medians "
        "shown. Every server's answer was checked against ONNX Runtime in-process before "
        f"timing. Versions: {run['versions']}. Every server runs ONNX Runtime with 1 intra-op "
        "thread, per-request logging off (and MLServer's metrics endpoint off).",
        "",
        "### Targets",
        "",
        "| Target | Ours req/s | Reference req/s | Ratio | Ours p99 ms | Reference p99 ms | Met |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for goal in run["targets"]:
        ours = agg.get((goal["scenario"], goal["ours"], goal["connections"]))
        ref = _best_peer(agg, goal["scenario"], goal["connections"], goal["versus"])
        if ours is None and goal["ours"].endswith("*"):
            continue  # a what-if row left out of this run
        if ours is None or ref is None:
            lines.append(f"| {goal['title']} | n/a | n/a | | | | not measured |")
            continue
        ratio = ours["rps"] / ref[1]["rps"]
        factor = goal.get("p99_factor", 1)  # ours p99 at most this share of the reference's
        p99_ok = ours["p99_ms"] <= ref[1]["p99_ms"] * factor or not goal.get("p99", True)
        met = "yes" if ratio >= goal["ratio"] and p99_ok else "**no**"
        lines.append(
            f"| {goal['title']} (vs {ref[0]}) | {ours['rps']:,.0f} | {ref[1]['rps']:,.0f} "
            f"| {ratio:.2f}× (≥ {goal['ratio']}×) | {ours['p99_ms']:.2f} | "
            f"{ref[1]['p99_ms']:.2f} | {met} |"
        )
    lines += ["", "### All configurations", ""]
    lines += [
        "| Scenario | Server | Conns | req/s | p50 ms | p99 ms | vs better peer | rps spread "
        "| server CPU µs/req | CPU cost vs better peer | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (scenario, target, c), v in sorted(agg.items()):
        peers = run["peers"].get(scenario, [])
        ref = _best_peer(agg, scenario, c, [p for p in peers if p != target])
        mine = ref is not None and target not in peers
        ratio = f"{v['rps'] / ref[1]['rps']:.2f}×" if mine and ref else ""
        cost = f"{ref[1]['cpu_us'] / v['cpu_us']:.2f}× less" if mine and ref else ""
        lines.append(
            f"| {scenario} | {target} | {c} | {v['rps']:,.0f} | {v['p50_ms']:.2f} | "
            f"{v['p99_ms']:.2f} | {ratio} | ±{v['spread'] * 50:.0f}% | {v['cpu_us']:,.0f} | "
            f"{cost} | {v['errors']:.0f} |"
        )
    lines += [
        "",
        "'server CPU µs/req' is the CPU time (user + system, all threads) the server's process "
        "group used during the trial divided by the requests it answered: unlike req/s it "
        "hardly moves when other work competes for the CPU, and 10⁶ / it is roughly the req/s "
        "one dedicated core would give. In the grpc rows 'Conns' counts concurrent streams "
        "(ModelInfer calls) on one HTTP/2 connection, driven by ghz.",
    ]
    lines += ["", "### In-process limits (no server, CPU 0, 1 intra-op thread)", ""]
    lines += ["| Model | run() µs | run() /s | orjson parse → run → dump µs | that path /s |",
              "|---|---:|---:|---:|---:|"]  # fmt: skip
    for model, v in run["inprocess"].items():
        lines.append(
            f"| {model} | {v['run_us']:.1f} | {v['run_rps']:,.0f} | {v['json_us']:.1f} | "
            f"{v['json_rps']:,.0f} |"
        )
    lines += ["", "### One connection, batch 1: our added latency", ""]
    for note in run["latency_notes"]:
        lines.append(f"- {note}")
    notes = list(run["notes"])
    if any(t["target"] == "raw-ASGI floor" for t in run["trials"]):
        notes.append(
            "'raw-ASGI floor' is bench/servers/asgi_floor.py, the least a Python server on "
            "uvicorn can do per request (no validation, metrics or errors): a reference, not "
            "a peer. 'ours+batch0': our runtime with --max-batch-size 32 --max-queue-delay-us 0."
        )
    if any(t["target"] == "grpc.aio floor" for t in run["trials"]):
        notes.append(
            "'grpc.aio floor' is bench/servers/grpc_floor.py, the least a grpc.aio server (the "
            "stack of all three gRPC servers here) can do per ModelInfer call: a reference."
        )
    lines += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    lines += [
        "",
        "Where our time went, and the changes made from it: [PROFILE.md](PROFILE.md).",
        "",
        f"![throughput and p99 against concurrency]({run['plot']})",
        "",
    ]
    return "\n".join(lines)


def render_baseline(run: dict[str, Any]) -> str:
    """The before/after table of a ``run.py --baseline`` run: each of our servers (this
    checkout) against the same server at the baseline commit, per scenario and connections."""
    agg = aggregate(run["trials"])
    suffix = "@" + run["baseline"]
    lines = [
        f"This checkout: {run['commit']}; baseline: {run['baseline']}. `{run['command']}`, "
        f"{run['date']}, {run['reps']} interleaved repetitions of {run['duration']} s, medians.",
        "",
        "| Scenario | Server | Conns | req/s | req/s before | ratio | rps spread (now / before) "
        "| p99 ms | p99 ms before | CPU µs/req | CPU µs/req before | CPU ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (scenario, target, c), before in sorted(agg.items()):
        now = agg.get((scenario, target.replace(suffix, ""), c))
        if suffix not in target or now is None:
            continue
        lines.append(
            f"| {scenario} | {target.replace(suffix, '')} | {c} | {now['rps']:,.0f} | "
            f"{before['rps']:,.0f} | {now['rps'] / before['rps']:.2f}× | "
            f"±{now['spread'] * 50:.0f}% / ±{before['spread'] * 50:.0f}% | {now['p99_ms']:.2f} | "
            f"{before['p99_ms']:.2f} | {now['cpu_us']:,.0f} | {before['cpu_us']:,.0f} | "
            f"{now['cpu_us'] / before['cpu_us']:.2f}× |"
        )
    return "\n".join(lines) + "\n"


def write_section(results_md: Path, section: str) -> None:
    """Replace (or append) only the '## Runtime performance' section of RESULTS.md."""
    text = results_md.read_text() if results_md.exists() else "# Benchmark results\n"
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.strip() == SECTION), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        rest = lines[end:]
        new = (
            "\n".join(
                lines[:start] + section.rstrip("\n").splitlines() + ([""] + rest if rest else [])
            )
            + "\n"
        )
    results_md.write_text(new)


def plot(run: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    agg = aggregate(run["trials"])
    scenarios = [s for s in ("small", "wide", "conv", "grpc") if any(k[0] == s for k in agg)]
    fig, axes = plt.subplots(2, len(scenarios), figsize=(5 * len(scenarios), 7), squeeze=False)
    for col, scenario in enumerate(scenarios):
        targets = sorted({k[1] for k in agg if k[0] == scenario})
        for target in targets:
            cs = sorted(k[2] for k in agg if k[0] == scenario and k[1] == target)
            vals = [agg[(scenario, target, c)] for c in cs]
            axes[0][col].plot(cs, [v["rps"] for v in vals], marker="o", label=target)
            axes[1][col].plot(cs, [v["p99_ms"] for v in vals], marker="o", label=target)
        axes[0][col].set_title(run["titles"][scenario])
        axes[0][col].set_ylabel("requests/s")
        axes[1][col].set_ylabel("p99 latency (ms)")
        all_cs = sorted({k[2] for k in agg if k[0] == scenario})
        for row in (0, 1):
            axes[row][col].set_xscale("log", base=2)
            axes[row][col].set_xticks(all_cs, [str(c) for c in all_cs])
            unit = "streams (one connection)" if scenario == "grpc" else "connections"
            axes[row][col].set_xlabel(f"concurrent {unit}")
            axes[row][col].grid(True, alpha=0.3)
            axes[row][col].legend(fontsize=8)
        axes[1][col].set_yscale("log")
    fig.suptitle("ModelFleet runtime vs KServe 0.21 and MLServer 1.7.1 (server on 1 CPU)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
