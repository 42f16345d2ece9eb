"""Operator at scale: N InferenceServices applied to the kmock emulator, time to converge.

Runs the real operator (``modelfleet operator``, kopf) as a separate process against the fixed
emulator of the integration tests, applies N InferenceServices at once, and measures the time
until every child (Deployment, Service, HPA) exists and every status carries
``observedGeneration``, plus the operator process's peak RSS (psutil, sampled every 50 ms).

    .venv/bin/python bench/operator_scale.py --count 200
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import kmock
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.operator.emulator import (  # noqa: E402
    ISVC_RESOURCE,
    ClusterEmulator,
    declare_resources,
    kubeconfig,
)

KINDS = ("apps/v1/deployments", "v1/services", "autoscaling/v2/horizontalpodautoscalers")


def body(i: int) -> dict[str, object]:
    """The i-th InferenceService."""
    return {
        "apiVersion": "serving.modelfleet.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": f"m{i:04d}", "namespace": "bench"},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 3,
                "model": {"modelFormat": {"name": "onnx"}, "storageUri": f"s3://models/m{i}"},
            }
        },
    }


def converged(emulator: ClusterEmulator, count: int) -> bool:
    """Every child exists and every status is written."""
    for i in range(count):
        name = f"m{i:04d}"
        keys = [
            (kmock.resource(k), "bench", f"{name}-predictor" if "services" not in k else name)
            for k in KINDS
        ]
        if any(key not in emulator.objects or emulator.objects[key].deleted for key in keys):
            return False
        isvc = emulator.objects[(kmock.resource(ISVC_RESOURCE), "bench", name)].raw
        if (isvc.get("status") or {}).get("observedGeneration") != 1:
            return False
    return True


async def main(count: int, timeout: float) -> None:
    async with ClusterEmulator() as emulator, kmock.Server(emulator) as server:
        declare_resources(emulator)
        with tempfile.NamedTemporaryFile("w", suffix=".kubeconfig") as config:
            config.write(kubeconfig(str(server.url).rstrip("/")))
            config.flush()
            env = {**os.environ, "KUBECONFIG": config.name}
            code = "import sys; from modelfleet_operator.main import main; main(sys.argv[1:])"
            proc = subprocess.Popen(
                [sys.executable, "-c", code, "--all-namespaces"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            peak, ps = 0, psutil.Process(proc.pid)
            await asyncio.sleep(3)  # start-up: discovery and watches (not part of the figure)
            start = time.monotonic()
            for i in range(count):
                async with emulator.request("POST", f"/apis/{ISVC_RESOURCE}", json=body(i)) as r:
                    assert r.status == 201, await r.text()
            while not converged(emulator, count):
                peak = max(peak, ps.memory_info().rss)
                if time.monotonic() - start > timeout:
                    raise SystemExit(f"not converged after {timeout} s")
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - start
            writes = len(emulator.writes())
            by_kind = collections.Counter(
                f"{r.method.value} {r.resource.plural if r.resource else '?'}"
                + (f"/{r.subresource}" if r.subresource else "")
                for r in emulator.writes()
            )
            proc.terminate()
            proc.wait(30)
    sys.stdout.write(
        f"{count} InferenceServices converged in {elapsed:.1f} s; "
        f"operator peak RSS {peak / 2**20:.0f} MiB; {writes} write requests in total\n"
        f"  writes: {dict(sorted(by_kind.items()))}\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.count, args.timeout))
