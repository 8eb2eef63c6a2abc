"""`python -m bot.cli` runs the `doorstep` command."""

from bot.cli.app import main

main()
