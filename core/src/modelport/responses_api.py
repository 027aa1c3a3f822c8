"""OpenAI's Responses API on any provider's chat operation.

Pure translation in both directions plus the stream events, shared by the gateway's
``POST /v1/responses`` and the Python API (``responses(client, ...)`` /
``aresponses(async_client, ...)``):

- a Responses request (``input`` string or items, ``instructions``, function ``tools``,
  ``tool_choice``, ``text.format``, ``max_output_tokens``, ``reasoning.effort``, ...) ->
  a chat-completions body (``request_to_chat``);
- a chat completion -> a Responses object (``completion_to_response``): reasoning,
  message and function-call output items, usage in the Responses shape, ``status``
  ``incomplete`` when the model hit its token limit;
- chat chunks -> the documented Responses event sequence with ``sequence_number``
  (``ResponseStreamTranslator``);
- ``previous_response_id``: earlier turns kept in a bounded in-memory ``ResponseStore``
  (at most ``max_entries`` responses, each for ``ttl_seconds``).

Choices where the two APIs differ are documented in docs/gateway.md (section "Responses
API and Anthropic Messages API").
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from typing import (
    TYPE_CHECKING,
    Any,
    AsyncIterator,
    Callable,
    Dict,
    Iterator,
    List,
    Mapping,
    Optional,
    Sequence,
    Tuple,
)

import attrs

from .errors import InvalidRequestError, NotFoundError
from .types import NOTSET, ChatCompletionChunk, OpenAIObject, field, nested, openai_type

if TYPE_CHECKING:
    from .client import AsyncClient, Client

__all__ = [
    "Response",
    "ResponseEvent",
    "ResponseStore",
    "StoredResponse",
    "ResponsePlan",
    "ResponseStreamTranslator",
    "check_request",
    "input_to_messages",
    "request_to_chat",
    "plan_request",
    "completion_to_response",
    "output_to_messages",
    "usage_to_responses",
    "default_store",
    "responses",
    "aresponses",
]

# --- typed results of the Python API ---------------------------------------------------------


@openai_type
class Response(OpenAIObject):
    """A Responses API object (``object: "response"``); every other field stays in ``extra``."""

    id: str = field()
    object: str = field()
    created_at: float = field()
    status: str = field()
    model: str = field()
    output: List[Dict[str, Any]] = field()
    usage: Optional[Dict[str, Any]] = field()
    incomplete_details: Optional[Dict[str, Any]] = field()
    error: Optional[Dict[str, Any]] = field()
    previous_response_id: Optional[str] = field()

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part of the message items, joined (as the SDK's)."""
        return "".join(
            part.get("text") or ""
            for item in self.output or ()
            if isinstance(item, dict) and item.get("type") == "message"
            for part in item.get("content") or ()
            if isinstance(part, dict) and part.get("type") == "output_text"
        )


@openai_type
class ResponseEvent(OpenAIObject):
    """One event of a streamed response (``type`` says which; unknown keys in ``extra``)."""

    type: str = field()
    sequence_number: int = field()
    response: Response = nested(Response)
    item: Dict[str, Any] = field()
    output_index: int = field()
    content_index: int = field()
    item_id: str = field()
    part: Dict[str, Any] = field()
    delta: str = field()
    text: str = field()
    arguments: str = field()
    refusal: str = field()
    code: Optional[str] = field()
    message: str = field()
    param: Optional[str] = field()


# --- request checks ----------------------------------------------------------------------------


def _obj(value: Any) -> Dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_KINDS: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "int": (_is_int, "an integer"),
    "number": (_is_number, "a number"),
    "string": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "an array"),
    "object": (lambda v: isinstance(v, dict), "an object"),
    "string|list": (lambda v: isinstance(v, (str, list)), "a string or an array"),
    "string|object": (lambda v: isinstance(v, (str, dict)), "a string or an object"),
}

#: The Responses API's parameters whose JSON type is checked before anything else.
REQUEST_TYPES: Dict[str, str] = {
    "model": "string", "input": "string|list", "instructions": "string", "max_output_tokens": "int",
    "temperature": "number", "top_p": "number", "tools": "list", "tool_choice": "string|object",
    "text": "object", "reasoning": "object", "metadata": "object", "user": "string",
    "parallel_tool_calls": "bool", "store": "bool", "previous_response_id": "string", "stream": "bool",
    "background": "bool", "include": "list", "truncation": "string", "stream_options": "object",
}  # fmt: skip

