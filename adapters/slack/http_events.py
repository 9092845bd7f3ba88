"""The Events API HTTP endpoint: a request is authenticated before slack-bolt parses it.

slack-bolt parses the body (JSON, forms, context fields) before its signature check, and that check
raises on a non-numeric `X-Slack-Request-Timestamp` (`int(timestamp)`), a non-ASCII signature or a
non-UTF-8 body: anyone could provoke 500s. Here the body must be UTF-8, the timestamp digits and the
signature right, and the verified body must parse the way bolt parses it; otherwise the answer is a
JSON 4xx. Only then does bolt dispatch (and check the signature again); a payload it fails on is a 400.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot.http import Handler, json_error

__all__ = ["events_handler"]

log = logging.getLogger(__name__)

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")




def events_handler(app: AsyncApp, signing_secret: str) -> Handler:
    verifier = SignatureVerifier(signing_secret)

    async def events(request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            return json_error(400, "the body is not UTF-8 text")
        timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
        signature = request.headers.get("X-Slack-Signature", "")
        if not (
            _TIMESTAMP.fullmatch(timestamp)
            and _SIGNATURE.fullmatch(signature)
            and verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
        ):
            log.warning("slack: refused an Events API request without a valid signature from %s", request.remote)
            return json_error(401, "invalid request")  # bolt's own answer to a failed signature check
        try:
            bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=dict(request.headers))
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError) as exc:
            # bolt's parsing raises whatever a malformed (if signed) body provokes
            log.warning("slack: refused a malformed Events API request: %s", type(exc).__name__)
            return json_error(400, "malformed request body")
        if not isinstance(bolt_request.body, dict):
            return json_error(400, "the body is not a JSON object or a form")
        response = await app.async_dispatch(bolt_request)
        if response.status >= 500:
            # bolt answers 500 when its middleware or a listener raised (and logs why); the listeners only
            # parse and start tasks, so what failed is the payload's shape (e.g. an `event` that is a string)
            log.warning("slack: refused an Events API request that slack-bolt could not handle")
            return json_error(400, "malformed request body")
        return await to_aiohttp_response(response)

    return events
