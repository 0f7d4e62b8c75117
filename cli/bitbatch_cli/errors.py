"""The one error type the command prints as a single line and exits 1 on."""

from __future__ import annotations


class CliError(Exception):
    """An expected failure: a missing stack or run, a run in the wrong status, an unreachable service."""
