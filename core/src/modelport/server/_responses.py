"""Gateway feature: OpenAI's Responses API on the chat operation of any served model.

``POST /v1/responses`` (and ``/responses``) translates the request with
``modelport.responses_api`` and runs it through the gateway's pipeline as a ``chat`` call
(auth, body limits, model checks, guards, observers and OpenAI-shaped errors as on
``/v1/chat/completions``); ``stream: true`` answers with the Responses event stream.
``GET /v1/responses/{id}`` returns a stored response to the key that created it (the
master key sees all). Stored responses also serve ``previous_response_id``; the store is
bounded by ``general_settings.responses_store_max_entries`` (default 1000) and
``general_settings.responses_store_ttl_minutes`` (default 60).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, AsyncIterator, Dict, List, Optional, Tuple

from ..errors import ConfigError, InvalidRequestError
from ..responses_api import ResponsePlan, ResponseStore, plan_request
from ..transport import encode_json
from ._app import ClientGone, Gateway, Identity
from ._edge import client_error, error_json, request_id_for

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["routes", "store_settings", "owner_of", "DEFAULT_STORE_ENTRIES", "DEFAULT_STORE_TTL_MINUTES"]

log = logging.getLogger("modelport.server")

DEFAULT_STORE_ENTRIES = 1000
DEFAULT_STORE_TTL_MINUTES = 60.0


def store_settings(gateway: Gateway) -> Tuple[int, float]:
    """(max entries, ttl seconds) of the response store, from ``general_settings``."""
    router = gateway.client.router
    general: Dict[str, Any] = router.config.general if router is not None else {}
    entries = general.get("responses_store_max_entries", DEFAULT_STORE_ENTRIES)
    minutes = general.get("responses_store_ttl_minutes", DEFAULT_STORE_TTL_MINUTES)
    if isinstance(entries, bool) or not isinstance(entries, int) or entries < 0:
        raise ConfigError(f"general_settings.responses_store_max_entries must be a whole number >= 0, got {entries!r}")
    if isinstance(minutes, bool) or not isinstance(minutes, (int, float)) or minutes <= 0:
        raise ConfigError(f"general_settings.responses_store_ttl_minutes must be a number > 0, got {minutes!r}")
    return entries, float(minutes) * 60.0


def owner_of(identity: Identity) -> str:
    """Whose stored responses a caller may read: its key's, else its user's."""
    if identity.key_hash:
        return f"key:{identity.key_hash}"
    if identity.user_id:
        return f"user:{identity.user_id}"
    return "master" if identity.is_master else "anonymous"


def _sse(event: Dict[str, Any]) -> bytes:
    data: bytes = encode_json(event)
    return b"event: " + str(event["type"]).encode() + b"\ndata: " + data + b"\n\n"


class _Responses:
    def __init__(self, gateway: Gateway, store: ResponseStore) -> None:
        self.gateway = gateway
        self.store = store

    async def create(self, request: "Request") -> "Response":
        from starlette.responses import Response

        gateway = self.gateway
        request_id = request_id_for(request.headers)
        try:
            identity = await gateway.auth.identify(request)
            if identity is None:
                return gateway.unauthorised(request_id)
            if request.headers.get("content-type", "").startswith("multipart/"):
                raise InvalidRequestError("the Responses API takes a JSON body")
            body, _ = await gateway.read_body(request)
            plan = plan_request(body, self.store, owner=owner_of(identity), any_owner=identity.is_master)
            model, ignored, options = gateway.prepare("chat", plan.chat, identity)
            headers = {"x-request-id": request_id}
            if ignored:
                headers["x-modelport-ignored-params"] = ",".join(ignored)
            result = await gateway.call(request, identity, "chat", model, plan.chat, request_id=request_id, options=options,
                                        response_headers=headers)  # fmt: skip
            if plan.stream:
                return self._stream(result, plan, headers, request_id)
            completion = result.to_dict()
            if isinstance(completion.get("model"), str):
                headers["x-modelport-upstream-model"] = completion["model"]
            response = plan.complete(completion)
            plan.remember(self.store, response)
            return gateway.json_response(response, headers=headers)
        except ClientGone:
            log.info("request %s: the client disconnected; its upstream call was cancelled", request_id)
            return Response(status_code=499)
        except Exception as error:  # every failure becomes an OpenAI-shaped error
            return gateway.failure(error, request_id)

    def _stream(self, stream: Any, plan: ResponsePlan, headers: Dict[str, str], request_id: str) -> "Response":
        from starlette.responses import StreamingResponse

        translator = plan.translator()
        store = self.store

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"".join(map(_sse, translator.start()))
                async for chunk in stream:
                    out = translator.feed(chunk)
                    if out:
                        yield b"".join(map(_sse, out))
                yield b"".join(map(_sse, translator.finish()))
                if translator.response is not None:
                    plan.remember(store, translator.response)
            except Exception as error:  # after the first byte an error can only be an event
                payload = client_error(error, request_id)[1]
                yield b"".join(map(_sse, translator.fail(payload["error"])))
            finally:
                await stream.aclose()

        return StreamingResponse(events(), media_type="text/event-stream", headers={"cache-control": "no-cache", **headers})

    async def retrieve(self, request: "Request") -> "Response":
        gateway = self.gateway
        request_id = request_id_for(request.headers)
        try:
            identity = await gateway.auth.identify(request)
            if identity is None:
                return gateway.unauthorised(request_id)
            response_id = str(request.path_params["response_id"])
            entry = self.store.get(response_id, owner_of(identity), any_owner=identity.is_master)
            if entry is None:
                message = f"No response found with id {response_id[:80]!r} (unknown, expired, or created with store=false)."
                return gateway.json_response(error_json(message, 404, "response_not_found", "response_id"), 404, {"x-request-id": request_id})
            return gateway.json_response(entry.response, headers={"x-request-id": request_id})
        except Exception as error:
            return gateway.failure(error, request_id)


def routes(gateway: Gateway, store: Optional[ResponseStore] = None) -> List[Any]:
    """``POST /v1/responses``, ``GET /v1/responses/{response_id}`` (and both without ``/v1``)."""
    from starlette.routing import Route

    if store is None:
        entries, ttl = store_settings(gateway)
        store = ResponseStore(entries, ttl)
    feature = _Responses(gateway, store)
    return [
        Route("/v1/responses", feature.create, methods=["POST"]),
        Route("/responses", feature.create, methods=["POST"]),
        Route("/v1/responses/{response_id}", feature.retrieve, methods=["GET"]),
        Route("/responses/{response_id}", feature.retrieve, methods=["GET"]),
    ]
