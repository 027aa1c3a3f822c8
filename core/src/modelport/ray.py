"""Ray Data integration (extra ``modelport[ray]``): model calls over a dataset's rows.

    import ray, ray.data
    from modelport.ray import ChatCompletions, actor_pool

    ds = ray.data.read_json("prompts.jsonl")
    ds = ds.map_batches(
        ChatCompletions,
        fn_constructor_kwargs={"model": "my-model", "config": "config.yaml", "temperature": 0},
        batch_size=64,
        **actor_pool(4),            # compute=ActorPoolStrategy(size=4), or concurrency=4 on Ray < 2.51
    )
    ds.write_parquet("out/")

Each actor of the pool builds one ``modelport.AsyncClient`` (from the config when one
is given, so aliases, deployments and fallbacks apply) and one event loop on a thread of
its own; a batch's requests run on that loop with at most ``max_concurrency_per_actor``
in flight. The dataset's total in-flight requests are therefore actors x
``max_concurrency_per_actor``.

A batch comes back with its own columns plus ``response`` (the text for chat, the vector
for embeddings), ``usage_prompt_tokens``, ``usage_completion_tokens``, ``cost`` and
``error``. A row whose call fails gets its error message in ``error`` (``None``
otherwise), a null ``response`` and zero usage and cost; it never fails the batch.
The added columns have fixed Arrow types (string, int64, float64, list<float32>), so
blocks without any error still agree with blocks that have some and a Parquet dataset
written from them reads back as one table. Dict (numpy) and Arrow batches come back as a
``pyarrow.Table``, pandas batches as a ``DataFrame``.

Neither Ray nor pyarrow is imported by ``import modelport``, nor by importing this module.
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import json
import math
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

if TYPE_CHECKING:
    import os

    from .client import AsyncClient

__all__ = ["ChatCompletions", "Embeddings", "OUTPUT_COLUMNS", "actor_pool"]

#: The columns every batch comes back with, besides its own.
OUTPUT_COLUMNS = ("response", "usage_prompt_tokens", "usage_completion_tokens", "cost", "error")

ConfigSource = Union[str, "os.PathLike[str]", Mapping[str, Any], None]


class _Outcome:
    """What one row gets: the response and its accounting, or the error."""

    __slots__ = ("response", "prompt_tokens", "completion_tokens", "cost", "error")

    def __init__(
        self,
        response: Any = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        error: Optional[str] = None,
    ) -> None:
        self.response = response
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.cost = cost
        self.error = error


def _failure(error: Union[BaseException, str]) -> _Outcome:
    if isinstance(error, BaseException):
        name, message = type(error).__name__, str(error)
        # modelport's provider errors already start with their class name ("RateLimitError (429) from ...")
        error = message if message.startswith(name) else f"{name}: {message or '(no message)'}"
    return _Outcome(error=error)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _accounting(result: Any) -> Tuple[int, int, float]:
    """Prompt and completion tokens and the cost of a result (zeros where it carries none)."""
    usage = result.get("usage") if hasattr(result, "get") else None
    prompt = completion = 0
    if usage is not None and hasattr(usage, "get"):
        prompt = _count(usage.get("prompt_tokens", 0))
        completion = _count(usage.get("completion_tokens", 0))
    cost = getattr(result, "cost", None)
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or math.isnan(cost):
        cost = 0.0
    return prompt, completion, float(cost)


def _plain(value: Any) -> Any:
    """A cell as plain Python: numpy arrays and scalars unwrapped, ``None`` entries of dicts
    dropped (an Arrow struct column gives every row every key, absent ones as null)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    tolist = getattr(value, "tolist", None)
    if tolist is not None and type(value).__module__ == "numpy":
        return _plain(tolist())
    return value


def _missing(value: Any) -> bool:
    """None, NaN or pandas' NA: a cell without a value."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or type(value).__name__ == "NAType"


def actor_pool(size: int) -> Dict[str, Any]:
    """The ``map_batches`` keyword for a fixed pool of ``size`` actors, spelled for the
    installed Ray: ``compute=ActorPoolStrategy(size=...)`` from Ray 2.51 on, where
    ``concurrency=`` is deprecated, and ``concurrency=`` before it, where ``compute=`` was.

        ds.map_batches(ChatCompletions, fn_constructor_kwargs={...}, **actor_pool(4))
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"an actor pool needs a whole number of actors >= 1, got {size!r}")
    import ray
    import ray.data

    try:
        version = tuple(int(part) for part in ray.__version__.split(".")[:2])
    except ValueError:  # a development build: the current spelling
        version = (2, 51)
    if version >= (2, 51):
        return {"compute": ray.data.ActorPoolStrategy(size=size)}
    return {"concurrency": size}


# --- batches in and out ------------------------------------------------------------------


