"""Operator at scale on the real control plane: N InferenceServices applied at once, time until
every one is Ready.

Starts (or reuses) ``scripts/cluster up``, installs the chart with helm, runs the chart's
operator container as a local process under the chart's ServiceAccount token (as the e2e
tests do), creates N InferenceServices at once (16 concurrent POSTs with the admin
certificate), and measures:

* the time from the first POST until every InferenceService has ``Ready=True`` for its generation
  (Deployments made Available by the real controller-manager, pods scheduled by the real
  scheduler and made Ready by kwok);
* the operator process's peak RSS (psutil, sampled every 50 ms);
* the operator's API requests, by verb, from the API server's audit log;
* the CPU seconds each process (control plane components, operator) used meanwhile.

    .venv/bin/python bench/operator_scale_real.py --count 200
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import importlib.util
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import (  # noqa: E402
    CHART,
    CLUSTER_SCRIPT,
    RELEASE,
    SYSTEM_NAMESPACE,
    Operator,
    create_namespace,
    isvc,
)
from tests.e2e.kube import OPERATOR_USER, Cluster  # noqa: E402

NAMESPACE = "bench-scale"
_spec = importlib.util.spec_from_file_location("cluster", ROOT / "scripts/controlplane/cluster.py")
assert _spec is not None and _spec.loader is not None
_cluster = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_cluster)
Api = _cluster.Api


def ready_count(c: Cluster) -> int:
    items = json.loads(c.kubectl("get", "isvc", "-n", NAMESPACE, "-o", "json").stdout)["items"]
    return sum(
        1
        for i in items
        for cond in i.get("status", {}).get("conditions") or []
        if cond["type"] == "Ready"
        and cond["status"] == "True"
        and cond.get("observedGeneration") == i["metadata"]["generation"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()
    c = Cluster.up(CLUSTER_SCRIPT)
    c.kubectl("delete", "namespace", NAMESPACE, "--ignore-not-found", "--timeout=300s")
    c.helm("uninstall", RELEASE, "-n", SYSTEM_NAMESPACE, "--ignore-not-found", "--wait")
    create_namespace(c, SYSTEM_NAMESPACE)
    c.helm("install", RELEASE, str(CHART), "-n", SYSTEM_NAMESPACE, "--wait", timeout=180)
    create_namespace(c, NAMESPACE)
    operator = Operator(c, SYSTEM_NAMESPACE, Path(tempfile.mkdtemp(prefix="scale-")))
    operator.start()
    assert operator.pod is not None
    process = psutil.Process(operator.pod.process.pid)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.05)

    threading.Thread(target=sample, daemon=True).start()
    audit = c.audit()
    components = {name: psutil.Process(pid) for name, pid in c.state["pids"].items() if pid}
    cpu_before = {name: sum(p.cpu_times()[:2]) for name, p in components.items()}
    cpu_before["operator"] = sum(process.cpu_times()[:2])
    bodies = [isvc(f"m{i:04d}", minReplicas=1, maxReplicas=3) for i in range(args.count)]
    api = Api(c.home, c.state["ports"]["apiserver"])
    path = f"/apis/serving.modelfleet.dev/v1alpha1/namespaces/{NAMESPACE}/inferenceservices"
    started = time.monotonic()
    # At once: 16 concurrent POSTs (kubectl apply creates one object after the other, ~4/s).
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(lambda body: api.call("POST", path, body)[0], bodies))
    assert codes == [201] * args.count, collections.Counter(codes)
    applied = time.monotonic() - started
    while (ready := ready_count(c)) < args.count:
        if time.monotonic() - started > args.timeout:
            raise SystemExit(f"only {ready} of {args.count} Ready after {args.timeout} s")
        time.sleep(0.5)
    elapsed = time.monotonic() - started
    stop.set()
    cpu = {name: sum(p.cpu_times()[:2]) - cpu_before[name] for name, p in components.items()}
    cpu["operator"] = sum(process.cpu_times()[:2]) - cpu_before["operator"]
    verbs = collections.Counter(e.verb for e in audit.events() if e.user == OPERATOR_USER)
    writes = sum(n for v, n in verbs.items() if v in ("create", "update", "patch", "delete"))
    print(f"InferenceServices: {args.count}")
    print(f"created (16 concurrent POSTs) in {applied:.1f} s")
    print(f"all Ready after {elapsed:.1f} s")
    print(f"operator peak RSS: {peak[0] / 2**20:.0f} MiB")
    print(
        f"operator API requests: {sum(verbs.values())} ({dict(sorted(verbs.items()))}), "
        f"writes {writes}"
    )
    print("CPU seconds meanwhile: " + ", ".join(f"{n} {t:.1f}" for n, t in cpu.items()))
    operator.stop()
    c.kubectl("delete", "namespace", NAMESPACE, "--wait=false")


if __name__ == "__main__":
    main()
