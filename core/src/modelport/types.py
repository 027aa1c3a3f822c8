"""OpenAI-shaped attrs types with a lossless JSON codec.

Every public type has ``from_dict`` / ``to_dict`` such that ``T.from_dict(d).to_dict() == d``
for any OpenAI-shaped ``d``: keys the type does not know (provider extras such as
``reasoning`` or ``stop_reason``) are kept in ``extra`` and written back, and a key that
was absent stays absent (``NOTSET``) while an explicit ``null`` stays ``None``.

The codec is generated once per class (a small table of per-field loaders and dumpers)
instead of going through a general converter, because chunk parsing is the hot path.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple, Type, TypeVar, Union

import attrs

__all__ = [
    "NOTSET",
    "NotSet",
    "OpenAIObject",
    "ContentPart",
    "TextPart",
    "ImageURL",
    "ImageURLPart",
    "InputAudio",
    "InputAudioPart",
    "VideoURL",
    "VideoURLPart",
    "FileRef",
    "FilePart",
    "FunctionCall",
    "ToolCall",
    "Message",
    "FunctionDefinition",
    "Tool",
    "ChatCompletionRequest",
    "PromptTokensDetails",
    "CompletionTokensDetails",
    "Usage",
    "Choice",
    "ChatCompletion",
    "ChunkChoice",
    "ChatCompletionChunk",
    "CompletionChoice",
    "Completion",
    "Embedding",
    "EmbeddingResponse",
    "RerankDocument",
    "RerankResult",
    "RerankResponse",
    "Transcription",
    "Image",
    "ImageResponse",
]


class NotSet:
    """Marks a field whose key was absent, as distinct from an explicit JSON ``null``."""

    _instance: ClassVar[Optional["NotSet"]] = None

    def __new__(cls) -> "NotSet":
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NOTSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NOTSET"


NOTSET = NotSet()

T = TypeVar("T", bound="OpenAIObject")
Loader = Optional[Callable[[Any], Any]]


def field(
    *, load: Loader = None, dump: Optional[Callable[[Any], Any]] = None, default: Any = NOTSET
) -> Any:
    """An optional OpenAI field; ``load``/``dump`` convert nested JSON to types and back."""
    return attrs.field(default=default, metadata={"load": load, "dump": dump})


def nested(cls: Any, *, many: bool = False) -> Any:
    """A field holding one (or a list of) OpenAI objects of type ``cls``."""
    if many:

        def load_many(value: Any) -> Any:
            if isinstance(value, list):
                return [cls.from_dict(v) if isinstance(v, dict) else v for v in value]
            return value

        return attrs.field(default=NOTSET, metadata={"load": load_many, "dump": _dump_list, "nested": cls, "many": True})
    return attrs.field(
        default=NOTSET,
        metadata={"load": lambda v: cls.from_dict(v) if isinstance(v, dict) else v, "dump": _dump_one, "nested": cls},
    )


def _dump_one(value: Any) -> Any:
    return value.to_dict() if isinstance(value, OpenAIObject) else value


def _dump_list(value: Any) -> Any:
    if isinstance(value, list):
        return [v.to_dict() if isinstance(v, OpenAIObject) else v for v in value]
    return value


class OpenAIObject:
    """Base of every public type: lossless ``from_dict`` / ``to_dict`` and a quiet repr."""

    __slots__ = ()
    _loaders: ClassVar[Dict[str, Loader]]
    _dumpers: ClassVar[Tuple[Any, ...]]
    extra: Dict[str, Any]

    @classmethod
    def from_dict(cls: Type[T], data: Dict[str, Any]) -> T:
        """Build from OpenAI JSON; unknown keys go to ``extra``. Each class gets a compiled twin."""
        if not isinstance(data, dict):
            raise _not_an_object(cls, data)
        loaders = cls._loaders
        kwargs: Dict[str, Any] = {}
        extra: Dict[str, Any] = {}
        for key, value in data.items():
            if key in loaders:
                load = loaders[key]
                kwargs[key] = value if load is None or value is None else load(value)
            else:
                extra[key] = value
        obj = cls(**kwargs)
        if extra:
            obj.extra = extra
        return obj

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {}
        for name, dump in self._dumpers:
            value = getattr(self, name)
            if value is NOTSET:
                continue
            out[name] = value if dump is None or value is None else dump(value)
        if self.extra:
            out.update(self.extra)
        return out

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name, _ in self._dumpers) and self.extra == other.extra

    __hash__ = None  # type: ignore[assignment]  # mutable, as attrs' eq=True classes are

    def get(self, key: str, default: Any = None) -> Any:
        """Read a known field or a provider extra by its JSON name."""
        if key in self._loaders:
            value = getattr(self, key)
            return default if value is NOTSET else value
        return self.extra.get(key, default)

    # LiteLLM's response objects are pydantic models that also read like dicts; code
    # written against them (``resp["choices"][0]["message"]["content"]``,
    # ``resp.model_dump()``) works unchanged on these.

    def __getitem__(self, key: str) -> Any:
        value = self.get(key, NOTSET)
        if value is NOTSET:
            raise KeyError(key)
        return value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key, NOTSET) is not NOTSET

    def model_dump(self, **_: Any) -> Dict[str, Any]:
        """``to_dict()`` under pydantic's name."""
        return self.to_dict()

    def model_dump_json(self, *, indent: Optional[int] = None, **_: Any) -> str:
        """The OpenAI JSON text (pydantic's name)."""
        import json

        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def json(self, **kwargs: Any) -> str:
        """``model_dump_json()`` under pydantic v1's name."""
        return self.model_dump_json(**kwargs)

    def __repr__(self) -> str:
        parts = [
            f"{name}={getattr(self, name)!r}"
            for name, _ in self._dumpers
            if getattr(self, name) is not NOTSET
        ]
        parts.extend(f"{k}={v!r}" for k, v in self.extra.items())
        return f"{type(self).__name__}({', '.join(parts)})"


