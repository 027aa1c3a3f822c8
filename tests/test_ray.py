"""modelport.ray on a local Ray runtime (one per module) against a loopback upstream."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Iterator, List, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray  # Ray is required here: without it this file fails, it is never skipped
import ray.data

import modelport
from modelport.ray import OUTPUT_COLUMNS, ChatCompletions, Embeddings, actor_pool
from modelport.testing.upstream import FakeUpstream, RecordedRequest, Reply

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Ray Data's own settings warn about their deprecated names when it copies them.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.data.context")
KEY = "sk-test-ray"


def _last_user_text(request: RecordedRequest) -> str:
    messages = (request.json or {}).get("messages") or []
    texts = [m.get("content") for m in messages if m.get("role") == "user"]
    return str(texts[-1]) if texts else ""


def _fail_marked(request: RecordedRequest) -> Optional[Reply]:
    """Rows whose prompt contains FAIL get a 400; everything else gets the echo."""
    if "FAIL" in _last_user_text(request):
        return Reply(status=400, json={"error": {"message": "this prompt is refused", "type": "invalid_request_error"}})
    return None


@pytest.fixture(scope="module")
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream(handler=_fail_marked) as server:
        yield server


@pytest.fixture
def upstream(up: FakeUpstream) -> FakeUpstream:
    up.clear()
    return up


@pytest.fixture(scope="module")
def ray_runtime() -> Iterator[Any]:
    """One local Ray runtime for the whole file (its start-up is most of the file's time)."""
    context = ray.init(
        address="local",  # a runtime of its own, never a cluster that happens to run on this machine
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 1024 * 1024,
        logging_level="ERROR",
    )
    data_context = ray.data.DataContext.get_current()
    data_context.enable_progress_bars = False
    try:
        yield context
    finally:
        ray.shutdown()


def _map(ds: Any, udf: Any, *, actors: int = 1, batch_size: int = 4, batch_format: str = "default", **kwargs: Any) -> Any:
    return ds.map_batches(
        udf,
        fn_constructor_kwargs=kwargs,
        **actor_pool(actors),
        batch_size=batch_size,
        batch_format=batch_format,
        num_cpus=0.25,  # the actors wait on the network: two of them must not take both CPUs
    )


def _rows(ds: Any) -> List[dict]:
    return sorted(ds.take_all(), key=lambda row: row["id"])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- on Ray ---------------------------------------------------------------------------------


def test_chat_over_a_dataset_a_failed_row_and_parquet_output(
    ray_runtime: Any, upstream: FakeUpstream, tmp_path: pathlib.Path
) -> None:
    items = [{"id": i, "prompt": "please FAIL" if i == 5 else f"question {i}"} for i in range(12)]
    ds = _map(
        ray.data.from_items(items),
        ChatCompletions,
        actors=2,
        batch_size=3,  # several blocks; only one of them has an error
        model="openai/gpt-test",
        system="Answer briefly.",
        max_concurrency_per_actor=3,
        api_base=upstream.base_url,
        api_key=KEY,
        temperature=0,
    )
    ds.write_parquet(str(tmp_path / "out"))
    # The output columns are typed alike in every block, so the files read back as one table.
    table = pq.read_table(tmp_path / "out")
    assert table.schema.field("error").type == pa.string() and table.schema.field("response").type == pa.string()
    assert table.schema.field("usage_prompt_tokens").type == pa.int64() and table.schema.field("cost").type == pa.float64()
    rows = sorted(table.to_pylist(), key=lambda row: row["id"])

    failed = rows.pop(5)
    assert failed["response"] is None and failed["usage_prompt_tokens"] == 0 and failed["cost"] == 0.0
    assert failed["error"].startswith("BadRequestError (400)") and "this prompt is refused" in failed["error"]
    assert KEY not in failed["error"]
    assert [r["response"] for r in rows] == [f"You said: question {r['id']}" for r in rows]
    assert all(r["error"] is None and r["cost"] == 0.0 for r in rows)
    assert all(r["usage_prompt_tokens"] > 0 and r["usage_completion_tokens"] == 4 for r in rows)

    assert len(upstream.requests) == 12
    body = upstream.requests[0].json
    assert body["model"] == "gpt-test" and body["temperature"] == 0
    assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert {r.headers["authorization"] for r in upstream.requests} == {f"Bearer {KEY}"}


def test_embeddings(ray_runtime: Any, upstream: FakeUpstream) -> None:
    texts = ["alpha", "beta", "gamma", "delta", "epsilon"]
    with modelport.Client(api_base=upstream.base_url, api_key=KEY) as client:
        expected = [e.embedding for e in client.embedding("openai/embed-test", texts, dimensions=6).data]
    upstream.clear()
    ds = _map(
        ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(texts)]),
        Embeddings,
        batch_size=5,
        batch_format="pandas",
        model="openai/embed-test",
        inputs_per_request=2,
        dimensions=6,
        api_base=upstream.base_url,
        api_key=KEY,
    )
    rows = _rows(ds)
    for row, vector in zip(rows, expected):
        assert row["error"] is None or row["error"] is pd.NA  # pandas blocks (Ray < 2.5x) keep NA
        assert list(row["response"]) == pytest.approx(vector, rel=1e-6)  # stored as float32
    # One batch of 5 rows, 2 inputs per request: 3 requests; each request's usage is on its first row.
    sizes = sorted(len(r.json["input"]) if isinstance(r.json["input"], list) else 1 for r in upstream.requests)
    assert sizes == [1, 2, 2]
    assert sum(r["usage_prompt_tokens"] for r in rows) == len(texts)
    assert all(r["usage_completion_tokens"] == 0 and r["cost"] == 0.0 for r in rows)


