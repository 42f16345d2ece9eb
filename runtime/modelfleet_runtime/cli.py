"""The ``modelfleet`` command.

``modelfleet serve`` runs the inference runtime; its options are the fields of
``config.Settings`` (each also an environment variable ``MODELFLEET_<NAME>``). Other
subcommands (``operator``, ``render``, ``crd``, ``infer``) are found through the
``modelfleet.commands`` entry points, so the runtime never imports the operator and the
runtime image need not ship it.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

from pydantic import ValidationError

from modelfleet_runtime import __version__, logs
from modelfleet_runtime.command_line import from_command_line
from modelfleet_runtime.config import Settings
from modelfleet_runtime.metrics import Metrics
from modelfleet_runtime.prefetch import Prefetch

USAGE = """usage: modelfleet COMMAND [OPTIONS]

commands:
  serve      serve a model over HTTP (the bundled iris example by default)
  models     push model versions to storage (s3, gs, file, oci), list them, show one
  operator   run the Kubernetes operator
  render     print the objects the operator would apply for an InferenceService
  crd        print the InferenceService CustomResourceDefinition
  infer      call a served model (HTTP or gRPC) and print or save its outputs

'modelfleet COMMAND --help' describes a command's options.
"""


def parse_settings(argv: list[str]) -> Settings:
    """Settings from ``argv`` over the environment over the defaults."""
    return from_command_line(Settings, "modelfleet serve", argv)


def serve_command(argv: list[str]) -> int:
    try:
        settings = parse_settings(argv)
    except ValidationError as exc:
        sys.stderr.write(f"modelfleet serve: invalid settings:\n{exc}\n")
        return 2
    logs.configure(settings.log_level, settings.log_format, settings.model_name)
    # The download starts while the server's imports run.
    prefetch = Prefetch(settings, Metrics()).start()
    from modelfleet_runtime.server import TransportUnavailableError, serve
    from modelfleet_runtime.storage import StorageError
    from modelfleet_runtime.tls import TlsError
    from modelfleet_runtime.tracing import TracingUnavailableError

    try:
        return serve(settings, prefetch)
    except StorageError as exc:  # a refused or malformed model URI: say so, no traceback
        sys.stderr.write(f"modelfleet serve: {exc.reason}: {exc}\n")
        return 2
    # Certificate files that cannot be used; --tracing without OpenTelemetry or misconfigured;
    # --grpc-transport h2 without its extra.
    except (TlsError, TracingUnavailableError, TransportUnavailableError) as exc:
        sys.stderr.write(f"modelfleet serve: {exc}\n")
        return 2


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    if args[0] == "--version":
        sys.stdout.write(f"modelfleet {__version__}\n")
        return 0
    command, rest = args[0], args[1:]
    if command == "serve":
        return serve_command(rest)
    if command == "models":
        from modelfleet_runtime.catalog.cli import models_command

        logs.configure("warning", "text", None)
        return models_command(rest)
    for entry in entry_points(group="modelfleet.commands"):
        if entry.name == command:
            try:
                run = entry.load()
            except ImportError as exc:
                extra = "the client" if command == "infer" else "the operator extra"
                sys.stderr.write(f"modelfleet {command} needs {extra}: {exc}\n")
                return 2
            result: int = run(rest)
            return result
    sys.stderr.write(f"modelfleet: unknown command {command!r}\n\n{USAGE}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