def _not_an_object(cls: type, data: Any) -> TypeError:
    return TypeError(f"{cls.__name__}.from_dict expects a JSON object, got {type(data).__name__}")


def _compile_from_dict(cls: type, fields: List[Any]) -> Any:
    """A ``from_dict`` specialised to ``cls``'s fields.

    Chunk parsing runs this for every chunk of every stream, so, like attrs' own
    ``__init__``, it is generated once per class: one ``dict.get`` and one slot store per
    field (no ``__init__`` call), and the unknown-key scan only when the keys are not a
    subset of the fields (a C-level check).
    The generic loop in ``OpenAIObject.from_dict`` is the reference it must match.
    """
    names = frozenset(f.name for f in fields)
    namespace: Dict[str, Any] = {"NOTSET": NOTSET, "_names": names, "_not_an_object": _not_an_object, "dict": dict, "list": list}
    assignments = []
    for f in fields:
        name, meta = f.name, f.metadata
        if meta.get("nested") is not None:
            # Nested types are looked up when first parsing, as they may be defined later.
            namespace[f"_type_{name}"] = meta["nested"]
            one = f"_type_{name}.from_dict"
            if meta.get("many"):
                value = f"[{one}(x) if type(x) is dict else x for x in v] if type(v) is list else v"
            else:
                value = f"{one}(v) if type(v) is dict else v"
            assignments.append(f"    v = get({name!r}, NOTSET)")
            assignments.append(f"    obj.{name} = {value}")
        elif meta.get("load") is not None:
            namespace[f"_load_{name}"] = meta["load"]
            assignments.append(
                f"    obj.{name} = _load_{name}(v) if (v := get({name!r}, NOTSET)) is not NOTSET and v is not None else v"
            )
        else:
            assignments.append(f"    obj.{name} = get({name!r}, NOTSET)")
    source = "\n".join(
        [
            "def from_dict(cls, data):",
            "    if type(data) is not dict and not isinstance(data, dict):",
            "        raise _not_an_object(cls, data)",
            "    get = data.get",
            "    obj = _new(cls)",
            *assignments,
            "    if data.keys() <= _names:",
            "        obj.extra = {}",
            "    else:",
            "        obj.extra = {k: v for k, v in data.items() if k not in _names}",
            "    return obj",
        ]
    )
    namespace["_new"] = object.__new__
    exec(compile(source, f"<modelport from_dict {cls.__name__}>", "exec"), namespace)
    return classmethod(namespace["from_dict"])


