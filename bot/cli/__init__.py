"""The `doorstep` command line (typer), one module per command group; `bot.cli.app` holds the root app."""


def main() -> None:
    """Entry point of the `doorstep` script (pyproject: `doorstep = "bot.cli:main"`)."""
    from bot.cli.app import main as run

    run()
