"""FastAPI dependencies as Annotated aliases (SessionDep, ReadSessionDep, ServiceDep, ApiKeyDep).

Routes that only read take `ReadSessionDep`: on SQLite it never takes the
write lock, so reading the API or logging in never waits behind (or stalls)
the bot's writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session

from bot.store.auth import check_api_key

if TYPE_CHECKING:
    from bot.service import Service

_bearer = HTTPBearer(auto_error=False, description="DOORSTEP_API_KEY")


def service_of(request: Request) -> Service:
    return request.app.state.service  # type: ignore[no-any-return]


async def get_service(request: Request) -> Service:
    """The dependency: async, because FastAPI runs a plain `def` dependency in its thread pool (a thread
    hop on every webhook for an attribute read)."""
    return service_of(request)


ServiceDep = Annotated["Service", Depends(get_service)]


def get_session(request: Request) -> Iterator[Session]:
    with service_of(request).db.request_session() as session:
        yield session


# Committed when the route returns, before the response is sent (scope="function"): a client never
# hears "done" (or follows a redirect to a page showing the change) before the change is committed,
# and a failed commit is the response's error, not a silent loss after it.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_read_session(request: Request) -> Iterator[Session]:
    with service_of(request).db.read() as session:
        yield session


ReadSessionDep = Annotated[Session, Depends(get_read_session)]


def require_api_key(request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    service = service_of(request)
    presented = credentials.credentials if credentials and credentials.scheme.lower() == "bearer" else ""
    if not check_api_key(service.db, service.settings.api_key.get_secret_value(), presented):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="missing or invalid API key: send 'Authorization: Bearer <DOORSTEP_API_KEY>'",
            headers={"WWW-Authenticate": "Bearer"},
        )


ApiKeyDep = Depends(require_api_key)