def _is_pandas(batch: Any) -> bool:
    return type(batch).__name__ == "DataFrame" and type(batch).__module__.startswith("pandas")


def _is_arrow(batch: Any) -> bool:
    return type(batch).__module__.startswith("pyarrow") and hasattr(batch, "column_names")


def _column(batch: Any, name: str) -> List[Any]:
    """One column of a batch as a list of plain Python values."""
    if _is_arrow(batch):
        names = list(batch.column_names)
    elif _is_pandas(batch):
        names = [str(c) for c in batch.columns]
    elif isinstance(batch, Mapping):
        names = [str(c) for c in batch]
    else:
        raise TypeError(f"a batch must be a dict of arrays, a pandas DataFrame or a pyarrow Table, not {type(batch).__name__}")
    if name not in names:
        raise KeyError(f"the batch has no column {name!r}; its columns are: {', '.join(names) or 'none'}")
    if _is_arrow(batch):
        values: List[Any] = batch.column(name).to_pylist()
        return values
    column = batch[name]
    return [_plain(v) for v in (column.tolist() if hasattr(column, "tolist") else list(column))]


def _with_outputs(batch: Any, outcomes: Sequence[_Outcome], response_type: Any) -> Any:
    """The batch plus the output columns, typed (``response_type``: the Arrow type of ``response``)."""
    import pyarrow as pa

    columns: Dict[str, Any] = {
        "response": pa.array([o.response for o in outcomes], type=response_type),
        "usage_prompt_tokens": pa.array([o.prompt_tokens for o in outcomes], type=pa.int64()),
        "usage_completion_tokens": pa.array([o.completion_tokens for o in outcomes], type=pa.int64()),
        "cost": pa.array([o.cost for o in outcomes], type=pa.float64()),
        "error": pa.array([o.error for o in outcomes], type=pa.string()),
    }
    if not _is_arrow(batch) and not _is_pandas(batch):
        batch = _dict_to_block(batch)
    if _is_pandas(batch):
        import pandas as pd

        added = {
            name: pd.Series(array, dtype=pd.ArrowDtype(array.type), index=batch.index)  # keeps nulls typed
            for name, array in columns.items()
        }
        return batch.assign(**added)
    table = batch
    for name, array in columns.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, array)
        else:
            table = table.append_column(name, array)
    return table


def _dict_to_block(batch: Mapping[str, Any]) -> Any:
    """A dict-of-arrays batch as the block Ray itself would make of it (tensor columns and all).

    Returning the dict with plain numpy columns added would let Ray infer each block's
    types on its own: a block without any error would get a ``null``-typed ``error``
    column, and the Parquet files of such a dataset would not read back as one table.
    """
    try:
        from ray.data.block import BlockAccessor
    except ImportError:  # called outside Ray
        import pyarrow as pa

        return pa.table({str(k): v if hasattr(v, "dtype") else list(v) for k, v in batch.items()})
    return BlockAccessor.batch_to_block(dict(batch))


# --- the callable classes ----------------------------------------------------------------


