"""Real servers and models for the storage tests: a recording TCP proxy, a static HTTP server,
an external-data ONNX model, and S3/GCS upload helpers."""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelfleet_runtime.config import Settings


def upload_folder(client: Any, bucket: str, folder: Path, prefix: str) -> None:
    """Put every file under ``folder`` at ``prefix/<relative path>``."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def settings(tmp: Path, uri: str, **overrides: Any) -> Settings:
    """Settings for a test: model_dir in ``tmp``, path addressing, short retries."""
    values: dict[str, Any] = {
        "model_uri": uri,
        "model_dir": tmp / "models",
        "s3_addressing_style": "path",
        "s3_region": "us-east-1",
        "retry_initial_backoff": 0.05,
        "retry_max_backoff": 0.2,
        "retry_deadline": 2.0,
        "allowed_schemes": ["s3", "gs", "https", "http", "file"],
    }
    values.update(overrides)
    return Settings(**values)


def external_data_model(folder: Path, *, floats: int = 786_432, seed: int = 0) -> np.ndarray:
    """Write ``folder/model.onnx`` plus ``folder/weights.bin`` (``floats`` float32 values,
    3 MiB by default): ``output0 = input0 + w`` over a ``[batch, floats]`` tensor. Returns w."""
    w = np.random.default_rng(seed).standard_normal(floats).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Add", ["input0", "w"], ["output0"])],
        "external",
        [helper.make_tensor_value_info("input0", TensorProto.FLOAT, ["batch", floats])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", floats])],
        initializer=[numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save_model(
        model,
        str(folder / "model.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="weights.bin",
        size_threshold=0,
    )
    return w


class RecordingProxy:
    """A TCP listener on 127.0.0.1 that records every connection and the bytes clients
    send; with a ``target`` it forwards both ways (so tests can count Range requests and
    see headers), without one it closes each connection at once."""

    def __init__(self, target: tuple[str, int] | None = None) -> None:
        self.target = target
        self.connections = 0
        self.sent = bytearray()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            if self.target is None:
                conn.close()
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        assert self.target is not None
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            return
        with self._lock:
            self._sockets += [conn, upstream]
        back = threading.Thread(target=self._pipe, args=(upstream, conn, False), daemon=True)
        back.start()
        self._pipe(conn, upstream, True)
        back.join(timeout=10)
        conn.close()
        upstream.close()

    def _pipe(self, src: socket.socket, dst: socket.socket, record: bool) -> None:
        try:
            while data := src.recv(65536):
                if record:
                    if not self._admit(data):
                        return
                    with self._lock:
                        self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _admit(self, data: bytes) -> bool:  # noqa: ARG002 - a hook for subclasses
        """Whether to forward ``data`` a client sent (subclasses may hold it first)."""
        return True

    def count(self, needle: bytes) -> int:
        """How many times clients sent ``needle`` (case-insensitive)."""
        with self._lock:
            return bytes(self.sent).lower().count(needle.lower())

    def close(self) -> None:
        """Stop listening and end every open connection."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self._listener.close()
        self._thread.join(timeout=5)
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for thread in self._threads:
            thread.join(timeout=10)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_http_server(folder: Path) -> Iterator[str]:
    """Serve ``folder`` over plain HTTP on 127.0.0.1; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def gcs_upload_folder(endpoint: str, bucket: str, folder: Path, prefix: str) -> None:
    """Create ``bucket`` in the emulator if needed and upload ``folder`` under ``prefix``."""
    request = urllib.request.Request(
        f"{endpoint}/storage/v1/b",
        data=json.dumps({"name": bucket}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        urllib.request.urlopen(request, timeout=10).close()
    except urllib.error.HTTPError as exc:
        if exc.code != 409:
            raise
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            name = urllib.parse.quote(f"{prefix}/{path.relative_to(folder).as_posix()}", safe="")
            upload = urllib.request.Request(
                f"{endpoint}/upload/storage/v1/b/{bucket}/o?uploadType=media&name={name}",
                data=path.read_bytes(),
                headers={"Content-Type": "application/octet-stream"},
                method="POST",
            )
            urllib.request.urlopen(upload, timeout=10).close()