#: Responses parameters this module reads (or knowingly drops); any other key of a request
#: is passed on to the chat call as it is (provider extras such as ``top_k``, and call
#: options, which the gateway strips and reports).
_CONSUMED = frozenset(
    {
        "input", "instructions", "text", "reasoning", "max_output_tokens", "previous_response_id",
        "store", "metadata", "include", "truncation", "stream_options", "background", "conversation",
        "prompt", "max_tool_calls", "top_logprobs", "messages", "tools", "tool_choice",
        "parallel_tool_calls", "stream", "context_management",
    }
)  # fmt: skip
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def check_request(body: Mapping[str, Any]) -> None:
    """Raise ``InvalidRequestError`` naming the first Responses parameter of the wrong type."""
    import json

    for name, kind in REQUEST_TYPES.items():
        value = body.get(name)
        if value is None:
            continue
        accepts, wanted = _KINDS[kind]
        if not accepts(value):
            raise InvalidRequestError(f"'{name}' must be {wanted}, got {json.dumps(value)[:40]}", param=name)
    if body.get("background"):
        raise InvalidRequestError("background responses are not offered here; leave 'background' out", param="background")
    for name in ("conversation", "prompt"):
        if body.get(name) is not None:
            raise InvalidRequestError(f"'{name}' is not supported by this gateway; send the turns as 'input' (or use 'previous_response_id')", param=name)


# --- request: Responses -> chat ------------------------------------------------------------------


def _need_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequestError(f"'{where}' must be a string", param=where)
    return value


def _part(part: Any, where: str) -> Dict[str, Any]:
    """One Responses content part -> a chat content part."""
    if isinstance(part, str):
        return {"type": "text", "text": part}
    if not isinstance(part, dict):
        raise InvalidRequestError(f"'{where}' must be a content part object", param=where)
    kind = part.get("type")
    if kind in ("input_text", "output_text", "text"):
        return {"type": "text", "text": _need_str(part.get("text"), f"{where}.text")}
    if kind == "refusal":
        return {"type": "text", "text": _need_str(part.get("refusal"), f"{where}.refusal")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str):
            raise InvalidRequestError(
                f"'{where}': images are sent on by URL; give 'image_url' (an https or data: URL), file ids are not served here",
                param=where,
            )
        image: Dict[str, Any] = {"url": url}
        if isinstance(part.get("detail"), str):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        if part.get("file_url") is not None and part.get("file_data") is None:
            raise InvalidRequestError(f"'{where}': file URLs are not served here; send 'file_data' (a data: URL) or 'file_id'", param=where)
        file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k) is not None}
        return {"type": "file", "file": file}
    if kind == "input_audio":
        return {"type": "input_audio", "input_audio": part.get("input_audio")}
    raise InvalidRequestError(
        f"'{where}': content parts of type {kind!r} are not supported; use input_text, input_image, input_file or input_audio",
        param=f"{where}.type",
    )