class _ModelportBatches:
    """The shared machinery: one client and one event loop (on its own thread) per instance."""

    def __init__(
        self,
        model: str,
        *,
        config: ConfigSource = None,
        max_concurrency_per_actor: int = 8,
        client_options: Optional[Mapping[str, Any]] = None,
        call_kwargs: Mapping[str, Any],
    ) -> None:
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a model string or a config alias, got {model!r}")
        if (
            isinstance(max_concurrency_per_actor, bool)
            or not isinstance(max_concurrency_per_actor, int)
            or max_concurrency_per_actor < 1
        ):
            raise ValueError(f"max_concurrency_per_actor must be a whole number >= 1, got {max_concurrency_per_actor!r}")
        if call_kwargs.get("stream"):
            raise ValueError("stream=True is not supported for batch inference: each row gets the whole response")
        from .client import AsyncClient

        options = dict(client_options or {})
        options.setdefault("max_connections", max(100, max_concurrency_per_actor))
        self.model = model
        self.max_concurrency_per_actor = max_concurrency_per_actor
        self.call_kwargs = dict(call_kwargs)
        self.client: "AsyncClient" = (
            AsyncClient.from_config(config, **options) if config is not None else AsyncClient(**options)
        )
        self._lock = threading.Lock()
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None
        self._slots: Optional[asyncio.Semaphore] = None

    def __repr__(self) -> str:
        # Ray shows it in logs and errors: the model, never the call arguments (they may hold keys).
        return f"{type(self).__name__}(model={self.model!r}, max_concurrency_per_actor={self.max_concurrency_per_actor})"

    # -- the event loop --------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    try:
                        loop.run_forever()
                    finally:
                        loop.run_until_complete(loop.shutdown_asyncgens())
                        loop.close()

                thread = threading.Thread(target=run, name=f"modelport-{type(self).__name__}", daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
                _close_at_exit(self)
            return self._loop

    def _run(self, coroutine: Awaitable[Any]) -> Any:
        """Run ``coroutine`` on this instance's loop and wait for it (from any thread, even
        one that runs a loop of its own, as a notebook's does)."""
        future = asyncio.run_coroutine_threadsafe(_awaited(coroutine), self._running_loop())
        return future.result()

    def close(self) -> None:
        """Close the client's connections and stop the loop (Ray calls ``__del__`` when an actor exits)."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or loop.is_closed():
            return
        try:
            asyncio.run_coroutine_threadsafe(self.client.aclose(), loop).result(timeout=10)
        except Exception:  # closing must not raise: the connections close with the loop anyway
            pass
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)

    def __del__(self) -> None:
        # At interpreter exit the loop's (daemon) thread no longer runs: waiting for it
        # would only hang the exit, and the process's end closes the connections anyway.
        if sys.is_finalizing():
            return
        try:
            self.close()
        except Exception:
            pass

    # -- a batch ---------------------------------------------------------------------------

    def __call__(self, batch: Any) -> Any:
        """The batch plus ``response``, ``usage_prompt_tokens``, ``usage_completion_tokens``,
        ``cost`` and ``error`` (a ``pyarrow.Table``, or a ``DataFrame`` for a pandas batch)."""
        inputs = self._inputs(batch)
        outcomes: List[_Outcome] = self._run(self._outcomes(inputs)) if inputs else []
        return _with_outputs(batch, outcomes, self._response_type())

    def _inputs(self, batch: Any) -> List[Any]:
        """One request input (or an error message string wrapped in ``_Outcome``) per row."""
        raise NotImplementedError

    def _response_type(self) -> Any:
        raise NotImplementedError

    async def _outcomes(self, inputs: List[Any]) -> List[_Outcome]:
        raise NotImplementedError

    async def _limited(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """``call()`` while holding one of this actor's in-flight slots."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_concurrency_per_actor)
        async with self._slots:
            return await call()


#: Instances with a running loop: closed at interpreter exit if nobody has closed them,
#: while their loops' threads still run, so their connections close cleanly.
_OPEN: "weakref.WeakSet[_ModelportBatches]" = weakref.WeakSet()


def _close_at_exit(instance: _ModelportBatches) -> None:
    _OPEN.add(instance)


@atexit.register
def _close_all() -> None:
    for instance in list(_OPEN):
        instance.close()


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


class ChatCompletions(_ModelportBatches):
    """A Ray Data callable class: one chat completion per row.

    Each row gives either a prompt (``prompt_column``, a string; ``system`` becomes the
    system message) or a whole conversation (``messages_column``: a list of OpenAI
    messages, or its JSON text; ``system`` is put first when the conversation has no
    system message). ``config`` is a config file path or mapping (aliases, deployments and
    fallbacks apply to ``model``); ``client_options`` go to ``AsyncClient`` (``timeout``,
    ``num_retries``, ``api_base``, ...); every other keyword is a call argument
    (``temperature``, ``max_tokens``, ``api_base``, ``extra_body``, ...).
    ``response`` is the text of the first choice.
    """

    def __init__(
        self,
        model: str,
        config: ConfigSource = None,
        prompt_column: Optional[str] = "prompt",
        messages_column: Optional[str] = None,
        system: Optional[str] = None,
        max_concurrency_per_actor: int = 8,
        client_options: Optional[Mapping[str, Any]] = None,
        **call_kwargs: Any,
    ) -> None:
        if not messages_column and not prompt_column:
            raise ValueError("give prompt_column (a string per row) or messages_column (a conversation per row)")
        super().__init__(
            model,
            config=config,
            max_concurrency_per_actor=max_concurrency_per_actor,
            client_options=client_options,
            call_kwargs=call_kwargs,
        )
        self.prompt_column = prompt_column
        self.messages_column = messages_column
        self.system = system

    def _response_type(self) -> Any:
        import pyarrow as pa

        return pa.string()

    def _inputs(self, batch: Any) -> List[Any]:
        if self.messages_column:
            return [self._conversation(value) for value in _column(batch, self.messages_column)]
        assert self.prompt_column is not None
        out: List[Any] = []
        for value in _column(batch, self.prompt_column):
            if _missing(value):
                out.append(_failure(f"the {self.prompt_column!r} column is empty in this row"))
                continue
            messages: List[Dict[str, Any]] = [{"role": "system", "content": self.system}] if self.system is not None else []
            messages.append({"role": "user", "content": value if isinstance(value, (str, list)) else str(value)})
            out.append(messages)
        return out

    def _conversation(self, value: Any) -> Any:
        column = self.messages_column
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError as exc:
                return _failure(f"the {column!r} column holds text that is not JSON: {exc}")
        if _missing(value):
            return _failure(f"the {column!r} column is empty in this row")
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value or not all(isinstance(m, dict) for m in value):
            return _failure(f"the {column!r} column must hold a list of messages, got {type(value).__name__}")
        messages = [_plain(m) for m in value]
        if self.system is not None and messages[0].get("role") != "system":
            messages.insert(0, {"role": "system", "content": self.system})
        return messages

    async def _one(self, messages: List[Dict[str, Any]]) -> _Outcome:
        try:
            result = await self._limited(lambda: self.client.completion(self.model, messages, **self.call_kwargs))
        except Exception as exc:  # a failed row never fails the batch
            return _failure(exc)
        choices = result.get("choices") or []
        if not choices:
            return _failure("the response has no choices")
        message = choices[0].get("message")
        prompt, completion, cost = _accounting(result)
        return _Outcome(message.text if message is not None else "", prompt, completion, cost)

    async def _outcomes(self, inputs: List[Any]) -> List[_Outcome]:
        async def done(outcome: _Outcome) -> _Outcome:
            return outcome

        return list(await asyncio.gather(*(done(i) if isinstance(i, _Outcome) else self._one(i) for i in inputs)))


class Embeddings(_ModelportBatches):
    """A Ray Data callable class: the embedding of each row's ``input_column``.

    ``response`` is the vector (list<float32>; ``encoding_format="base64"`` answers are
    decoded). ``inputs_per_request`` rows go in one request (default 1): with more, a
    failed request fails all its rows, and the request's usage and cost are put on its
    first row (column sums stay exact). Other keywords as for ``ChatCompletions``
    (``dimensions=256``, ...).
    """

    def __init__(
        self,
        model: str,
        config: ConfigSource = None,
        input_column: str = "text",
        inputs_per_request: int = 1,
        max_concurrency_per_actor: int = 8,
        client_options: Optional[Mapping[str, Any]] = None,
        **call_kwargs: Any,
    ) -> None:
        if isinstance(inputs_per_request, bool) or not isinstance(inputs_per_request, int) or inputs_per_request < 1:
            raise ValueError(f"inputs_per_request must be a whole number >= 1, got {inputs_per_request!r}")
        super().__init__(
            model,
            config=config,
            max_concurrency_per_actor=max_concurrency_per_actor,
            client_options=client_options,
            call_kwargs=call_kwargs,
        )
        self.input_column = input_column
        self.inputs_per_request = inputs_per_request

    def _response_type(self) -> Any:
        import pyarrow as pa

        return pa.list_(pa.float32())

    def _inputs(self, batch: Any) -> List[Any]:
        out: List[Any] = []
        for value in _column(batch, self.input_column):
            if _missing(value) or value == "":
                out.append(_failure(f"the {self.input_column!r} column is empty in this row"))
            else:
                out.append(value)
        return out

    async def _request(self, items: List[Any]) -> List[_Outcome]:
        try:
            payload: Any = items if len(items) > 1 else items[0]
            result = await self._limited(lambda: self.client.embedding(self.model, payload, **self.call_kwargs))
            data = sorted(result.data or [], key=lambda e: e.index if isinstance(e.index, int) else 0)
            if len(data) != len(items):
                raise ValueError(f"the response has {len(data)} embeddings for {len(items)} inputs")
            vectors = [_vector(e.embedding) for e in data]
        except Exception as exc:  # a failed request fails its rows, never the batch
            return [_failure(exc) for _ in items]
        prompt, completion, cost = _accounting(result)
        outcomes = [_Outcome(vector) for vector in vectors]
        first = outcomes[0]
        first.prompt_tokens, first.completion_tokens, first.cost = prompt, completion, cost
        return outcomes

    async def _outcomes(self, inputs: List[Any]) -> List[_Outcome]:
        outcomes: List[Optional[_Outcome]] = [i if isinstance(i, _Outcome) else None for i in inputs]
        pending = [position for position, outcome in enumerate(outcomes) if outcome is None]
        groups = [pending[k : k + self.inputs_per_request] for k in range(0, len(pending), self.inputs_per_request)]
        answers = await asyncio.gather(*(self._request([inputs[p] for p in group]) for group in groups))
        for group, answer in zip(groups, answers):
            for position, outcome in zip(group, answer):
                outcomes[position] = outcome
        return [o if o is not None else _failure("no result") for o in outcomes]


def _vector(embedding: Any) -> List[float]:
    if isinstance(embedding, str):  # encoding_format="base64": little-endian float32
        import numpy as np

        decoded: List[float] = np.frombuffer(base64.b64decode(embedding), dtype="<f4").tolist()
        return decoded
    if not isinstance(embedding, list):
        raise ValueError(f"an embedding must be a list of numbers, got {type(embedding).__name__}")
    return [float(x) for x in embedding]
