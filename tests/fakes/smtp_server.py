"""A real SMTP server on loopback (aiosmtpd), spoken to by Doorstep's aiosmtplib client.

Every accepted message is kept as sent (envelope sender, recipients, the parsed `EmailMessage`).
`refuse_next(code, message)` makes the next RCPT answer with that SMTP reply (550 for an unknown
mailbox, 451 for a temporary failure). `require_auth` turns on AUTH PLAIN/LOGIN with one login.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any, Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.fakes.twilio_server import free_port

SMTP_USER = "doorstep"
SMTP_PASSWORD = "smtp-password-0123456789"


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


@dataclass
class FakeSMTP:
    require_auth: bool = False
    received: list[Received] = field(default_factory=list)
    refusals: deque[str] = field(default_factory=deque)
    port: int = 0
    _controller: Controller | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ aiosmtpd handler hooks

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]) -> str:
        with self._lock:
            refusal = self.refusals.popleft() if self.refusals else None
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content or envelope.content)
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message, raw))
        return "250 Message accepted for delivery"

    # ------------------------------------------------------------ control

    def refuse_next(self, code: int, text: str = "refused", times: int = 1) -> None:
        with self._lock:
            self.refusals.extend([f"{code} {text}"] * times)

    def sent_to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received if address in r.rcpt_tos]

    def start(self) -> Self:
        self.port = free_port()
        kwargs: dict[str, Any] = {}
        if self.require_auth:
            def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
                ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
                      and auth_data.password == SMTP_PASSWORD.encode())
                return AuthResult(success=ok, handled=False)  # False: the server answers 535

            # Loopback without TLS: allow AUTH on the plain connection (tests only).
            kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=False)
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
