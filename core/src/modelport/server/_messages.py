"""Gateway feature: Anthropic's Messages API (``POST /v1/messages``) on the chat operation
of any served model.

The request is translated with ``modelport.anthropic_messages`` and run through the
gateway's pipeline as a ``chat`` call (auth by ``x-api-key`` or ``Authorization: Bearer``,
body limits, model checks, guards, observers), so the official ``anthropic`` SDK works
against any configured model. Errors come back in Anthropic's shape
``{"type": "error", "error": {"type", "message"}}`` with the status the gateway's
OpenAI-shaped answer has (429 stays 429, ``retry-after`` passed on); an error inside a
stream is an ``error`` event.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List

from ..anthropic_messages import MessageStreamTranslator, completion_to_message, error_body, new_id, request_to_chat
from ..errors import InvalidRequestError
from ..transport import encode_json
from ._app import ClientGone, Gateway
from ._edge import client_error, request_id_for

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["routes"]

log = logging.getLogger("modelport.server")

#: Headers of the gateway's error answers that keep their meaning in Anthropic's shape.
_KEPT_HEADERS = ("x-request-id", "retry-after", "retry-after-ms", "x-should-retry")


def _sse(event: Dict[str, Any]) -> bytes:
    data: bytes = encode_json(event)
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + data + b"\n\n"


class _Messages:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def error(self, status: int, message: str, request_id: str, headers: Dict[str, str]) -> "Response":
        return self.gateway.json_response(error_body(status, message, request_id), status, {**headers, "request-id": request_id})

    def failure(self, error: BaseException, request_id: str) -> "Response":
        """The gateway's answer to ``error`` (status, safe message, headers) in Anthropic's shape."""
        answer = self.gateway.failure(error, request_id)
        try:
            message = json.loads(bytes(answer.body))["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = "the request could not be handled"
        headers = {name: answer.headers[name] for name in _KEPT_HEADERS if name in answer.headers}
        return self.error(answer.status_code, str(message), request_id, headers)

    async def create(self, request: "Request") -> "Response":
        from starlette.responses import Response

        gateway = self.gateway
        request_id = request_id_for(request.headers)
        try:
            identity = await gateway.auth.identify(request)
            if identity is None:
                return self.error(401, "invalid x-api-key (or Authorization: Bearer <key>)", request_id, {"x-request-id": request_id})
            if request.headers.get("content-type", "").startswith("multipart/"):
                raise InvalidRequestError("the Messages API takes a JSON body")
            body, _ = await gateway.read_body(request)
            chat, dropped = request_to_chat(body)
            stop_sequences = tuple(body.get("stop_sequences") or ())
            model, ignored, options = gateway.prepare("chat", chat, identity)
            headers = {"x-request-id": request_id, "request-id": request_id}
            ignored = sorted({*ignored, *dropped})
            if ignored:
                headers["x-modelport-ignored-params"] = ",".join(ignored)
            result = await gateway.call(request, identity, "chat", model, chat, request_id=request_id, options=options,
                                        response_headers=headers)  # fmt: skip
            if chat.get("stream"):
                translator = MessageStreamTranslator(model, message_id=new_id(), stop_sequences=stop_sequences)
                return self._stream(result, translator, headers, request_id)
            completion = result.to_dict()
            if isinstance(completion.get("model"), str):
                headers["x-modelport-upstream-model"] = completion["model"]
            message = completion_to_message(completion, model, stop_sequences=stop_sequences)
            return gateway.json_response(message, headers=headers)
        except ClientGone:
            log.info("request %s: the client disconnected; its upstream call was cancelled", request_id)
            return Response(status_code=499)
        except Exception as error:  # every failure becomes an Anthropic-shaped error
            return self.failure(error, request_id)

    def _stream(self, stream: Any, translator: MessageStreamTranslator, headers: Dict[str, str], request_id: str) -> "Response":
        from starlette.responses import StreamingResponse

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"".join(map(_sse, translator.start()))
                async for chunk in stream:
                    out = translator.feed(chunk)
                    if out:
                        yield b"".join(map(_sse, out))
                yield b"".join(map(_sse, translator.finish()))
            except Exception as error:  # after the first byte an error can only be an event
                status, payload, _ = client_error(error, request_id)
                yield b"".join(map(_sse, translator.fail(status, payload["error"]["message"])))
            finally:
                await stream.aclose()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache", **headers})


def routes(gateway: Gateway) -> List[Any]:
    """``POST /v1/messages``."""
    from starlette.routing import Route

    return [Route("/v1/messages", _Messages(gateway).create, methods=["POST"])]
