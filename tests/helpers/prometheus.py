"""A real Prometheus server for tests: Debian's ``prometheus`` package (``scripts/test`` installs
it), on a free loopback port, its TSDB in the test's temporary folder, scraping the given
static targets every second and evaluating the given rule files every second.

Used by the dashboard test (tests/integration/operator/test_dashboard_queries.py), which points
it at a ``modelfleet serve`` process and an operator's metrics port. ``samples`` reads one scrape
of ``/metrics`` for tests that check series without a server.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.runtime import free_port, stop_process
from tests.helpers.waiting import http_status, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """A scrape of ``/metrics`` as {(series name, sorted labels): value}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


@dataclass(frozen=True)
class Target:
    """One scrape job: a ``host:port`` serving ``/metrics`` and the labels to give its series
    (what a PodMonitor or ServiceMonitor would add: namespace, service, pod)."""

    job: str
    address: str
    labels: dict[str, str]
    honor_labels: bool = False
    ca_file: Path | None = None
    """Scrape over https, trusting this CA bundle (a runtime serving TLS)."""


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def config(targets: list[Target], rule_files: list[Path]) -> dict[str, Any]:
    """A prometheus.yml scraping ``targets`` every second."""
    return {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {
                "job_name": t.job,
                "honor_labels": t.honor_labels,
                "static_configs": [{"targets": [t.address], "labels": t.labels}],
                **(
                    {"scheme": "https", "tls_config": {"ca_file": str(t.ca_file)}}
                    if t.ca_file
                    else {}
                ),
            }
            for t in targets
        ],
    }


@contextmanager
def prometheus_process(
    tmp: Path, targets: list[Target], rule_files: list[Path] | None = None
) -> Iterator[Prometheus]:
    """Run Prometheus until the block ends (SIGTERM, then SIGKILL if it hangs)."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: scripts/test installs Debian's prometheus package"
    folder = tmp / "prometheus"
    folder.mkdir()
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config(targets, rule_files or [])))
    address = f"127.0.0.1:{free_port()}"
    command = [
        binary,
        f"--config.file={folder / 'prometheus.yml'}",
        f"--storage.tsdb.path={folder / 'data'}",
        f"--web.listen-address={address}",
    ]
    log = folder / "prometheus.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT)
    server = Prometheus(f"http://{address}", process, log)
    try:
        ready = f"{server.url}/-/ready"
        wait_until(lambda: process.poll() is not None or http_status(ready) == 200, 30, "ready")
        assert process.poll() is None, server.output()
        yield server
    finally:
        stop_process(process)
