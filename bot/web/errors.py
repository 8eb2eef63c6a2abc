"""The one place that turns the project's typed errors into HTTP responses.

Routes raise `NotFound`, `Conflict`, `InvalidInput` (bot.core.errors) or let
`InvalidPhone` through; the handlers installed here answer with a 4xx
`{"detail": …}`. A detail is the error's own reason and never echoes the
submitted values (they may hold phone numbers or message text). Errors this
module does not name stay server errors: a missing mapping must not hide a bug.
"""

from __future__ import annotations

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from bot.core.errors import Conflict, InvalidInput, NotFound
from bot.core.phones import InvalidPhone
from bot.web.inbox_session import LoginRequired, login_required_response


async def _not_found(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_404_NOT_FOUND, content={"detail": str(exc)})


async def _conflict(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_409_CONFLICT, content={"detail": str(exc)})


async def _invalid_input(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, InvalidInput)
    # The shape of FastAPI's own validation errors, so a client reads both the same way.
    detail = [{"loc": ["body", exc.field], "msg": exc.reason, "type": "value_error"}]
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": detail})


async def _invalid_phone(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": f"phone: {exc}"})


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # Field-level reasons, never the submitted values (they may hold phone numbers).
    details = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse(status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": details})


async def _too_deep(request: Request, exc: Exception) -> JSONResponse:
    # json.loads on `[[[[…]]]]` nested thousands deep: a bad request, not a server error.
    return JSONResponse(status_code=status.HTTP_400_BAD_REQUEST, content={"detail": "request body: JSON nested too deeply"})


def install_error_handlers(app: FastAPI) -> None:
    """Register every mapping on the app (the most specific class wins, so subclasses share these)."""
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(Conflict, _conflict)
    app.add_exception_handler(InvalidInput, _invalid_input)
    app.add_exception_handler(InvalidPhone, _invalid_phone)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(RecursionError, _too_deep)
    app.add_exception_handler(LoginRequired, login_required_response)
