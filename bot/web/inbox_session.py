"""Who is logged in to the agent inbox: the session cookie, its CSRF token, and the
login as FastAPI dependencies.

The session is a signed, HttpOnly, SameSite=Strict cookie scoped to /inbox,
signed with a random secret kept in the database (so every process agrees).
An API-key session ends when the key is rotated; an agent session when the
agent's token is revoked. Every form post carries a CSRF token bound to the
session. This module never logs a cookie, a token or a secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Form, HTTPException, Request, status
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlmodel import Session

from bot.core.db import READ_ONLY, session_now
from bot.core.errors import DoorstepError
from bot.core.models import Agent, KeyValue
from bot.core.vocab import AGENT_ROLES
from bot.service import Service
from bot.store.auth import KEY_NAME
from bot.web.deps import ReadSessionDep, ServiceDep, SessionDep

SESSION_COOKIE = "doorstep_inbox"
LOGIN_CSRF_COOKIE = "doorstep_inbox_login"
SESSION_SECONDS = 12 * 3600  # one shift
SECRET_KEY = "inbox_session_secret"
LAST_SEEN_EVERY = 60.0


ROLES = AGENT_ROLES
# Who sees a customer's full phone number (and a tel: link) in the inbox; everyone else sees it masked,
# and logs always do.
FULL_PHONE_ROLES = frozenset({"agent", "supervisor"})


@dataclass(frozen=True)
class AgentSession:
    name: str
    kind: str  # "key" (logged in with the API key) | "agent" (personal token)
    agent_id: int | None
    sid: str
    csrf: str
    role: str = "agent"  # viewer (reads, masked phones) | agent | supervisor (also manages quick replies)

    @property
    def sees_full_phone(self) -> bool:
        return self.role in FULL_PHONE_ROLES

    @property
    def can_act(self) -> bool:
        return self.role != "viewer"

    @property
    def supervises(self) -> bool:
        return self.role == "supervisor"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def session_secret(session: Session) -> bytes:
    """A random signing secret generated once and kept in the database, so every process agrees."""
    row = session.get(KeyValue, SECRET_KEY)
    if row is None and session.info.get(READ_ONLY):
        # A read-only page on a brand-new database: create it in its own short write transaction.
        with session.info["database"].session() as writer:
            return session_secret(writer)  # (this read transaction's snapshot cannot see the new row)
    if row is None:
        row = KeyValue(key=SECRET_KEY, value=secrets.token_hex(32))
        session.add(row)
        session.flush()
    return bytes.fromhex(row.value)


def _sign(secret: bytes, payload: bytes) -> str:
    return _b64(hmac.new(secret, payload, hashlib.sha256).digest())


def _csrf_for(secret: bytes, sid: str) -> str:
    return _sign(secret, f"csrf:{sid}".encode())


def key_fingerprint(session: Session, configured_key: str) -> str:
    """Changes when the API key is rotated, which ends every API-key session."""
    if configured_key:
        basis = hashlib.sha256(configured_key.encode()).hexdigest()
    else:
        row = session.get(KeyValue, KEY_NAME)
        basis = row.value if row else ""
    return hashlib.sha256(f"inbox:{basis}".encode()).hexdigest()[:16]


def agent_fingerprint(agent: Agent) -> str:
    return hashlib.sha256(f"inbox:{agent.token_sha256}".encode()).hexdigest()[:16]


def make_session_cookie(secret: bytes, *, name: str, kind: str, agent_id: int | None, fingerprint: str,
                        now: datetime) -> str:
    body = {"n": name, "k": kind, "a": agent_id, "f": fingerprint, "s": secrets.token_urlsafe(12),
            "e": int(now.timestamp() + SESSION_SECONDS)}
    payload = json.dumps(body, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_sign(secret, payload)}"


def read_session(request: Request, session: Session, configured_key: str) -> AgentSession | None:
    """The logged-in agent, or None (missing, forged, expired, revoked or rotated away)."""
    raw = request.cookies.get(SESSION_COOKIE, "")
    if not raw or "." not in raw or len(raw) > 2048:
        return None
    encoded, signature = raw.rsplit(".", 1)
    secret = session_secret(session)
    try:
        payload = _unb64(encoded)
        if not hmac.compare_digest(signature, _sign(secret, payload)):
            return None
        body = json.loads(payload)
        if int(body["e"]) < session_now(session).timestamp():
            return None
        kind, name, agent_id, fingerprint, sid = body["k"], str(body["n"]), body["a"], body["f"], str(body["s"])
    except (ValueError, KeyError, TypeError):
        return None
    role = "supervisor"  # the API key's holder runs the shop's Doorstep
    if kind == "key":
        if not hmac.compare_digest(str(fingerprint), key_fingerprint(session, configured_key)):
            return None
    elif kind == "agent":
        agent = session.get(Agent, int(agent_id)) if isinstance(agent_id, int) else None
        if agent is None or agent.revoked_at is not None or not hmac.compare_digest(str(fingerprint),
                                                                                    agent_fingerprint(agent)):
            return None
        role = agent.role if agent.role in ROLES else "viewer"  # read on every request: a change applies at once
        now = session_now(session)
        # Pages and the live poll read only (no write lock); "last seen" moves on the agent's actions.
        writable = not session.info.get(READ_ONLY)
        if writable and (agent.last_seen_at is None or (now - agent.last_seen_at).total_seconds() > LAST_SEEN_EVERY):
            agent.last_seen_at = now
            session.add(agent)
    else:
        return None
    return AgentSession(name=name, kind=kind, agent_id=agent_id, sid=sid, csrf=_csrf_for(secret, sid), role=role)


def cookie_flags(request: Request, service_public_url: str) -> dict[str, Any]:
    secure = service_public_url.startswith("https://") or request.url.scheme == "https"
    return {"httponly": True, "samesite": "strict", "secure": secure, "path": "/inbox"}


def check_csrf(agent: AgentSession, token: str) -> None:
    if not token or not hmac.compare_digest(token, agent.csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="the form expired or came from another site; reload the page")


# ------------------------------------------------------------------ the login as a dependency


class LoginRequired(DoorstepError):
    """No valid inbox session. A page is sent to the login form; the pages' scripts get a 401."""

    def __init__(self, *, page: bool = True) -> None:
        super().__init__("login required")
        self.page = page