def _content(content: Any, where: str) -> Any:
    """Message content -> chat content: a string stays one; a single text part becomes a
    string, other part lists stay lists of chat parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequestError(f"'{where}' must be a string or an array of content parts", param=where)
    parts = [_part(p, f"{where}[{k}]") for k, p in enumerate(content)]
    if len(parts) == 1 and parts[0]["type"] == "text":
        return parts[0]["text"]
    return parts


def _text_only(content: Any, where: str) -> str:
    """Assistant content (output_text / refusal parts) as one string."""
    converted = _content(content, where)
    if isinstance(converted, str):
        return converted
    return "".join(p.get("text", "") for p in converted if p.get("type") == "text")


def input_to_messages(input: Any) -> List[Dict[str, Any]]:
    """Responses ``input`` (a string or items) -> chat messages.

    Message items keep their role (``developer`` becomes ``system``); consecutive
    ``function_call`` items join the assistant turn before them as ``tool_calls``;
    ``function_call_output`` items are ``tool`` messages; ``reasoning`` items are dropped
    (chat upstreams take no reasoning back). Other item types are a 400 naming them.
    """
    if input is None:
        return []
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    if not isinstance(input, list):
        raise InvalidRequestError("'input' must be a string or an array of input items", param="input")
    messages: List[Dict[str, Any]] = []
    for position, item in enumerate(input):
        where = f"input[{position}]"
        if not isinstance(item, dict):
            raise InvalidRequestError(f"'{where}' must be an input item object", param=where)
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = _ROLES.get(item.get("role"))  # type: ignore[arg-type]
            if role is None:
                raise InvalidRequestError(f"'{where}.role' must be one of user, assistant, system, developer", param=f"{where}.role")
            if role == "assistant":
                messages.append({"role": "assistant", "content": _text_only(item.get("content"), f"{where}.content")})
            else:
                messages.append({"role": role, "content": _content(item.get("content"), f"{where}.content")})
        elif kind == "function_call":
            call = {
                "id": _need_str(item.get("call_id"), f"{where}.call_id"),
                "type": "function",
                "function": {"name": _need_str(item.get("name"), f"{where}.name"), "arguments": item.get("arguments") or ""},
            }
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(call)
                if last.get("content") == "":
                    last["content"] = None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            if isinstance(output, list):
                parts = [_part(p, f"{where}.output[{k}]") for k, p in enumerate(output)]
                output = "".join(p["text"] for p in parts) if all(p["type"] == "text" for p in parts) else parts
            elif not isinstance(output, str):
                raise InvalidRequestError(f"'{where}.output' must be a string or an array of content parts", param=f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": _need_str(item.get("call_id"), f"{where}.call_id"), "content": output})
        elif kind == "reasoning":
            continue
        else:
            raise InvalidRequestError(
                f"'{where}': input items of type {kind!r} are not supported here;"
                " use message, function_call and function_call_output items",
                param=f"{where}.type",
            )
    return messages


def _tools(tools: Any) -> List[Dict[str, Any]]:
    out = []
    for position, tool in enumerate(tools):
        where = f"tools[{position}]"
        if not isinstance(tool, dict):
            raise InvalidRequestError(f"'{where}' must be a tool object", param=where)
        if tool.get("type") != "function":
            raise InvalidRequestError(
                f"'{where}': only function tools are served here, not {tool.get('type')!r} (a tool hosted by OpenAI)",
                param=f"{where}.type",
            )
        if isinstance(tool.get("function"), dict):  # a chat-completions tool, accepted as it is
            out.append({"type": "function", "function": tool["function"]})
            continue
        function: Dict[str, Any] = {"name": _need_str(tool.get("name"), f"{where}.name")}
        for key in ("description", "parameters", "strict"):
            if tool.get(key) is not None:
                function[key] = tool[key]
        out.append({"type": "function", "function": function})
    return out


def _tool_choice(choice: Any, tools: List[Dict[str, Any]]) -> Tuple[Any, List[Dict[str, Any]]]:
    """(chat tool_choice, chat tools): ``allowed_tools`` narrows the tool list."""
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise InvalidRequestError("'tool_choice' must be auto, none, required or a tool object", param="tool_choice")
        return choice, tools
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        return {"type": "function", "function": {"name": _need_str(name, "tool_choice.name")}}, tools
    if kind == "allowed_tools":
        allowed = {t.get("name") for t in choice.get("tools") or () if isinstance(t, dict)}
        mode = choice.get("mode") or "auto"
        if mode not in ("auto", "required"):
            raise InvalidRequestError("'tool_choice.mode' must be auto or required", param="tool_choice.mode")
        return mode, [t for t in tools if t["function"].get("name") in allowed]
    raise InvalidRequestError(f"'tool_choice' of type {kind!r} is not supported here; use auto, none, required or a function", param="tool_choice")


def _response_format(text: Mapping[str, Any]) -> Optional[Dict[str, Any]]:
    fmt = text.get("format")
    if fmt is None:
        return None
    if not isinstance(fmt, dict):
        raise InvalidRequestError("'text.format' must be an object", param="text.format")
    kind = fmt.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise InvalidRequestError("'text.format.schema' must be a JSON schema object", param="text.format.schema")
        schema: Dict[str, Any] = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        for key in ("strict", "description"):
            if fmt.get(key) is not None:
                schema[key] = fmt[key]
        return {"type": "json_schema", "json_schema": schema}
    raise InvalidRequestError("'text.format.type' must be text, json_object or json_schema", param="text.format.type")


def request_to_chat(body: Mapping[str, Any], history: Sequence[Dict[str, Any]] = ()) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    """(chat body, the new input as chat messages) for a Responses request.

    ``history`` (the chat messages of the ``previous_response_id`` chain) goes after the
    ``instructions`` system message and before the new input. Keys this module does not
    know are passed on as they are.
    """
    check_request(body)
    new_messages = input_to_messages(body.get("input"))
    messages: List[Dict[str, Any]] = []
    if body.get("instructions"):
        messages.append({"role": "system", "content": body["instructions"]})
    messages += [dict(m) for m in history]
    messages += [dict(m) for m in new_messages]
    if not messages:
        raise InvalidRequestError("'input' is required", param="input")
    chat: Dict[str, Any] = {k: v for k, v in body.items() if k not in _CONSUMED}
    chat["messages"] = messages
    if body.get("tools"):
        tools = _tools(body["tools"])
        if body.get("tool_choice") is not None:
            chat["tool_choice"], tools = _tool_choice(body["tool_choice"], tools)
        chat["tools"] = tools
        if body.get("parallel_tool_calls") is not None:
            chat["parallel_tool_calls"] = body["parallel_tool_calls"]
    if body.get("max_output_tokens") is not None:
        chat["max_tokens"] = body["max_output_tokens"]
    text = body.get("text")
    if isinstance(text, dict):
        response_format = _response_format(text)
        if response_format is not None:
            chat["response_format"] = response_format
        if text.get("verbosity") is not None:
            chat["verbosity"] = text["verbosity"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and reasoning.get("effort") is not None:
        chat["reasoning_effort"] = reasoning["effort"]
    if body.get("stream"):
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}
    return chat, new_messages


# --- response: chat -> Responses -----------------------------------------------------------------


def new_id(prefix: str) -> str:
    """``<prefix>_<48 hex digits>``, the shape of OpenAI's ids."""
    return f"{prefix}_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"


