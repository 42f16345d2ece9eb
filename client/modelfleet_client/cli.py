"""``modelfleet infer``: call a served model from the shell.

    modelfleet infer iris --url http://127.0.0.1:8080 -i input='[[5.1, 3.5, 1.4, 0.2]]'
    modelfleet infer resnet --url grpc://10.0.0.7:8081 -i image=@cat.npy -o out.npz

The ``modelfleet`` command (the runtime's ``cli.py``) finds this through the
``modelfleet.commands`` entry points; with the client alone installed it runs as
``python -m modelfleet_client.cli``. Inputs come from ``.npy`` files (``name=@file.npy``,
read without pickle) or JSON (``name=JSON``), cast to the input's datatype from the model's
metadata; a model with one input may drop ``name=``. Outputs are printed (shape, datatype and
values, long ones elided) or written to an ``.npz`` file (BYTES as fixed-width bytes arrays,
so that ``numpy.load`` needs no pickle). Exit status: 0 done, 1 the server refused or failed,
2 bad input (usage, files, JSON).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np

from modelfleet_client import tensors
from modelfleet_client.client import Client
from modelfleet_client.errors import InferenceServerError

NAME = re.compile(r"^[^=\[\]{}\"'@\s][^=\[\]{}\"'\s]*$")
"""An input name before ``=`` (not JSON: no brackets, braces or quotes)."""


class UsageError(Exception):
    """Bad input on the command line: exit status 2."""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="modelfleet infer",
        description="Run a model served over the Open Inference Protocol and show its outputs.",
    )
    p.add_argument("model", help="the model's name")
    p.add_argument(
        "--url",
        required=True,
        help="the server: http[s]://HOST:PORT (binary tensors) or grpc[s]://HOST:PORT",
    )
    p.add_argument(
        "-i",
        "--input",
        dest="inputs",
        action="append",
        required=True,
        metavar="NAME=@FILE.npy|NAME=JSON",
        help="an input from a .npy file or JSON (cast to the input's datatype); repeat for "
        "more inputs; NAME= may be left out for a model with one input",
    )
    p.add_argument("--version", type=int, help="the model version (default: the newest)")
    p.add_argument("-o", "--out", type=Path, help="write the outputs to this .npz file")
    p.add_argument(
        "--output",
        dest="outputs",
        action="append",
        metavar="NAME",
        help="ask for this output only; repeat for more (default: all)",
    )
    p.add_argument(
        "--token-file", type=Path, help="a file holding a bearer token (not echoed anywhere)"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per call (default 60)")
    p.add_argument(
        "--ca-file", help="a PEM bundle to trust for https:// and grpcs:// (default: the system's)"
    )
    p.add_argument(
        "--cert",
        help="the client's certificate for a server that asks for one (mutual TLS): a PEM "
        "file with the certificate, and its key unless --key is given",
    )
    p.add_argument("--key", help="the private key of --cert, when it is a file of its own")
    p.add_argument(
        "--json-tensors",
        action="store_true",
        help="send tensors as JSON, for servers without the binary extension (MLServer)",
    )
    return p


def split_input(raw: str) -> tuple[str | None, str]:
    """``NAME=VALUE`` -> (NAME, VALUE); a bare VALUE (JSON or @file) -> (None, VALUE)."""
    name, sep, value = raw.partition("=")
    if sep and NAME.match(name):
        return name, value
    return None, raw


def load_value(value: str) -> Any:
    """An ``@file.npy`` as its array, else the JSON value."""
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read {path} as a .npy file: {exc}") from None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise UsageError(f"{value!r} is neither @FILE.npy nor valid JSON: {exc}") from None


def typed(name: str, value: Any, datatype: str | None) -> np.ndarray[Any, Any]:
    """``value`` as an array of the input's datatype: numbers of the same kind only (a float
    never becomes an integer) and integers only within the datatype's range, so that nothing
    is cut off silently."""
    if datatype is None or datatype not in tensors.DATATYPES:
        return np.asarray(value)
    if datatype == "BYTES":
        array = np.asarray(value, dtype=object)
        return np.vectorize(_as_bytes, otypes=[object])(array) if array.size else array
    target = tensors.DATATYPES[datatype]
    try:
        if target.kind in "iu":
            return _integers(value, target)
        return np.asarray(value).astype(target, casting="same_kind")
    except (TypeError, ValueError) as exc:
        raise UsageError(f"input '{name}': the values do not fit {datatype}: {exc}") from None


def _integers(value: Any, target: np.dtype[Any]) -> np.ndarray[Any, Any]:
    """JSON integers (as Python ints: numpy would turn a mix of int64 and uint64 values into
    floats) or an integer array, within ``target``'s range."""
    array = value if isinstance(value, np.ndarray) else np.array(value, dtype=object)
    if array.dtype.kind not in "iuO" or (
        array.dtype.kind == "O" and not all(type(v) is int for v in array.flat)
    ):
        raise ValueError("only integers fit")
    bounds = np.iinfo(target)
    if array.size and (int(array.min()) < bounds.min or int(array.max()) > bounds.max):
        raise ValueError(f"a value is outside {bounds.min}..{bounds.max}")
    return array.astype(target)


