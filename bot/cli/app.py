"""The `doorstep` command line (typer + rich): the root app and `main`.

The commands live in one module per group (run, data, nlu, flows, telegram,
whatsapp, agents, events, journeys, report), each adding itself with `register(app)`. Heavy SDKs
are imported inside commands, never at module level, so `doorstep --help`,
`chat` and `classify` stay fast.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="doorstep",
    help="Doorstep: a self-hosted two-way post-purchase messaging bot (SMS, WhatsApp, Telegram, email, Viber, voice calls).\n\n"
    "Start with `doorstep demo` and `doorstep chat --phone +919812345678`, or `make run`.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)


def _register_parts() -> None:
    from bot.cli import agents as cli_agents
    from bot.cli import data as cli_data
    from bot.cli import events as cli_events
    from bot.cli import flows as cli_flows
    from bot.cli import journeys as cli_journeys
    from bot.cli import nlu as cli_nlu
    from bot.cli import report as cli_report
    from bot.cli import run as cli_run
    from bot.cli import telegram as cli_telegram
    from bot.cli import viber as cli_viber
    from bot.cli import whatsapp as cli_whatsapp

    # The order here is the order of `doorstep --help`: running and trying it first.
    for part in (cli_run, cli_data, cli_nlu, cli_flows, cli_telegram, cli_whatsapp, cli_viber, cli_agents, cli_events,
                 cli_journeys, cli_report):
        part.register(app)


_register_parts()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
