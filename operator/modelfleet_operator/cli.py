"""The operator's subcommands of ``modelfleet``: ``render``, ``crd`` and ``operator``.

Registered as entry points (group ``modelfleet.commands``); the runtime's CLI dispatches to
them so that it never imports the operator. ``render`` and ``crd`` are offline.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from typing import Any

import yaml
from pydantic import ValidationError

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.crd import crd_yaml
from modelfleet_operator.parse import SpecError, parse
from modelfleet_operator.render import render
from modelfleet_operator.render.delivery import auto_undecided


def _documents(path: str) -> Iterator[dict[str, Any]]:
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    for doc in yaml.safe_load_all(text):
        if isinstance(doc, dict) and doc.get("kind") == "InferenceService":
            yield doc


def render_command(argv: list[str]) -> int:
    """``modelfleet render -f isvc.yaml``: print the children the operator would apply."""
    parser = argparse.ArgumentParser(prog="modelfleet render", description=render_command.__doc__)
    parser.add_argument(
        "-f", "--filename", required=True, help="InferenceService YAML ('-': stdin)"
    )
    parser.add_argument("-n", "--namespace", help="namespace when the YAML names none")
    parser.add_argument(
        "--server-version",
        help="Kubernetes version of the target API server (e.g. v1.37.2), which decides "
        "spec.modelfleet.ociDelivery Auto (image volumes from 1.35); unset, Auto renders Pull",
    )
    args = parser.parse_args(argv)
    try:
        config = OperatorConfig(
            **({"server_version": args.server_version} if args.server_version else {})
        )
    except ValidationError as exc:
        error = exc.errors()[0]  # --server-version, or a MODELFLEET_OPERATOR_* variable
        parser.error(f"{'.'.join(map(str, error['loc']))}: {error['msg']}")
    out: list[dict[str, Any]] = []
    for body in _documents(args.filename):
        if args.namespace and not body.get("metadata", {}).get("namespace"):
            body.setdefault("metadata", {})["namespace"] = args.namespace
        name = body.get("metadata", {}).get("name", "?")
        try:
            svc = parse(body, config.trusted_storage_hosts)
        except SpecError as exc:
            sys.stderr.write(f"InvalidSpec: {name}: {exc.message}\n")
            return 1
        if auto_undecided(svc, config):
            sys.stderr.write(
                f"note: {name}: ociDelivery Auto rendered as Pull; pass --server-version to "
                "render what the operator applies on a given cluster (ImageVolume from 1.35)\n"
            )
        out += render(svc, config)
    sys.stdout.write(yaml.safe_dump_all(out, sort_keys=False, width=100))
    return 0


def crd_command(argv: list[str]) -> int:
    """``modelfleet crd``: print the InferenceService CRD."""
    argparse.ArgumentParser(prog="modelfleet crd", description=crd_command.__doc__).parse_args(argv)
    sys.stdout.write(crd_yaml())
    return 0


# --- `modelfleet operator`: owned by the operator's live half (main.py) ----------------------


def operator_command(argv: list[str]) -> int:
    """``modelfleet operator``: run the operator (kopf). Imported lazily: kopf is heavy."""
    from modelfleet_operator.main import main

    return main(argv)