def response_shell(request: Mapping[str, Any], response_id: str, model: str, created_at: int) -> Dict[str, Any]:
    """The Responses object before any output: the request's settings echoed."""
    reasoning = _obj(request.get("reasoning"))
    text = _obj(request.get("text"))
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True) is not False,
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "store": request.get("store") is not False,
        "temperature": request.get("temperature"),
        "text": {**text, "format": text.get("format") or {"type": "text"}},
        "tool_choice": request.get("tool_choice") if request.get("tool_choice") is not None else "auto",
        "tools": list(request.get("tools") or []),
        "top_p": request.get("top_p"),
        "truncation": request.get("truncation") or "disabled",
        "usage": None,
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def _count(value: Any) -> int:
    return value if _is_int(value) else 0


def usage_to_responses(usage: Any) -> Optional[Dict[str, Any]]:
    """Chat ``usage`` -> the Responses usage object (None without one)."""
    if isinstance(usage, OpenAIObject):
        usage = usage.to_dict()
    if not isinstance(usage, Mapping):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    prompt_details = _obj(usage.get("prompt_tokens_details"))
    completion_details = _obj(usage.get("completion_tokens_details"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _count(prompt_details.get("cached_tokens")),
            "cache_write_tokens": _count(usage.get("cache_creation_input_tokens")),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(completion_details.get("reasoning_tokens"))},
        "total_tokens": _count(usage.get("total_tokens")) or prompt + completion,
    }


def _final_status(finish_reason: Any) -> Tuple[str, Optional[Dict[str, Any]]]:
    if finish_reason == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish_reason == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _message_item(parts: List[Dict[str, Any]], status: str) -> Dict[str, Any]:
    return {"id": new_id("msg"), "type": "message", "status": status, "role": "assistant", "content": parts}


def _text_part(text: str) -> Dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _reasoning_item(text: str, status: str) -> Dict[str, Any]:
    return {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [{"type": "reasoning_text", "text": text}], "status": status}


