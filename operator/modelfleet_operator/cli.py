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

from modelfleet_operator.config import OperatorConfig
from modelfleet_operator.crd import crd_yaml
from modelfleet_operator.render import render
from modelfleet_operator.spec import SpecError, parse


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
    args = parser.parse_args(argv)
    config = OperatorConfig()
    out: list[dict[str, Any]] = []
    for body in _documents(args.filename):
        if args.namespace and not body.get("metadata", {}).get("namespace"):
            body.setdefault("metadata", {})["namespace"] = args.namespace
        try:
            out += render(parse(body), config)
        except SpecError as exc:
            name = body.get("metadata", {}).get("name", "?")
            sys.stderr.write(f"InvalidSpec: {name}: {exc.message}\n")
            return 1
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