def openai_type(cls: type) -> Any:
    """Make ``cls`` an attrs class with its codec; fields are keyword-only."""
    annotations = cls.__dict__.get("__annotations__", {})
    if "extra" not in annotations:
        cls.__annotations__ = {**annotations, "extra": "Dict[str, Any]"}
        cls.extra = attrs.field(factory=dict, repr=False)  # type: ignore[attr-defined]
    # eq=False: equality is OpenAIObject's (one method for every type), so attrs compiles
    # one method per class (``__init__``) instead of two; a cold start pays for each.
    new: Any = attrs.define(cls, slots=True, kw_only=True, repr=False, eq=False)
    fields = [f for f in attrs.fields(new) if f.name != "extra"]
    new._loaders = {f.name: f.metadata.get("load") for f in fields}
    new._dumpers = tuple((f.name, f.metadata.get("dump")) for f in fields)
    new.from_dict = _compile_on_first_use(new)
    return new


def _compile_on_first_use(cls: type) -> Any:
    """``from_dict`` that compiles the specialised one when first called and hands over to it:
    ``import modelport`` does not pay for compiling codecs of types a program never parses."""

    def from_dict(klass: Any, data: Any) -> Any:
        return loader(cls)(data)

    from_dict.__doc__ = OpenAIObject.from_dict.__doc__
    return classmethod(from_dict)


def loader(cls: Any) -> Callable[[Any], Any]:
    """``cls.from_dict``, compiled (the hot paths hold on to this one)."""
    compiled = cls.__dict__.get("_compiled_from_dict")
    if compiled is None:
        fields = [f for f in attrs.fields(cls) if f.name != "extra"]
        compiled = _compile_from_dict(cls, fields)
        cls._compiled_from_dict = compiled
        cls.from_dict = compiled
    return compiled.__get__(None, cls)  # type: ignore[no-any-return]


class PricedResult(OpenAIObject):
    """A complete result of a call: it knows what the call cost.

    ``cost`` (USD, or the catalog's currency for the region) is computed on first read
    from the catalog and the deployment's prices, so a caller who never asks pays
    nothing; ``None`` when the model or its prices are unknown. ``_hidden_params``
    gives it under LiteLLM's name (``["response_cost"]``). Neither is part of
    ``to_dict()``: the OpenAI JSON stays exactly the upstream's.
    """

    __slots__ = ("_pricing", "_cost")

    @property
    def cost(self) -> Optional[float]:
        cost: Any = getattr(self, "_cost", NOTSET)
        if cost is NOTSET:
            cost = None
            pricing = getattr(self, "_pricing", None)
            if pricing is not None:
                from .catalog import completion_cost
                from .errors import ModelportError

                model, deployment, options = pricing
                try:
                    cost = completion_cost(self, model, config_deployment=deployment, call_options=options)
                except (ModelportError, ValueError, TypeError):
                    cost = None
            self._cost = cost
        return None if cost is None else float(cost)

    @property
    def _hidden_params(self) -> Dict[str, Any]:
        return {"response_cost": self.cost}


# --- content parts -------------------------------------------------------------------


@openai_type
class ContentPart(OpenAIObject):
    """A content part of a type this library has no class for; kept as it came."""

    type: str = field()


@openai_type
class TextPart(OpenAIObject):
    type: str = field(default="text")
    text: str = field()


