"""``modelfleet models push|list|show``: the registry commands.

Storage settings are the runtime's own (``MODELFLEET_S3_ENDPOINT_URL`` and the rest, or the
options below), and so are credentials: the standard ``AWS_*`` variables,
``GOOGLE_APPLICATION_CREDENTIALS``, a Docker config file for ``oci://``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..config import Settings
from ..storage import StorageError
from ..storage.manifest import Manifest, digest_of
from .push import LocalModel, PushError, VersionInfo, push, versions

STORAGE_OPTIONS = {
    "--s3-endpoint-url": "S3 endpoint of an S3-compatible store (default: boto3's own)",
    "--s3-ca-bundle": "CA bundle for the S3 endpoint's TLS certificate",
    "--s3-addressing-style": "S3 addressing: auto, path or virtual",
    "--gcs-endpoint-url": "Google Cloud Storage endpoint",
    "--gcs-credentials-file": "service-account key for gs:// (default: none, anonymous)",
    "--registry-config": "Docker config file with oci:// registry credentials",
    "--registry-ca-file": "CA bundle for the OCI registry's TLS certificate",
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelfleet models",
        description="A model registry on the storage you already have (s3://, gs://, "
        "file://, oci://): push versions with a manifest, list them, show one.",
    )
    storage = argparse.ArgumentParser(add_help=False)
    group = storage.add_argument_group("storage (also MODELFLEET_<NAME> variables)")
    for flag, text in STORAGE_OPTIONS.items():
        group.add_argument(flag, help=text)
    storage.add_argument("--json", action="store_true", help="print JSON instead of text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    push_cmd = commands.add_parser(
        "push",
        parents=[storage],
        help="upload a model as the next version",
        description="Load MODEL in ONNX Runtime (a file that does not load is refused), "
        "upload it with its external-data files as the next version folder of REPOSITORY "
        "(never over an existing one) and write its manifest last. An oci:// REPOSITORY "
        "(oci://host/repo:tag) gets it as an OCI image instead.",
    )
    push_cmd.add_argument("model", type=Path, metavar="MODEL", help="the .onnx file")
    push_cmd.add_argument("repository", metavar="REPOSITORY", help="e.g. s3://models/iris")
    push_cmd.add_argument("--version", type=int, help="version number (default: the next)")

    list_cmd = commands.add_parser(
        "list",
        parents=[storage],
        help="list a repository's versions",
        description="Every version of REPOSITORY: number, state, size, sha256 of model.onnx, "
        "when it was pushed and its signature.",
    )
    list_cmd.add_argument("repository", metavar="REPOSITORY")

    show_cmd = commands.add_parser(
        "show",
        parents=[storage],
        help="show one version, or a local model file",
        description="The manifest of one version of REPOSITORY (default: the newest pushed), "
        "or, for a local .onnx file, its signature, files and digests.",
    )
    show_cmd.add_argument("target", metavar="REPOSITORY|FILE")
    show_cmd.add_argument("--version", type=int, help="version number (default: the newest)")
    return parser


def models_command(argv: list[str]) -> int:
    """Entry point of ``modelfleet models``; returns the exit status."""
    args = _parser().parse_args(argv)
    name = f"modelfleet models {args.command}"
    overrides = {
        flag.removeprefix("--").replace("-", "_"): getattr(args, flag[2:].replace("-", "_"))
        for flag in STORAGE_OPTIONS
    }
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        sys.stderr.write(f"{name}: invalid settings:\n{exc}\n")
        return 2
    try:
        if args.command == "push":
            return _push(args, settings)
        if args.command == "list":
            return _list(args, settings)
        return _show(args, settings)
    except (PushError, StorageError) as exc:
        sys.stderr.write(f"{name}: {exc}\n")
        return 1


def _push(args: argparse.Namespace, settings: Settings) -> int:
    model = LocalModel.open(args.model, settings)
    if not args.json:
        sys.stdout.write(f"{args.model}: {model.signature}\n")
    pushed = push(model, args.repository, settings, version=args.version)
    if args.json:
        _print_json({"reference": pushed.reference, "manifest": _dump(pushed.manifest)})
    else:
        sys.stdout.write(f"pushed {pushed.reference} ({_size(pushed.manifest.size)})\n")
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    found = versions(args.repository, settings)
    if args.json:
        _print_json([_info_json(info) for info in found])
        return 0
    rows = [("VERSION", "STATE", "SIZE", "SHA256", "PUSHED AT", "SIGNATURE")]
    for info in found:
        m = info.manifest
        rows.append(
            (
                str(info.number),
                info.state,
                _size(info.size),
                m.files["model.onnx"].sha256[:12] if m and "model.onnx" in m.files else "-",
                m.pushed_at.strftime("%Y-%m-%dT%H:%M:%SZ") if m else "-",
                str(m.signature) if m else "-",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]).rstrip() + "\n")
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    local = Path(args.target)
    if "://" not in args.target and local.is_file():
        model = LocalModel.open(local, settings)
        files = {name: digest_of(path) for name, path in model.files.items()}
        if args.json:
            _print_json(
                {
                    "path": str(local),
                    "files": {n: d.model_dump() for n, d in files.items()},
                    "signature": model.signature.model_dump(),
                }
            )
            return 0
        sys.stdout.write(f"{local}\n  signature: {model.signature}\n  files:\n")
        for name, digest in files.items():
            sys.stdout.write(f"    {name}  {_size(digest.size)}  sha256:{digest.sha256}\n")
        return 0
    found = [info for info in versions(args.target, settings) if info.manifest is not None]
    if args.version is not None:
        found = [info for info in found if info.number == args.version]
    if not found:
        which = f"version {args.version}" if args.version is not None else "no pushed version"
        sys.stderr.write(f"modelfleet models show: {args.target}: {which} not found\n")
        return 1
    info = found[-1]
    if args.json:
        _print_json(_info_json(info))
        return 0
    assert info.manifest is not None
    m = info.manifest
    sys.stdout.write(
        f"{args.target.rstrip('/')}/{info.number}\n"
        f"  pushed at: {m.pushed_at:%Y-%m-%dT%H:%M:%SZ}\n"
        f"  signature: {m.signature}\n  files:\n"
    )
    for name, digest in sorted(m.files.items()):
        sys.stdout.write(f"    {name}  {_size(digest.size)}  sha256:{digest.sha256}\n")
    return 0


def _dump(manifest: Manifest) -> Any:
    return json.loads(manifest.to_json())


def _info_json(info: VersionInfo) -> dict[str, Any]:
    return {
        "version": info.number,
        "state": info.state,
        "size": info.size,
        "manifest": _dump(info.manifest) if info.manifest else None,
    }


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def _size(nbytes: int) -> str:
    size = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
