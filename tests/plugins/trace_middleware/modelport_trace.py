"""A modelport middleware in one module: wraps every provider's ``transform_request``.

It adds an ``X-Modelport-Trace: <provider>/<model>`` header to every request and
records each call's (provider, model, operation) in ``CALLS``.
"""

from __future__ import annotations

from typing import Any, Generator, List, Tuple

from modelport.provider import Call, Endpoint, WireRequest, hookimpl

CALLS: List[Tuple[str, str, str]] = []


@hookimpl(wrapper=True)
def transform_request(call: Call, endpoint: Endpoint) -> Generator[None, Any, WireRequest]:
    request: WireRequest = yield
    CALLS.append((call.provider, call.model, call.operation))
    return request.with_headers({"X-Modelport-Trace": f"{call.provider}/{call.model}"})