def _as_bytes(value: Any) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


def gather(
    client: Client, model: str, version: int | None, raw: list[str]
) -> dict[str, np.ndarray[Any, Any]]:
    """The inputs named on the command line, typed after the model's metadata."""
    meta = client.metadata(model, version=version)
    declared = {spec["name"]: spec.get("datatype") for spec in meta.get("inputs") or ()}
    inputs: dict[str, np.ndarray[Any, Any]] = {}
    for item in raw:
        name, value = split_input(item)
        if name is None:
            if len(declared) != 1 or len(raw) != 1:
                raise UsageError(f"model '{model}' has inputs {sorted(declared)}: use NAME=VALUE")
            name = next(iter(declared))
        if name not in declared:
            raise UsageError(f"model '{model}' has no input '{name}'; it has {sorted(declared)}")
        if name in inputs:
            raise UsageError(f"input '{name}' is given twice")
        inputs[name] = typed(name, load_value(value), declared[name])
    return inputs


def describe(name: str, array: np.ndarray[Any, Any]) -> str:
    """``name: FP32 [1, 3]`` and the values, long arrays elided."""
    datatype = tensors.datatype_of(array)
    values = np.array2string(array, threshold=20, edgeitems=3, separator=", ")
    return f"{name}: {datatype} {list(array.shape)}\n  {values.replace(chr(10), chr(10) + '  ')}"


def save(path: Path, outputs: dict[str, np.ndarray[Any, Any]]) -> None:
    """An .npz of the outputs; BYTES as 'S' arrays, which load without pickle."""
    plain: dict[str, Any] = {
        name: array.astype(bytes) if array.dtype.kind == "O" else array
        for name, array in outputs.items()
    }
    try:
        with path.open("wb") as file:
            np.savez(file, **plain)  # a file object: numpy would append .npz to a path
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc}") from None


def token(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        found = path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not found:
        raise UsageError(f"the token file {path} is empty")
    return found


def run(args: argparse.Namespace) -> int:
    if args.key is not None and args.cert is None:
        raise UsageError("--key needs --cert")
    cert = (args.cert, args.key) if args.key is not None else args.cert
    try:
        client = Client(
            args.url,
            token(args.token_file),
            timeout=args.timeout,
            binary=not args.json_tensors,
            ca_file=args.ca_file,
            cert=cert,
        )
    except (ValueError, ImportError) as exc:
        raise UsageError(str(exc)) from None
    except OSError as exc:  # ssl.SSLError too: a certificate or key that does not load
        raise UsageError(f"cannot use the TLS files: {exc}") from None
    with client:
        inputs = gather(client, args.model, args.version, args.inputs)
        outputs = client.infer(args.model, inputs, version=args.version, outputs=args.outputs)
    if args.out is not None:
        save(args.out, outputs)
        sys.stdout.write(f"wrote {', '.join(outputs)} to {args.out}\n")
    else:
        sys.stdout.write("".join(describe(n, a) + "\n" for n, a in outputs.items()))
    return 0


def infer_command(argv: list[str]) -> int:
    """``modelfleet infer ARGS``: the exit status."""
    args = parser().parse_args(argv)  # exits 2 on bad usage, 0 for --help
    try:
        return run(args)
    except UsageError as exc:
        sys.stderr.write(f"modelfleet infer: {exc}\n")
        return 2
    except InferenceServerError as exc:
        sys.stderr.write(f"modelfleet infer: the server answered {exc.status}: {exc.message}\n")
        return 1


def main() -> None:
    sys.exit(infer_command(sys.argv[1:]))


if __name__ == "__main__":
    main()