def _call_item(call_id: str, name: str, arguments: str, status: str) -> Dict[str, Any]:
    return {"id": new_id("fc"), "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments}


def _reasoning_of(message: Mapping[str, Any]) -> Optional[str]:
    for key in ("reasoning_content", "reasoning"):
        value = message.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def completion_to_response(completion: Mapping[str, Any], shell: Mapping[str, Any]) -> Dict[str, Any]:
    """A chat completion (JSON) -> the finished Responses object built on ``shell``."""
    choices = completion.get("choices") or [{}]
    choice = _obj(choices[0])
    message = _obj(choice.get("message"))
    status, incomplete = _final_status(choice.get("finish_reason"))
    item_status = "incomplete" if status == "incomplete" else "completed"
    output: List[Dict[str, Any]] = []
    reasoning = _reasoning_of(message)
    if reasoning:
        output.append(_reasoning_item(reasoning, item_status))
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(p.get("text") or "" for p in content if isinstance(p, dict) and p.get("type") == "text")
    calls = [c for c in message.get("tool_calls") or () if isinstance(c, dict)]
    parts: List[Dict[str, Any]] = []
    if isinstance(content, str) and (content or not calls):
        parts.append(_text_part(content))
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts or not calls:
        output.append(_message_item(parts or [_text_part("")], item_status))
    for call in calls:
        function = _obj(call.get("function"))
        arguments = function.get("arguments")
        output.append(_call_item(call.get("id") or new_id("call"), function.get("name") or "", arguments if isinstance(arguments, str) else "", "completed"))
    response = {**shell, "status": status, "output": output, "usage": usage_to_responses(completion.get("usage")), "incomplete_details": incomplete}
    if status == "completed":
        response["completed_at"] = int(time.time())
    return response


def output_to_messages(output: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """A response's output items -> the assistant chat turn that replays them (reasoning dropped)."""
    texts: List[str] = []
    calls: List[Dict[str, Any]] = []
    for item in output:
        if item.get("type") == "message":
            texts += [p.get("text") or "" for p in item.get("content") or () if p.get("type") == "output_text"]
        elif item.get("type") == "function_call":
            calls.append({"id": item.get("call_id"), "type": "function", "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""}})
    if not texts and not calls:
        return []
    message: Dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return [message]


# --- stream: chat chunks -> Responses events -----------------------------------------------------


def _str(value: Any) -> Optional[str]:
    return value if isinstance(value, str) and value else None


class ResponseStreamTranslator:
    """Chat chunks -> the Responses event sequence for one response.

    ``start()`` gives response.created and response.in_progress; ``feed(chunk)`` the
    events of one chunk (output_item.added, content_part.added, output_text.delta,
    reasoning_text.delta, function_call_arguments.delta, and the .done events of items it
    closes); ``finish()`` closes what is open and ends with response.completed (or
    response.incomplete); ``fail(error)`` ends with ``error`` and response.failed.
    Every event carries the next ``sequence_number``. ``response`` is the final object.
    """

    def __init__(self, shell: Mapping[str, Any]) -> None:
        self._shell = dict(shell)
        self._sequence = 0
        self._items: List[Dict[str, Any]] = []
        self._message: Optional[int] = None
        self._part: Optional[str] = None
        self._reasoning: Optional[int] = None
        self._buffer: List[str] = []
        self._calls: Dict[int, int] = {}
        self._call_ids: Dict[str, int] = {}
        self._last_call: Optional[int] = None
        self._arguments: Dict[int, List[str]] = {}
        self._finish_reason: Optional[str] = None
        self._usage: Any = None
        self.response: Optional[Dict[str, Any]] = None

    def _event(self, kind: str, **fields: Any) -> Dict[str, Any]:
        event = {"type": kind, **fields, "sequence_number": self._sequence}
        self._sequence += 1
        return event

    @staticmethod
    def _snapshot(item: Dict[str, Any]) -> Dict[str, Any]:
        copy = dict(item)
        if isinstance(item.get("content"), list):
            copy["content"] = [dict(p) for p in item["content"]]
        return copy

    def start(self) -> List[Dict[str, Any]]:
        snapshot = {**self._shell, "status": "in_progress", "output": []}
        return [self._event("response.created", response=snapshot), self._event("response.in_progress", response=dict(snapshot))]

    def feed(self, chunk: Any) -> List[Dict[str, Any]]:
        if isinstance(chunk, dict):
            chunk = ChatCompletionChunk.from_dict(chunk)
        events: List[Dict[str, Any]] = []
        if chunk.usage:
            self._usage = chunk.usage
        for choice in chunk.choices or ():
            if choice.index not in (0, NOTSET):
                continue
            delta = choice.delta
            if delta:
                reasoning = _str(delta.reasoning_content) or _str(delta.extra.get("reasoning"))
                if reasoning:
                    self._reasoning_delta(reasoning, events)
                content = _str(delta.content)
                if content:
                    self._message_delta("output_text", content, events)
                refusal = _str(delta.refusal)
                if refusal:
                    self._message_delta("refusal", refusal, events)
                for call in delta.tool_calls or ():
                    self._call_delta(call, events)
            if choice.finish_reason:
                self._finish_reason = choice.finish_reason
        return events

    # reasoning items

    def _reasoning_delta(self, text: str, events: List[Dict[str, Any]]) -> None:
        if self._reasoning is None:
            self._close_message(events, "completed")
            index = len(self._items)
            item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": [], "status": "in_progress"}
            self._items.append(item)
            self._reasoning, self._buffer = index, []
            events.append(self._event("response.output_item.added", output_index=index, item=self._snapshot(item)))
            events.append(self._event("response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part={"type": "reasoning_text", "text": ""}))
        self._buffer.append(text)
        item_id = self._items[self._reasoning]["id"]
        events.append(self._event("response.reasoning_text.delta", item_id=item_id, output_index=self._reasoning, content_index=0, delta=text))

    def _close_reasoning(self, events: List[Dict[str, Any]], status: str) -> None:
        index = self._reasoning
        if index is None:
            return
        item, text = self._items[index], "".join(self._buffer)
        part = {"type": "reasoning_text", "text": text}
        item["content"], item["status"] = [part], status
        events.append(self._event("response.reasoning_text.done", item_id=item["id"], output_index=index, content_index=0, text=text))
        events.append(self._event("response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=dict(part)))
        events.append(self._event("response.output_item.done", output_index=index, item=self._snapshot(item)))
        self._reasoning, self._buffer = None, []

    # message items

    def _open_part(self, kind: str, events: List[Dict[str, Any]]) -> None:
        if self._message is None:
            self._close_reasoning(events, "completed")
            index = len(self._items)
            item = _message_item([], "in_progress")
            self._items.append(item)
            self._message = index
            events.append(self._event("response.output_item.added", output_index=index, item=self._snapshot(item)))
        if self._part != kind:
            self._close_part(events)
            item = self._items[self._message]
            part = _text_part("") if kind == "output_text" else {"type": "refusal", "refusal": ""}
            item["content"].append(part)
            self._part, self._buffer = kind, []
            events.append(self._event("response.content_part.added", item_id=item["id"], output_index=self._message,
                                      content_index=len(item["content"]) - 1, part=dict(part)))  # fmt: skip

    def _message_delta(self, kind: str, text: str, events: List[Dict[str, Any]]) -> None:
        self._open_part(kind, events)
        assert self._message is not None
        item = self._items[self._message]
        self._buffer.append(text)
        where = {"item_id": item["id"], "output_index": self._message, "content_index": len(item["content"]) - 1}
        if kind == "output_text":
            events.append(self._event("response.output_text.delta", **where, delta=text, logprobs=[]))
        else:
            events.append(self._event("response.refusal.delta", **where, delta=text))

    def _close_part(self, events: List[Dict[str, Any]]) -> None:
        if self._message is None or self._part is None:
            return
        item, text = self._items[self._message], "".join(self._buffer)
        part = item["content"][-1]
        where = {"item_id": item["id"], "output_index": self._message, "content_index": len(item["content"]) - 1}
        if self._part == "output_text":
            part["text"] = text
            events.append(self._event("response.output_text.done", **where, text=text, logprobs=[]))
        else:
            part["refusal"] = text
            events.append(self._event("response.refusal.done", **where, refusal=text))
        events.append(self._event("response.content_part.done", **where, part=dict(part)))
        self._part, self._buffer = None, []

    def _close_message(self, events: List[Dict[str, Any]], status: str) -> None:
        if self._message is None:
            return
        self._close_part(events)
        item = self._items[self._message]
        item["status"] = status
        events.append(self._event("response.output_item.done", output_index=self._message, item=self._snapshot(item)))
        self._message = None

    # function calls

    def _call_delta(self, call: Any, events: List[Dict[str, Any]]) -> None:
        call_id = _str(call.id)
        function = call.function or None
        name = _str(function.name) if function is not None else None
        arguments = _str(function.arguments) if function is not None else None
        if isinstance(call.index, int):
            index = self._calls.get(call.index)
        elif call_id is not None:  # providers that send no index tell calls apart by id
            index = self._call_ids.get(call_id)
        else:
            index = self._last_call
        if index is None:
            self._close_message(events, "completed")
            self._close_reasoning(events, "completed")
            index = len(self._items)
            item = _call_item(call_id or new_id("call"), name or "", "", "in_progress")
            self._items.append(item)
            self._calls[call.index if isinstance(call.index, int) else -1 - len(self._calls)] = index
            self._call_ids[item["call_id"]] = index
            self._arguments[index] = []
            events.append(self._event("response.output_item.added", output_index=index, item=self._snapshot(item)))
        elif name and not self._items[index]["name"]:
            self._items[index]["name"] = name
        self._last_call = index
        if arguments:
            self._arguments[index].append(arguments)
            events.append(self._event("response.function_call_arguments.delta", item_id=self._items[index]["id"], output_index=index, delta=arguments))

    def _close_calls(self, events: List[Dict[str, Any]], status: str) -> None:
        for index in sorted(self._arguments):
            item = self._items[index]
            item["arguments"], item["status"] = "".join(self._arguments[index]), status
            events.append(self._event("response.function_call_arguments.done", item_id=item["id"], output_index=index, arguments=item["arguments"]))
            events.append(self._event("response.output_item.done", output_index=index, item=self._snapshot(item)))
        self._arguments.clear()

    # the end

    def finish(self) -> List[Dict[str, Any]]:
        events: List[Dict[str, Any]] = []
        status, incomplete = _final_status(self._finish_reason)
        item_status = "incomplete" if status == "incomplete" else "completed"
        if not self._items:  # an empty answer is an empty message, as without streaming
            self._open_part("output_text", events)
        self._close_reasoning(events, item_status)
        self._close_message(events, item_status)
        self._close_calls(events, item_status)
        response = {**self._shell, "status": status, "output": [self._snapshot(i) for i in self._items],
                    "usage": usage_to_responses(self._usage), "incomplete_details": incomplete}  # fmt: skip
        if status == "completed":
            response["completed_at"] = int(time.time())
        self.response = response
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=response))
        return events

    def fail(self, error: Mapping[str, Any]) -> List[Dict[str, Any]]:
        """``error`` (OpenAI's inner error object) as an ``error`` event and response.failed."""
        code, message = error.get("code"), error.get("message") or "the response failed"
        events = [self._event("error", code=code, message=message, param=error.get("param"))]
        response = {**self._shell, "status": "failed", "output": [self._snapshot(i) for i in self._items],
                    "error": {"code": code or "server_error", "message": message}}  # fmt: skip
        events.append(self._event("response.failed", response=response))
        return events


# --- previous_response_id: the store -------------------------------------------------------------


@attrs.frozen
class StoredResponse:
    """One stored response: its object, the chat turns of its chain, who made it, until when."""

    owner: Optional[str]
    response: Dict[str, Any]
    messages: Tuple[Dict[str, Any], ...]
    expires: float


class ResponseStore:
    """Responses kept for ``previous_response_id`` and ``GET /v1/responses/{id}``: at most
    ``max_entries`` (the oldest go first), each for ``ttl_seconds``; in memory, per process.
    ``max_entries=0`` stores nothing. Safe to share between threads."""

    def __init__(self, max_entries: int = 1000, ttl_seconds: float = 3600.0, *, clock: Callable[[], float] = time.monotonic) -> None:
        if not _is_int(max_entries) or max_entries < 0:
            raise InvalidRequestError(f"max_entries must be a whole number >= 0, got {max_entries!r}", param="max_entries")
        if not _is_number(ttl_seconds) or ttl_seconds <= 0:
            raise InvalidRequestError(f"ttl_seconds must be a number > 0, got {ttl_seconds!r}", param="ttl_seconds")
        self.max_entries = max_entries
        self.ttl_seconds = float(ttl_seconds)
        self._clock = clock
        self._entries: "OrderedDict[str, StoredResponse]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire(self._clock())
            return len(self._entries)

    def _expire(self, now: float) -> None:
        entries = self._entries
        while entries:
            first = next(iter(entries.values()))
            if first.expires > now:
                return
            entries.popitem(last=False)

    def put(self, response: Dict[str, Any], messages: Sequence[Dict[str, Any]], owner: Optional[str] = None) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            now = self._clock()
            self._expire(now)
            self._entries[response["id"]] = StoredResponse(owner, response, tuple(messages), now + self.ttl_seconds)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get(self, response_id: str, owner: Optional[str] = None, *, any_owner: bool = False) -> Optional[StoredResponse]:
        """The stored response, if it is there, not expired, and ``owner``'s (or ``any_owner``)."""
        with self._lock:
            self._expire(self._clock())
            entry = self._entries.get(response_id)
        if entry is None or not (any_owner or entry.owner == owner):
            return None
        return entry

    def delete(self, response_id: str) -> bool:
        with self._lock:
            return self._entries.pop(response_id, None) is not None


_DEFAULT_STORE: Optional[ResponseStore] = None
_STORE_LOCK = threading.Lock()


def default_store() -> ResponseStore:
    """The process-wide store the Python API uses unless given ``response_store=``."""
    global _DEFAULT_STORE
    if _DEFAULT_STORE is None:
        with _STORE_LOCK:
            if _DEFAULT_STORE is None:
                _DEFAULT_STORE = ResponseStore()
    return _DEFAULT_STORE


def previous_not_found(response_id: str) -> NotFoundError:
    return NotFoundError(
        f"Previous response with id {response_id!r} not found (unknown, expired, or created with store=false).",
        status=404,
        code="previous_response_not_found",
        param="previous_response_id",
    )


# --- one call, planned -------------------------------------------------------------------------------


@attrs.define
class ResponsePlan:
    """A Responses request made ready: the chat body to run and what the answer is built on."""

    request: Dict[str, Any]
    chat: Dict[str, Any]
    #: The chat turns before this response's output (previous chain + the new input).
    conversation: List[Dict[str, Any]]
    shell: Dict[str, Any]
    owner: Optional[str] = None

    @property
    def stream(self) -> bool:
        return bool(self.chat.get("stream"))

    @property
    def store(self) -> bool:
        return self.request.get("store") is not False

    def complete(self, completion: Mapping[str, Any]) -> Dict[str, Any]:
        return completion_to_response(completion, self.shell)

    def translator(self) -> ResponseStreamTranslator:
        return ResponseStreamTranslator(self.shell)

    def remember(self, store: Optional[ResponseStore], response: Dict[str, Any]) -> None:
        """Keep ``response`` (and its chain's turns) for later ``previous_response_id`` calls."""
        if store is not None and self.store:
            store.put(response, [*self.conversation, *output_to_messages(response["output"])], self.owner)


def plan_request(
    request: Mapping[str, Any],
    store: Optional[ResponseStore] = None,
    *,
    owner: Optional[str] = None,
    any_owner: bool = False,
    model: Optional[str] = None,
) -> ResponsePlan:
    """Check and translate one Responses request; ``NotFoundError`` (404) when its
    ``previous_response_id`` is not in ``store`` for ``owner``."""
    request = dict(request)
    check_request(request)  # types first: previous_response_id must be a string to look up
    history: Sequence[Dict[str, Any]] = ()
    previous_id = request.get("previous_response_id")
    if previous_id is not None:
        previous = store.get(previous_id, owner, any_owner=any_owner) if store is not None else None
        if previous is None:
            raise previous_not_found(previous_id)
        history = previous.messages
    chat, new_messages = request_to_chat(request, history)
    name = model if model is not None else request.get("model")
    if not isinstance(name, str) or not name:
        raise InvalidRequestError("'model' is required", param="model")
    shell = response_shell(request, new_id("resp"), name, int(time.time()))
    return ResponsePlan(request, chat, [*history, *new_messages], shell, owner)


# --- the Python API --------------------------------------------------------------------------------


def _call_arguments(plan: ResponsePlan) -> Tuple[str, Dict[str, Any], Dict[str, Any]]:
    kwargs = dict(plan.chat)
    model = kwargs.pop("model")
    return model, {"messages": kwargs.pop("messages")}, kwargs


def responses(client: "Client", model: str, input: Any = None, *, response_store: Optional[ResponseStore] = None, **kwargs: Any) -> Any:
    """A Responses API call on ``client``'s chat operation: a ``Response``, or with
    ``stream=True`` an iterator of ``ResponseEvent`` (errors are raised, as on chat streams).

    ``kwargs`` are Responses parameters (``instructions``, ``tools``, ``text``,
    ``previous_response_id``, ``store``, ...), call options (``api_key``, ``timeout``, ...)
    or provider extras. ``previous_response_id`` reads ``response_store`` (default: the
    process-wide ``default_store()``).
    """
    store = response_store if response_store is not None else default_store()
    plan = plan_request({**kwargs, "model": model, "input": input}, store)
    name, body, options = _call_arguments(plan)
    result = client._run("chat", name, body, options)
    if plan.stream:
        return _events(result, plan, store)
    response = plan.complete(result.to_dict())
    plan.remember(store, response)
    return Response.from_dict(response)


def _events(stream: Any, plan: ResponsePlan, store: ResponseStore) -> Iterator[Any]:
    translator = plan.translator()
    try:
        yield from map(ResponseEvent.from_dict, translator.start())
        for chunk in stream:
            yield from map(ResponseEvent.from_dict, translator.feed(chunk))
        yield from map(ResponseEvent.from_dict, translator.finish())
        assert translator.response is not None
        plan.remember(store, translator.response)
    finally:
        stream.close()


async def aresponses(client: "AsyncClient", model: str, input: Any = None, *, response_store: Optional[ResponseStore] = None, **kwargs: Any) -> Any:
    """``responses`` on an ``AsyncClient``: a ``Response``, or an async iterator of events."""
    store = response_store if response_store is not None else default_store()
    plan = plan_request({**kwargs, "model": model, "input": input}, store)
    name, body, options = _call_arguments(plan)
    result = await client._run("chat", name, body, options)
    if plan.stream:
        return _aevents(result, plan, store)
    response = plan.complete(result.to_dict())
    plan.remember(store, response)
    return Response.from_dict(response)


async def _aevents(stream: Any, plan: ResponsePlan, store: ResponseStore) -> AsyncIterator[Any]:
    translator = plan.translator()
    try:
        for event in translator.start():
            yield ResponseEvent.from_dict(event)
        async for chunk in stream:
            for event in translator.feed(chunk):
                yield ResponseEvent.from_dict(event)
        for event in translator.finish():
            yield ResponseEvent.from_dict(event)
        assert translator.response is not None
        plan.remember(store, translator.response)
    finally:
        await stream.aclose()