def test_config_alias_with_a_fallback_over_a_messages_column(ray_runtime: Any, upstream: FakeUpstream) -> None:
    """The actor's client is built from the config: the alias, its deployment and its fallback apply."""
    config = {
        "model_list": [
            {"model_name": "writer", "params": {"model": "openai/gpt-down", "api_base": f"http://127.0.0.1:{_closed_port()}/v1", "api_key": KEY}},
            {"model_name": "writer-backup", "params": {"model": "openai/gpt-backup", "api_base": upstream.base_url, "api_key": KEY}},
        ],
        "router_settings": {"num_retries": 0, "fallbacks": [{"writer": ["writer-backup"]}]},
    }
    items = [
        {"id": 0, "messages": [{"role": "user", "content": "first"}]},
        {"id": 1, "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "second", "name": "ann"}]},
        {"id": 2, "messages": [{"role": "user", "content": "third"}]},
    ]
    ds = _map(
        ray.data.from_items(items),  # an Arrow list<struct> column: numpy batches of arrays of dicts
        ChatCompletions,
        batch_size=3,
        model="writer",
        config=config,
        messages_column="messages",
    )
    rows = _rows(ds)
    assert [r["response"] for r in rows] == ["You said: first", "You said: second", "You said: third"]
    assert [r["error"] for r in rows] == [None, None, None]
    assert {r.json["model"] for r in upstream.requests} == {"gpt-backup"}
    sent = {_last_user_text(r): r.json["messages"] for r in upstream.requests}
    # Absent keys stay absent (no "name": null), present ones are sent as they are.
    assert sent["first"] == [{"role": "user", "content": "first"}]
    assert sent["second"][1] == {"role": "user", "content": "second", "name": "ann"}


def test_example_script_jsonl_to_parquet(ray_runtime: Any, upstream: FakeUpstream, tmp_path: pathlib.Path) -> None:
    source = tmp_path / "prompts.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in enumerate(["hi", "FAIL now", "bye"])))
    config = tmp_path / "config.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: my-model\n"
        f"    params: {{model: openai/gpt-example, api_base: '{upstream.base_url}', api_key: os.environ/EXAMPLE_KEY}}\n"
    )
    out = tmp_path / "out"
    env = {
        **os.environ,
        "EXAMPLE_KEY": KEY,
        # Join this module's runtime instead of starting a second one.
        "RAY_ADDRESS": ray_runtime.address_info["address"],
    }
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "ray_batch.py"), str(source), str(out),
         "--model", "my-model", "--config", str(config), "--concurrency", "1", "-o", "max_tokens=16", "--env", "EXAMPLE_KEY"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["rows"] == 3 and summary["errors"] == 1 and summary["prompt_tokens"] > 0, summary
    assert summary["first_error"].startswith("BadRequestError (400)")
    table = pq.read_table(out)
    assert set(OUTPUT_COLUMNS) <= set(table.column_names)
    rows = sorted(table.to_pylist(), key=lambda row: row["id"])
    assert [r["response"] for r in rows] == ["You said: hi", None, "You said: bye"]
    assert rows[1]["error"].startswith("BadRequestError (400)")
    assert {r.json["max_tokens"] for r in upstream.requests} == {16}
    assert time.monotonic() - started < 120


# --- the callable classes on their own (no Ray) ------------------------------------------------


def test_in_flight_requests_are_bounded_per_actor() -> None:
    """Two batches sent at once from two threads (Ray's max_concurrent_calls_per_actor)
    share the actor's one bound of 3 requests in flight."""
    arrivals: List[float] = []

    def slow(request: RecordedRequest) -> Reply:
        arrivals.append(time.monotonic())
        return _delayed_echo(request)

    results: dict = {}
    with FakeUpstream(handler=slow) as server:
        udf = ChatCompletions(model="openai/gpt-test", max_concurrency_per_actor=3, api_base=server.base_url, api_key=KEY)

        def run(name: str) -> None:
            results[name] = udf({"prompt": np.array([f"{name}{i}" for i in range(6)], dtype=object)})

        try:
            threads = [threading.Thread(target=run, args=(name,)) for name in "ab"]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(10)
        finally:
            udf.close()
    for name in "ab":
        assert results[name].column("response").to_pylist() == [f"You said: {name}{i}" for i in range(6)]
    # A request goes out only when another has come back, 0.2 s after it arrived: no window
    # shorter than that holds more than three arrivals, and with twelve rows one holds three.
    busiest = max(sum(1 for u in arrivals if t - 0.19 < u <= t) for t in arrivals)
    assert len(arrivals) == 12 and busiest == 3


