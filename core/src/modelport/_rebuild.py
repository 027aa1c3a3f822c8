"""Rebuilding a full response from its stream of chunks (``stream_to_completion``)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Union

from .types import ChatCompletion, Completion, OpenAIObject

__all__ = ["stream_to_completion"]


def _merge_tool_call(calls: Dict[int, Dict[str, Any]], delta: Dict[str, Any], position: int) -> None:
    index = delta.get("index", position)
    current = calls.get(index)
    if current is None:
        current = calls[index] = {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    if delta.get("id"):  # some upstreams repeat "id": "" after the first delta: keep the real one
        current["id"] = delta["id"]
    if delta.get("type"):
        current["type"] = delta["type"]
    function = delta.get("function") or {}
    if function.get("name"):
        current["function"]["name"] += function["name"] if not current["function"]["name"] else ""
    if function.get("arguments"):
        current["function"]["arguments"] += function["arguments"]
    for key, value in delta.items():
        if key not in ("index", "id", "type", "function"):
            current[key] = value


# A later chunk's empty id / model / created (some upstreams send placeholders in
# annotation chunks) never overwrites a real one.


def stream_to_completion(chunks: Iterable[Union[OpenAIObject, Dict[str, Any]]]) -> Any:
    """Rebuild the full response a stream of chunks describes.

    Chat chunks give a ``ChatCompletion`` (content and reasoning joined, tool calls merged
    by index even when later deltas carry an empty id, usage from the usage chunk, extra
    fields kept); legacy completion chunks give a ``Completion``.
    """
    items = [c.to_dict() if isinstance(c, OpenAIObject) else c for c in chunks]
    if not items:
        raise ValueError("stream_to_completion needs at least one chunk")
    if any(item.get("object") == "text_completion" for item in items) or any(
        "text" in choice for item in items for choice in item.get("choices") or ()
    ):
        return _rebuild_text(items)
    return _rebuild_chat(items)


def _rebuild_chat(items: List[Dict[str, Any]]) -> ChatCompletion:
    top: Dict[str, Any] = {"object": "chat.completion"}
    choices: Dict[int, Dict[str, Any]] = {}
    for item in items:
        for key, value in item.items():
            if key == "choices":
                continue
            if key == "object":
                continue
            if key == "usage":
                if value is not None:
                    top["usage"] = value
                continue
            if key not in top or (value is not None and value != "" and value != 0):
                top[key] = value
        for position, choice in enumerate(item.get("choices") or ()):
            index = choice.get("index", position)
            acc = choices.setdefault(
                index, {"index": index, "message": {"role": "assistant"}, "finish_reason": None, "logprobs": None, "_text": {}, "_calls": {}}
            )
            delta = choice.get("delta") or {}
            message = acc["message"]
            for key, value in delta.items():
                if key == "tool_calls":
                    for pos, tool_delta in enumerate(value or ()):
                        _merge_tool_call(acc["_calls"], tool_delta, pos)
                elif key == "role":
                    if value:
                        message["role"] = value
                elif isinstance(value, str) and key in ("content", "reasoning_content", "reasoning", "refusal"):
                    acc["_text"].setdefault(key, []).append(value)
                elif value is not None or key not in message:
                    message[key] = value
            if choice.get("finish_reason") is not None:
                acc["finish_reason"] = choice["finish_reason"]
            if choice.get("logprobs") is not None:
                logprobs = acc["logprobs"] or {}
                for key, value in choice["logprobs"].items():
                    if isinstance(value, list):
                        logprobs[key] = (logprobs.get(key) or []) + value
                    else:
                        logprobs[key] = value
                acc["logprobs"] = logprobs
            for key, value in choice.items():
                if key not in ("index", "delta", "finish_reason", "logprobs"):
                    acc[key] = value
    top.setdefault("usage", None)
    built = []
    for index in sorted(choices):
        acc = choices[index]
        message = acc.pop("message")
        for key, parts in acc.pop("_text").items():
            message[key] = "".join(parts)
        message.setdefault("content", None)
        message.setdefault("refusal", None)
        calls = acc.pop("_calls")
        if calls:
            message["tool_calls"] = [calls[i] for i in sorted(calls)]
        built.append({**acc, "message": message})
    top["choices"] = built
    return ChatCompletion.from_dict(top)


def _rebuild_text(items: List[Dict[str, Any]]) -> Completion:
    top: Dict[str, Any] = {"object": "text_completion"}
    choices: Dict[int, Dict[str, Any]] = {}
    for item in items:
        for key, value in item.items():
            if key in ("choices", "object"):
                continue
            if key == "usage":
                if value is not None:
                    top["usage"] = value
                continue
            if key not in top or (value is not None and value != "" and value != 0):
                top[key] = value
        for position, choice in enumerate(item.get("choices") or ()):
            index = choice.get("index", position)
            acc = choices.setdefault(index, {"index": index, "text": "", "logprobs": None, "finish_reason": None})
            acc["text"] += choice.get("text") or ""
            for key, value in choice.items():
                if key in ("index", "text"):
                    continue
                if value is not None or key not in acc:
                    acc[key] = value
    top["choices"] = [choices[i] for i in sorted(choices)]
    return Completion.from_dict(top)

