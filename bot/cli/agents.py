"""`doorstep agents …`: personal inbox logins for support agents.

A token is shown once, when it is created; only its SHA-256 is stored, so it
cannot leak from the database. Revoking ends the agent's inbox sessions at
their next request. Never prints or logs a stored token (there is none).
"""

from __future__ import annotations

import hashlib
import secrets
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.service import Service

agents_app = typer.Typer(help="Support agents who log in to the /inbox with a personal token.", no_args_is_help=True)


def new_agent_token() -> str:
    return "dat_" + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _service() -> Service:
    from bot.service import Service

    return Service.create()


def _clean(name: str) -> str:
    name = " ".join(name.split())
    if not name or len(name) > 100:
        raise typer.BadParameter("NAME must be 1-100 characters", param_hint="NAME")
    return name


def _role(role: str) -> str:
    from bot.core.vocab import AGENT_ROLES

    if role not in AGENT_ROLES:
        raise typer.BadParameter(f"one of {', '.join(AGENT_ROLES)}", param_hint="--role")
    return role


@agents_app.command("add")
def add(name: Annotated[str, typer.Argument(help="The agent's name, as customers' conversations will show it.")],
        rotate: Annotated[bool, typer.Option("--rotate", help="Give an existing agent a new token.")] = False,
        role: Annotated[str | None, typer.Option(
            "--role", help="viewer (reads, phones masked), agent (the default: works escalations, sees and calls "
                           "the phone), or supervisor (also manages quick replies).")] = None) -> None:
    """Create an agent and print their inbox token (shown once)."""
    from rich.console import Console
    from rich.panel import Panel
    from sqlmodel import select

    from bot.core.models import Agent

    name = _clean(name)
    token = new_agent_token()
    with _service().db.session() as session:
        agent = session.exec(select(Agent).where(Agent.name == name)).first()
        if agent is not None and agent.revoked_at is None and not rotate:
            typer.echo(f"Agent {name!r} already exists; use --rotate for a new token.", err=True)
            raise typer.Exit(1)
        if agent is None:
            agent = Agent(name=name, token_sha256=token_digest(token), role=_role(role or "agent"))
        elif role is not None:
            agent.role = _role(role)
        agent.token_sha256 = token_digest(token)
        agent.revoked_at = None
        session.add(agent)
    Console().print(Panel.fit(
        f"[bold]{token}[/bold]\n\nInbox token for {name}. It is shown only once; give it to them privately.\n"
        "They log in at /inbox with it. Revoke with: doorstep agents revoke " + repr(name),
        title="Doorstep agent token", border_style="yellow"))


@agents_app.command("list")
def list_agents() -> None:
    """List agents (never their tokens)."""
    from rich.console import Console
    from rich.table import Table
    from sqlmodel import col, select

    from bot.core.models import Agent

    table = Table(title="Agents")
    for column in ("name", "role", "status", "created", "last seen"):
        table.add_column(column)
    with _service().db.session() as session:
        for agent in session.exec(select(Agent).order_by(col(Agent.name))):
            table.add_row(agent.name, agent.role, "revoked" if agent.revoked_at else "active",
                          agent.created_at.strftime("%Y-%m-%d %H:%M UTC"),
                          agent.last_seen_at.strftime("%Y-%m-%d %H:%M UTC") if agent.last_seen_at else "never")
    Console().print(table)


@agents_app.command("role")
def set_role(name: Annotated[str, typer.Argument(help="The agent.")],
             role: Annotated[str, typer.Argument(help="viewer, agent or supervisor.")]) -> None:
    """Change an agent's role; it applies to their open session at its next request."""
    from sqlmodel import select

    from bot.core.models import Agent

    name, role = _clean(name), _role(role)
    with _service().db.session() as session:
        agent = session.exec(select(Agent).where(Agent.name == name)).first()
        if agent is None:
            typer.echo(f"No agent named {name!r}.", err=True)
            raise typer.Exit(1)
        agent.role = role
        session.add(agent)
    typer.echo(f"{name} is now a {role}.")


@agents_app.command("revoke")
def revoke(name: Annotated[str, typer.Argument(help="The agent to lock out of the inbox.")]) -> None:
    """Revoke an agent's token; their open inbox sessions end at once."""
    from sqlmodel import select

    from bot.core.db import session_now
    from bot.core.models import Agent

    name = _clean(name)
    with _service().db.session() as session:
        agent = session.exec(select(Agent).where(Agent.name == name)).first()
        if agent is None:
            typer.echo(f"No agent named {name!r}.", err=True)
            raise typer.Exit(1)
        if agent.revoked_at is None:
            agent.revoked_at = session_now(session)
            # A fresh random digest too, so the old token can never match again, even if un-revoked.
            agent.token_sha256 = token_digest(new_agent_token())
            session.add(agent)
    typer.echo(f"Revoked {name}.")


def register(app: typer.Typer) -> None:
    """Add this part's commands to the main `doorstep` app."""
    app.add_typer(agents_app, name="agents")