@openai_type
class ImageURL(OpenAIObject):
    url: str = field()
    detail: Optional[str] = field()


@openai_type
class ImageURLPart(OpenAIObject):
    type: str = field(default="image_url")
    image_url: ImageURL = nested(ImageURL)


@openai_type
class InputAudio(OpenAIObject):
    data: str = field()
    format: str = field()


@openai_type
class InputAudioPart(OpenAIObject):
    type: str = field(default="input_audio")
    input_audio: InputAudio = nested(InputAudio)


@openai_type
class VideoURL(OpenAIObject):
    url: str = field()


@openai_type
class VideoURLPart(OpenAIObject):
    type: str = field(default="video_url")
    video_url: VideoURL = nested(VideoURL)


@openai_type
class FileRef(OpenAIObject):
    file_id: Optional[str] = field()
    file_data: Optional[str] = field()
    filename: Optional[str] = field()


@openai_type
class FilePart(OpenAIObject):
    type: str = field(default="file")
    file: FileRef = nested(FileRef)


_PART_TYPES: Dict[Any, Any] = {
    "text": TextPart,
    "image_url": ImageURLPart,
    "input_audio": InputAudioPart,
    "video_url": VideoURLPart,
    "file": FilePart,
}


def _load_content(value: Any) -> Any:
    if isinstance(value, list):
        return [
            _PART_TYPES.get(part.get("type"), ContentPart).from_dict(part)
            if isinstance(part, dict)
            else part
            for part in value
        ]
    return value


# --- messages and tools --------------------------------------------------------------


@openai_type
class FunctionCall(OpenAIObject):
    name: str = field()
    arguments: str = field()


@openai_type
class ToolCall(OpenAIObject):
    """A tool call; in stream deltas it also carries ``index``."""

    index: int = field()
    id: str = field()
    type: str = field()
    function: FunctionCall = nested(FunctionCall)


@openai_type
class Message(OpenAIObject):
    """A chat message: request messages, response messages and stream deltas alike."""

    role: str = field()
    content: Union[str, List[Any], None] = field(load=_load_content, dump=_dump_list)
    name: str = field()
    tool_calls: Optional[List[ToolCall]] = nested(ToolCall, many=True)
    tool_call_id: str = field()
    refusal: Optional[str] = field()
    reasoning_content: Optional[str] = field()

    @property
    def reasoning(self) -> Optional[str]:
        """The model's reasoning text, whichever field the upstream used for it."""
        if self.reasoning_content:
            return self.reasoning_content
        return self.extra.get("reasoning") or None

    @property
    def text(self) -> str:
        """The text of ``content``: the string itself or its text parts joined."""
        content = self.content
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(p.text for p in content if isinstance(p, TextPart))
        return ""


@openai_type
class FunctionDefinition(OpenAIObject):
    name: str = field()
    description: str = field()
    parameters: Dict[str, Any] = field()
    strict: Optional[bool] = field()


@openai_type
class Tool(OpenAIObject):
    type: str = field(default="function")
    function: FunctionDefinition = nested(FunctionDefinition)


@openai_type
class ChatCompletionRequest(OpenAIObject):
    """The request body of ``POST /chat/completions``; every other parameter stays in ``extra``."""

    model: str = field()
    messages: List[Message] = nested(Message, many=True)
    tools: List[Tool] = nested(Tool, many=True)
    tool_choice: Any = field()
    response_format: Dict[str, Any] = field()
    stream: bool = field()
    stream_options: Optional[Dict[str, Any]] = field()
    temperature: Optional[float] = field()
    top_p: Optional[float] = field()
    n: Optional[int] = field()
    stop: Any = field()
    max_tokens: Optional[int] = field()
    max_completion_tokens: Optional[int] = field()
    presence_penalty: Optional[float] = field()
    frequency_penalty: Optional[float] = field()
    seed: Optional[int] = field()
    user: str = field()


# --- responses -----------------------------------------------------------------------


