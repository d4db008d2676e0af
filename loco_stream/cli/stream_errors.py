"""How loco-stream reports a problem: `CliError` is one ``loco-stream: error:`` line (exit 1),
`UsageError` argparse's usage and error lines (exit 2)."""

PROG = "loco-stream"


class CliError(Exception):
    """A problem to report as one ``loco-stream: error:`` line (exit status 1)."""


class UsageError(CliError):
    """An argument that only the model shows to be wrong: reported as argparse does (exit 2)."""
