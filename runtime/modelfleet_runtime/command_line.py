"""Settings from the command line: any pydantic-settings model's fields as kebab-case flags,
read over the model's environment variables over its defaults.

``modelfleet serve`` (``cli.parse_settings``, with ``config.Settings``) and ``modelfleet
operator`` (the operator's ``main.parse_settings``, with its ``OperatorConfig``) read their
options here, so each command's flags and ``--help`` come from its one settings model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

from pydantic_settings import BaseSettings, CliSettingsSource

AnySettings = TypeVar("AnySettings", bound=BaseSettings)


def from_command_line(
    model: type[AnySettings],
    prog: str,
    argv: Sequence[str],
    shortcuts: Mapping[str, str | list[str]] | None = None,
) -> AnySettings:
    """``model``'s settings from ``argv`` over the environment over the defaults, each field a
    kebab-case flag (``--poll-interval``); exits on ``--help`` and unknown options, as argparse
    does. ``modelfleet serve`` and ``modelfleet operator`` read their settings this way."""
    source: CliSettingsSource[AnySettings] = CliSettingsSource(
        model,
        cli_prog_name=prog,
        cli_kebab_case=True,
        cli_implicit_flags=False,
        cli_use_class_docs_for_groups=False,
        cli_shortcuts=dict(shortcuts or {}),
    )
    return model(_cli_settings_source=source(args=list(argv)))