def _delayed_echo(request: RecordedRequest) -> Reply:
    text = f"You said: {_last_user_text(request)}"
    return Reply(
        delay=0.2,
        json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "gpt-test",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 3, "total_tokens": 4},
        },
    )  # fmt: skip


def test_output_types_for_each_batch_format(upstream: FakeUpstream) -> None:
    udf = ChatCompletions(model="openai/gpt-test", api_base=upstream.base_url, api_key=KEY)
    try:
        from_dict = udf({"prompt": np.array(["a", None], dtype=object), "n": np.array([1, 2])})
        from_pandas = udf(pd.DataFrame({"prompt": ["a", "b"]}))
        from_arrow = udf(pa.table({"prompt": ["a"], "response": ["old"]}))
    finally:
        udf.close()
    assert isinstance(from_dict, pa.Table) and from_dict.column("n").to_pylist() == [1, 2]
    assert from_dict.column("error").to_pylist() == [None, "the 'prompt' column is empty in this row"]
    assert isinstance(from_pandas, pd.DataFrame) and list(from_pandas["response"]) == ["You said: a", "You said: b"]
    assert str(from_pandas["error"].dtype) == "string[pyarrow]" and from_pandas["error"].isna().all()
    assert from_arrow.column_names == ["prompt", "response", *OUTPUT_COLUMNS[1:]]  # an existing column is replaced
    assert from_arrow.column("response").to_pylist() == ["You said: a"]
    with pytest.raises(KeyError, match="no column 'prompt'; its columns are: text"):
        ChatCompletions(model="openai/x")({"text": np.array(["a"])})


def test_messages_cells(upstream: FakeUpstream) -> None:
    """A conversation cell may be a list of messages, numpy arrays of dicts (Ray's numpy
    batches), or JSON text; null keys are dropped and ``system`` goes first."""
    as_arrays = np.array([{"role": "user", "content": "arrays", "name": None}], dtype=object)
    cells = np.empty(5, dtype=object)
    cells[:] = [as_arrays, json.dumps([{"role": "user", "content": "json"}]), "not json", None, [{"role": "system", "content": "own"}, {"role": "user", "content": "kept"}]]
    udf = ChatCompletions(model="openai/gpt-test", messages_column="messages", system="Be kind.", api_base=upstream.base_url, api_key=KEY)
    try:
        table = udf({"messages": cells})
    finally:
        udf.close()
    assert table.column("response").to_pylist() == ["You said: arrays", "You said: json", None, None, "You said: kept"]
    errors = table.column("error").to_pylist()
    assert errors[0] is None and "not JSON" in errors[2] and "empty" in errors[3]
    sent = {_last_user_text(r): r.json["messages"] for r in upstream.requests}
    assert sent["arrays"] == [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "arrays"}]
    assert sent["kept"][0] == {"role": "system", "content": "own"}  # the row's own system message stays alone


def test_cost_is_read_from_the_result(upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> None:
    """``cost`` is 0.0 unless the result carries one (pricing sets ``result.cost``)."""
    from modelport.ray import _accounting

    result = modelport.ChatCompletion.from_dict({"usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    assert _accounting(result) == (3, 2, 0.0)

    class Priced:
        cost = 0.25

        def get(self, key: str, default: Any = None) -> Any:
            return {"usage": None}.get(key, default)

    assert _accounting(Priced()) == (0, 0, 0.25)
    udf = Embeddings(model="openai/embed-test", api_base=upstream.base_url, api_key=KEY, encoding_format="base64", dimensions=3)
    try:
        table = udf({"text": np.array(["a"], dtype=object)})
    finally:
        udf.close()
    assert table.schema.field("response").type == pa.list_(pa.float32())
    assert len(table.column("response")[0]) == 3 and table.column("cost").to_pylist() == [0.0]


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="max_concurrency_per_actor"):
        ChatCompletions(model="openai/x", max_concurrency_per_actor=0)
    with pytest.raises(ValueError, match="stream=True"):
        ChatCompletions(model="openai/x", stream=True)
    with pytest.raises(ValueError, match="prompt_column"):
        ChatCompletions(model="openai/x", prompt_column=None)
    with pytest.raises(modelport.ConfigError):
        ChatCompletions(model="writer", config="/nonexistent/config.yaml")
    assert "sk-" not in repr(ChatCompletions(model="openai/x", api_key="sk-secret"))


def test_import_modelport_ray_imports_neither_ray_nor_pyarrow() -> None:
    code = "import sys, modelport, modelport.ray; print(sorted(m for m in ('ray', 'pyarrow', 'pandas', 'numpy') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "[]", result.stderr
