"""``modelfleet infer`` end to end: the real command in a subprocess against real servers,
inputs from JSON and .npy files, printed and saved outputs, and its exit statuses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.client.conftest import TOKEN, VALUES, Server


def modelfleet(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "modelfleet_runtime.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"{TOKEN}\n")
    return path


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_json_input_printed_output(adder: Server, token_file: Path, transport: str) -> None:
    url = adder.url(transport)
    done = modelfleet("infer", "adder", "--url", url, "--token-file", str(token_file),
                      "-i", "[[1, 2, 3, 4], [0, 0, 0, 0]]", "--version", "1")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "output0: FP32 [2, 4]\n  [[2., 3., 4., 5.],\n   [1., 1., 1., 1.]]\n"


def test_npy_input_saved_output(adder: Server, token_file: Path, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.arange(8.0).reshape(2, 4))  # float64: cast to FP32
    out = tmp_path / "out.npz"
    done = modelfleet("infer", "adder", "--url", adder.grpc, "--token-file", str(token_file),
                      "-i", f"input0=@{tmp_path / 'x.npy'}", "-o", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote output0 to {out}\n"
    with np.load(out) as saved:
        np.testing.assert_array_equal(saved["output0"], np.arange(8.0).reshape(2, 4) + 2)
        assert saved["output0"].dtype == np.float32


def test_every_datatype_from_json_and_selected_outputs(every: Server, tmp_path: Path) -> None:
    args = []
    for datatype, values in VALUES.items():
        plain = [v.decode() if isinstance(v, bytes) else v for v in values]
        args += ["-i", f"in_{datatype}={json.dumps([plain])}"]
    out = tmp_path / "every.npz"
    wanted = ["--output", "out_BYTES", "--output", "out_UINT64", "--output", "out_FP16"]
    done = modelfleet("infer", "every", "--url", every.http, *args, *wanted, "-o", str(out))
    assert done.returncode == 0, done.stderr
    with np.load(out) as saved:  # no pickle needed: BYTES come as fixed-width bytes
        assert sorted(saved.files) == ["out_BYTES", "out_FP16", "out_UINT64"]
        assert saved["out_BYTES"].tolist() == [VALUES["BYTES"]]
        assert saved["out_UINT64"].tolist() == [VALUES["UINT64"]]
        assert saved["out_FP16"].dtype == np.float16


def test_long_outputs_are_summarised(every: Server) -> None:
    rows = 40
    args = [
        f"in_{d}={json.dumps([[v.decode() if isinstance(v, bytes) else v for v in values]] * rows)}"
        for d, values in VALUES.items()
    ]
    done = modelfleet("infer", "every", "--url", every.grpc, *[x for a in args for x in ("-i", a)],
                      "--output", "out_INT8")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("out_INT8: INT8 [40, 3]\n") and "..." in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-i", "input0=[1, 2"], "neither @FILE.npy nor valid JSON"),
        (["-i", "nope=[[1, 2, 3, 4]]"], "model 'adder' has no input 'nope'; it has ['input0']"),
        (["-i", "input0=@/nonexistent.npy"], "cannot read /nonexistent.npy"),
        (["-i", 'input0=[["a", "b", "c", "d"]]'], "do not fit FP32"),
        (["-i", "input0=[[1, 2, 3, 4]]", "-i", "input0=[[1, 2, 3, 4]]"], "is given twice"),
        (["-i", "[[1, 2, 3, 4]]", "-i", "input0=[[1, 2, 3, 4]]"], "use NAME=VALUE"),
    ],
)
def test_bad_input_exits_2_and_says_why(
    adder: Server, token_file: Path, args: list[str], message: str
) -> None:
    done = modelfleet("infer", "adder", "--url", adder.http, "--token-file", str(token_file), *args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    assert modelfleet("infer", "m", "--url", "http://127.0.0.1:1").returncode == 2  # no -i
    bad_url = modelfleet("infer", "m", "--url", "ftp://x", "-i", "[1]")
    assert bad_url.returncode == 2 and "url must be" in bad_url.stderr
    empty = tmp_path / "empty"
    empty.write_text("\n")
    no_token = modelfleet("infer", "m", "--url", "http://127.0.0.1:1", "-i", "[1]",
                          "--token-file", str(empty))  # fmt: skip
    assert no_token.returncode == 2 and "is empty" in no_token.stderr


def test_server_refusals_exit_1_with_the_servers_message(adder: Server, token_file: Path) -> None:
    missing = modelfleet("infer", "nope", "--url", adder.http, "--token-file", str(token_file),
                         "-i", "[[1, 2, 3, 4]]")  # fmt: skip
    assert missing.returncode == 1
    assert missing.stderr == "modelfleet infer: the server answered 404: model 'nope' not found\n"
    anonymous = modelfleet("infer", "adder", "--url", adder.grpc, "-i", "[[1, 2, 3, 4]]")
    assert anonymous.returncode == 1 and "401: missing bearer token" in anonymous.stderr


def test_help() -> None:
    done = modelfleet("infer", "--help")
    assert done.returncode == 0 and "NAME=@FILE.npy|NAME=JSON" in done.stdout
    usage = modelfleet("--help")
    assert "  infer      call a served model" in usage.stdout