@openai_type
class PromptTokensDetails(OpenAIObject):
    cached_tokens: int = field()
    audio_tokens: int = field()


@openai_type
class CompletionTokensDetails(OpenAIObject):
    reasoning_tokens: int = field()
    audio_tokens: int = field()
    accepted_prediction_tokens: int = field()
    rejected_prediction_tokens: int = field()


@openai_type
class Usage(OpenAIObject):
    prompt_tokens: int = field()
    completion_tokens: int = field()
    total_tokens: int = field()
    prompt_tokens_details: Optional[PromptTokensDetails] = nested(PromptTokensDetails)
    completion_tokens_details: Optional[CompletionTokensDetails] = nested(CompletionTokensDetails)


@openai_type
class Choice(OpenAIObject):
    index: int = field()
    message: Message = nested(Message)
    finish_reason: Optional[str] = field()
    logprobs: Optional[Dict[str, Any]] = field()


@openai_type
class ChatCompletion(PricedResult):
    id: str = field()
    object: str = field()
    created: int = field()
    model: str = field()
    choices: List[Choice] = nested(Choice, many=True)
    usage: Optional[Usage] = nested(Usage)
    system_fingerprint: Optional[str] = field()
    service_tier: Optional[str] = field()


@openai_type
class ChunkChoice(OpenAIObject):
    index: int = field()
    delta: Message = nested(Message)
    finish_reason: Optional[str] = field()
    logprobs: Optional[Dict[str, Any]] = field()


@openai_type
class ChatCompletionChunk(OpenAIObject):
    id: str = field()
    object: str = field()
    created: int = field()
    model: str = field()
    choices: List[ChunkChoice] = nested(ChunkChoice, many=True)
    usage: Optional[Usage] = nested(Usage)
    system_fingerprint: Optional[str] = field()
    service_tier: Optional[str] = field()


@openai_type
class CompletionChoice(OpenAIObject):
    index: int = field()
    text: str = field()
    logprobs: Optional[Dict[str, Any]] = field()
    finish_reason: Optional[str] = field()


@openai_type
class Completion(PricedResult):
    """A legacy ``/completions`` response or stream chunk."""

    id: str = field()
    object: str = field()
    created: int = field()
    model: str = field()
    choices: List[CompletionChoice] = nested(CompletionChoice, many=True)
    usage: Optional[Usage] = nested(Usage)
    system_fingerprint: Optional[str] = field()


@openai_type
class Embedding(OpenAIObject):
    """One embedding: a list of floats, or a base64 string with ``encoding_format="base64"``."""

    object: str = field()
    index: int = field()
    embedding: Union[List[float], str] = field()


@openai_type
class EmbeddingResponse(PricedResult):
    object: str = field()
    data: List[Embedding] = nested(Embedding, many=True)
    model: str = field()
    usage: Optional[Usage] = nested(Usage)


@openai_type
class RerankDocument(OpenAIObject):
    text: str = field()


@openai_type
class RerankResult(OpenAIObject):
    index: int = field()
    relevance_score: float = field()
    document: Optional[RerankDocument] = nested(RerankDocument)


@openai_type
class RerankResponse(PricedResult):
    id: str = field()
    object: str = field()
    model: str = field()
    results: List[RerankResult] = nested(RerankResult, many=True)
    usage: Optional[Usage] = nested(Usage)


@openai_type
class Transcription(PricedResult):
    """An audio transcription; plain-text formats (text, srt, vtt) arrive as ``text`` alone."""

    text: str = field()
    language: str = field()
    duration: float = field()
    segments: List[Dict[str, Any]] = field()
    words: List[Dict[str, Any]] = field()
    usage: Dict[str, Any] = field()


@openai_type
class Image(OpenAIObject):
    url: str = field()
    b64_json: str = field()
    revised_prompt: str = field()


@openai_type
class ImageResponse(PricedResult):
    created: int = field()
    data: List[Image] = nested(Image, many=True)
    usage: Dict[str, Any] = field()
