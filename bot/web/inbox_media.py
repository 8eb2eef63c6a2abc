"""Attachments shown inline in the inbox through a safe proxy: `GET /inbox/media/{message_id}/{n}`.

The agent's browser never fetches a customer's media URL itself (a tracking pixel, a private address,
a page that is not an image). Doorstep fetches it: every hop (redirects included) goes through the URL
guard (no private or loopback addresses unless DOORSTEP_ALLOW_PRIVATE_URLS), Twilio's media get the
account's credentials (their URLs need them), and only a raster image (JPEG, PNG, GIF, WebP) of at
most `MAX_BYTES` is passed on, with a sandboxing CSP and `nosniff`. Anything else is a 4xx/502 with a
reason, so the page shows a link instead. Never logs a URL (it can hold an account id).
"""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Path
from fastapi.responses import JSONResponse, Response

from bot.core.models import Message
from bot.core.urlguard import GuardedTransport, HostNotResolved, UnsafeURL
from bot.web.deps import ReadSessionDep, ServiceDep
from bot.web.inbox_session import ScriptAgentDep

log = logging.getLogger(__name__)

router = APIRouter(prefix="/inbox", tags=["inbox"], include_in_schema=False)

IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
MAX_BYTES = 5 * 1024 * 1024
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
TWILIO_MEDIA_HOSTS = ("api.twilio.com",)


def _refused(status_code: int, detail: str) -> Response:
    return JSONResponse({"detail": detail}, status_code=status_code, headers={"Cache-Control": "no-store"})


def _auth(url: str, service: ServiceDep) -> tuple[str, str] | None:
    """Twilio's media URLs (its host, or the configured API base in tests) need the account's credentials."""
    twilio = service.settings.twilio
    if not twilio.configured:
        return None
    host = (urlsplit(url).hostname or "").lower()
    hosts = {*TWILIO_MEDIA_HOSTS, (urlsplit(twilio.api_base_url).hostname or "").lower()} - {""}
    return (twilio.account_sid, twilio.auth_token.get_secret_value()) if host in hosts else None


async def _fetch_image(client: httpx.AsyncClient, url: str) -> tuple[str, bytes] | Response:
    """(content type, bytes) of an image within the limits, or the refusal to answer with."""
    async with client.stream("GET", url, headers={"Accept": ", ".join(sorted(IMAGE_TYPES))}) as upstream:
        if upstream.status_code != 200:
            return _refused(502, f"the provider answered {upstream.status_code}")
        kind = upstream.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            return _refused(415, "not an image; it is not shown inline")
        declared = upstream.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BYTES:
            return _refused(413, "the image is too large to show inline")
        body = bytearray()
        async for chunk in upstream.aiter_bytes():
            body.extend(chunk)
            if len(body) > MAX_BYTES:
                return _refused(413, "the image is too large to show inline")
    return kind, bytes(body)


@router.get("/media/{message_id}/{index}")
async def media(message_id: Annotated[int, Path(ge=1, le=2**31 - 1)], index: Annotated[int, Path(ge=1, le=10)],
                agent: ScriptAgentDep, session: ReadSessionDep, service: ServiceDep) -> Response:
    message = session.get(Message, message_id)
    if message is None or message.conversation_id is None or index > len(message.media_urls):
        return _refused(404, "attachment not found")
    url = message.media_urls[index - 1]
    transport = GuardedTransport(setting="media URL", allow_private=service.settings.allow_private_urls)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=TIMEOUT, follow_redirects=True,
                                     max_redirects=3, auth=_auth(url, service)) as client:
            fetched = await _fetch_image(client, url)
    except (UnsafeURL, HostNotResolved):
        return _refused(403, "the attachment's address is not allowed")
    except httpx.HTTPError as exc:
        log.info("media fetch failed message=%s: %s", message_id, exc.__class__.__name__)
        return _refused(502, "the attachment could not be fetched")
    if isinstance(fetched, Response):
        return fetched
    kind, body = fetched
    return Response(body, media_type=kind, headers={
        "Cache-Control": "private, max-age=300", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox", "Content-Disposition": "inline"})
