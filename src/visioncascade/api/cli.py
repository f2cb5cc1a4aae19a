"""CLI commands of the API (serve, keys, db). Registered on the main Typer app by ``visioncascade.cli``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the API's commands to ``app``."""