def to_login() -> RedirectResponse:
    return RedirectResponse("/inbox/login", status_code=status.HTTP_303_SEE_OTHER)


async def login_required_response(request: Request, exc: Exception) -> Response:
    """The app's handler for `LoginRequired` (installed by bot.web.errors)."""
    if isinstance(exc, LoginRequired) and not exc.page:
        return JSONResponse({"detail": "login required"}, status_code=status.HTTP_401_UNAUTHORIZED)
    return to_login()


def _page_agent(request: Request, session: ReadSessionDep, service: ServiceDep) -> AgentSession:
    agent = read_session(request, session, service.settings.api_key.get_secret_value())
    if agent is None:
        raise LoginRequired()
    return agent


def _script_agent(request: Request, session: ReadSessionDep, service: ServiceDep) -> AgentSession:
    agent = read_session(request, session, service.settings.api_key.get_secret_value())
    if agent is None:
        raise LoginRequired(page=False)
    return agent


def _acting_agent(request: Request, session: SessionDep, service: ServiceDep,
                  csrf: Annotated[str, Form(max_length=200)] = "") -> AgentSession:
    agent = read_session(request, session, service.settings.api_key.get_secret_value())
    if agent is None:
        raise LoginRequired()
    check_csrf(agent, csrf)
    if not agent.can_act:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="your role (viewer) can read the inbox, not act in it")
    return agent


def _posting_agent(request: Request, session: Session, service: Service, csrf: str) -> AgentSession:
    """The logged-in agent of a posted form whose answer is not a page (401, not a redirect), CSRF checked."""
    agent = read_session(request, session, service.settings.api_key.get_secret_value())
    if agent is None:
        raise LoginRequired(page=False)
    check_csrf(agent, csrf)
    return agent


def _present_agent(request: Request, session: SessionDep, service: ServiceDep,
                   csrf: Annotated[str, Form(max_length=200)] = "") -> AgentSession:
    return _posting_agent(request, session, service, csrf)


def _searching_agent(request: Request, session: ReadSessionDep, service: ServiceDep,
                     csrf: Annotated[str, Form(max_length=200)] = "") -> AgentSession:
    return _posting_agent(request, session, service, csrf)  # a search only reads


def _supervisor(agent: Annotated[AgentSession, Depends(_acting_agent)]) -> AgentSession:
    if not agent.supervises:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="only a supervisor can do this")
    return agent


# The logged-in agent reading a page (else: to the login form).
PageAgentDep = Annotated[AgentSession, Depends(_page_agent)]
# The logged-in agent behind a page's script (else: 401 for the script to act on).
ScriptAgentDep = Annotated[AgentSession, Depends(_script_agent)]
# The logged-in agent posting a form, its CSRF token checked (else: to the login form, or 403);
# a viewer gets 403.
ActingAgentDep = Annotated[AgentSession, Depends(_acting_agent)]
# A page's script reporting in (any role), CSRF checked; 401 without a session.
PresentAgentDep = Annotated[AgentSession, Depends(_present_agent)]
# A search form posted (it may hold a phone number, so it never goes in a URL): CSRF checked, reads only.
SearchingAgentDep = Annotated[AgentSession, Depends(_searching_agent)]
# A supervisor posting a form (quick replies, assigning to someone else).
SupervisorDep = Annotated[AgentSession, Depends(_supervisor)]
