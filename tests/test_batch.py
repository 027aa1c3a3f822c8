"""Many calls at once: batch_completion / abatch_completion, `modelport batch` (OpenAI Batch
files: end to end, resume, a real kill, adaptive back-off, configs) and `modelport images`."""

from __future__ import annotations

import asyncio
import collections
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time

import pytest

import modelport
from modelport import errors
from modelport.batch import (
    AdaptiveLimiter,
    abatch_completion,
    batch_completion,
    check_prompts,
    read_prompts,
    recover_output,
)
from modelport.testing.upstream import FakeUpstream, Reply, echo_text

KEY = "sk-batch-secret-4242"
PNG = b"\x89PNG\r\n\x1a\n" + b"fake image "


def cli(*args, env=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "modelport", *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def chat_reply(request, delay=0.0, headers=None):
    body = request.json or {}
    text = echo_text(body)
    return Reply(
        json={
            "id": "chatcmpl-t", "object": "chat.completion", "created": 1, "model": body.get("model"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        },
        delay=delay, headers=headers or {},
    )  # fmt: skip


def chat_line(custom_id, text, model="openai/m"):
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": {"model": model, "messages": [{"role": "user", "content": text}]}}


def write_jsonl(path, items):
    with open(path, "w") as handle:
        for item in items:
            handle.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
    return path


def read_jsonl(path):
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def sent_texts(upstream):
    return [r.json["messages"][-1]["content"] for r in upstream.requests if r.path.endswith("/chat/completions")]


# --- batch_completion / abatch_completion --------------------------------------------------------------


def slow_first_handler(request):
    """Earlier conversations answer later, so completion order is the reverse of input order."""
    text = request.json["messages"][-1]["content"]
    if text == "boom":
        return Reply(status=400, json={"error": {"message": "bad conversation", "type": "invalid_request_error", "code": "bad"}})
    return chat_reply(request, delay=max(0.0, 0.3 - 0.05 * int(text.split()[-1])))


def conversations():
    msgs = [[{"role": "user", "content": f"msg {i}"}] for i in range(6)]
    msgs[2] = [{"role": "user", "content": "boom"}]
    msgs[4] = []  # rejected before sending
    return msgs


def check_results(results):
    assert len(results) == 6
    for i in (0, 1, 3, 5):
        assert isinstance(results[i], modelport.ChatCompletion)
        assert results[i].choices[0].message.content == f"You said: msg {i}"
    assert isinstance(results[2], errors.BadRequestError) and results[2].status == 400 and "bad conversation" in str(results[2])
    assert isinstance(results[4], errors.InvalidRequestError)


def test_batch_completion_keeps_order_and_per_item_exceptions():
    with FakeUpstream(handler=slow_first_handler) as up:
        with modelport.Client(api_base=up.base_url, api_key="k", num_retries=0) as client:
            check_results(batch_completion("openai/m", conversations(), max_workers=6, client=client))
        # the module-level shared client, per-call options as keywords
        check_results(batch_completion("openai/m", conversations(), api_base=up.base_url, api_key="k", num_retries=0))
        assert batch_completion("openai/m", [], api_base=up.base_url) == []
        with pytest.raises(errors.InvalidRequestError, match="abatch_completion"):
            batch_completion("openai/m", conversations(), client=modelport.AsyncClient())
        with pytest.raises(errors.InvalidRequestError, match="max_workers"):
            batch_completion("openai/m", conversations(), max_workers=0)


def test_abatch_completion_keeps_order_and_bounds_concurrency():
    with FakeUpstream(handler=slow_first_handler) as up:

        async def main():
            async with modelport.AsyncClient(api_base=up.base_url, api_key="k", num_retries=0) as client:
                check_results(await abatch_completion("openai/m", conversations(), max_workers=6, client=client))
                started = time.monotonic()
                results = await abatch_completion("openai/m", [[{"role": "user", "content": "x 5"}]] * 4, max_workers=1, client=client)
                assert time.monotonic() - started >= 4 * 0.05 * 0.9  # one at a time
                assert [r.choices[0].message.content for r in results] == ["You said: x 5"] * 4
            check_results(await abatch_completion("openai/m", conversations(), api_base=up.base_url, api_key="k", num_retries=0))

        asyncio.run(main())


# --- the adaptive limiter ------------------------------------------------------------------------------------


def test_adaptive_limiter_halves_once_per_round_pauses_and_grows_back():
    async def main():
        limiter = AdaptiveLimiter(8, default_pause=0.0)
        tickets = [await limiter.acquire() for _ in range(8)]
        assert limiter.in_flight == 8 and limiter.limit == 8
        blocked = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.01)
        assert not blocked.done()  # the window is full
        limiter.release(tickets[0], throttled=True, retry_after=0.2)
        limiter.release(tickets[1], throttled=True, retry_after=0.2)  # same round: no second cut
        assert limiter.limit == 4 and limiter.cuts == 1 and limiter.throttled == 2
        for ticket in tickets[2:]:
            limiter.release(ticket)
        started = time.monotonic()
        ticket = await blocked
        assert time.monotonic() - started >= 0.15  # held back for the retry-after
        limiter.release(ticket, throttled=True)  # a request sent after the cut: cuts again
        assert limiter.limit == 2 and limiter.cuts == 2
        for _ in range(40):
            limiter.release(await limiter.acquire())
        assert limiter.limit == 8 and limiter.lowest == 2  # additive increase, capped

    asyncio.run(main())


# --- modelport batch: end to end ------------------------------------------------------------------------------


def e2e_handler(request):
    if request.path.endswith("/chat/completions"):
        text = request.json["messages"][-1]["content"]
        if text == "make-400":
            return Reply(status=400, json={"error": {"message": "this one is bad", "type": "invalid_request_error", "param": "messages", "code": "bad_line"}}, headers={"x-request-id": "req-400"})
        return chat_reply(request, headers={"x-request-id": f"req-{text}"})
    return None  # embeddings and completions: the echo


def e2e_input(path):
    return write_jsonl(path, [
        chat_line("chat-1", "hello"),
        {"custom_id": "emb-1", "method": "POST", "url": "/v1/embeddings", "body": {"model": "openai/e", "input": ["a", "b"], "dimensions": 4}},
        {"custom_id": "cmp-1", "method": "POST", "url": "/v1/completions", "body": {"model": "text-completion-openai/t", "prompt": "say hi", "max_tokens": 5}},
        chat_line("chat-bad", "make-400"),
        '{"custom_id": "broken", "method": "POST", "url": "/v1/chat',
        "",  # blank lines are no requests
        {"custom_id": "wrong-url", "method": "POST", "url": "/v1/responses", "body": {"model": "openai/m", "input": "x"}},
        chat_line("chat-1", "again"),  # a custom_id used twice
        {"method": "POST", "url": "/v1/chat/completions", "body": {"model": "openai/m", "messages": []}},
        {**chat_line("chat-2", "world"), "body": {**chat_line("chat-2", "world")["body"], "temperature": 0.5,
                                                  "api_base": "http://127.0.0.1:9/v1", "api_key": "file-key", "extra_headers": {"x-evil": "1"}}},
    ])  # fmt: skip


def test_batch_end_to_end(tmp_path):
    source = e2e_input(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    with FakeUpstream(handler=e2e_handler) as up:
        result = cli("batch", str(source), "-o", str(out), "--api-base", up.base_url, "--api-key", KEY, "--num-retries", "0", "--json-summary")
        paths = sorted(r.path for r in up.requests)
        world = next(r for r in up.requests if r.json.get("messages", [{}])[-1].get("content") == "world")
    # the data file cannot steer credentials, endpoints or headers; request fields pass
    assert world.json["temperature"] == 0.5 and "api_base" not in world.json and "x-evil" not in world.headers
    assert world.headers["authorization"] == f"Bearer {KEY}"
    assert result.returncode == 1, result.stderr  # some lines failed
    assert paths == ["/v1/chat/completions"] * 3 + ["/v1/completions", "/v1/embeddings"]
    records = read_jsonl(out)
    assert len(records) == 9  # one per non-blank input line
    assert all(r["id"].startswith("batch_req_") and set(r) == {"id", "custom_id", "response", "error"} for r in records)
    by_id = collections.defaultdict(list)
    for record in records:
        by_id[record["custom_id"]].append(record)

    chat = by_id["chat-1"][0] if by_id["chat-1"][0]["error"] is None else by_id["chat-1"][1]
    assert chat["response"]["status_code"] == 200 and chat["response"]["request_id"] == "req-hello"
    assert chat["response"]["body"]["choices"][0]["message"]["content"] == "You said: hello"
    assert by_id["chat-2"][0]["response"]["body"]["choices"][0]["message"]["content"] == "You said: world"
    emb = by_id["emb-1"][0]
    assert emb["error"] is None and len(emb["response"]["body"]["data"]) == 2 and len(emb["response"]["body"]["data"][0]["embedding"]) == 4
    cmp_ = by_id["cmp-1"][0]
    assert cmp_["error"] is None and cmp_["response"]["body"]["choices"][0]["text"] == "You wrote: say hi"

    bad = by_id["chat-bad"][0]
    assert bad["response"]["status_code"] == 400 and bad["response"]["request_id"] == "req-400"
    assert bad["response"]["body"]["error"]["message"] == "this one is bad"
    assert bad["error"]["code"] == "bad_line" and "this one is bad" in bad["error"]["message"]

    malformed = [r for r in records if r["error"] and r["error"]["code"] == "invalid_json_line"]
    assert len(malformed) == 1 and malformed[0]["custom_id"] == "broken" and malformed[0]["response"] is None
    assert malformed[0]["error"]["message"].startswith("line 5:")
    assert by_id["wrong-url"][0]["error"]["code"] == "invalid_url" and "line 7" in by_id["wrong-url"][0]["error"]["message"]
    duplicate = [r for r in by_id["chat-1"] if r["error"]]
    assert len(duplicate) == 1 and duplicate[0]["error"]["code"] == "duplicate_custom_id" and "line 8" in duplicate[0]["error"]["message"]
    missing = [r for r in records if r["custom_id"] is None and r["error"]["code"] == "missing_required_parameter"]
    assert len(missing) == 1 and "line 9" in missing[0]["error"]["message"]

    summary = json.loads(result.stdout)
    assert summary["lines"] == 9 and summary["ok"] == 4 and summary["failed"] == 5 and summary["invalid"] == 4 and summary["skipped"] == 0
    assert summary["tokens"] > 0
    assert "9 lines: 4 ok, 5 failed" in result.stderr and "requests/s" in result.stderr
    assert KEY not in out.read_text() + result.stderr + result.stdout

    # a second run has nothing left to do, and sends nothing
    with FakeUpstream(handler=e2e_handler) as up:
        again = cli("batch", str(source), "-o", str(out), "--api-base", up.base_url, "--json-summary")
        assert up.requests == []
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 9
    assert len(read_jsonl(out)) == 9


def test_batch_unknown_model_stops_before_sending(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line("a", "x", model="gpt-4o-mini")])
    with FakeUpstream() as up:
        result = cli("batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--api-base", up.base_url)
        assert up.requests == []
    assert result.returncode == 2 and "--model-override gpt-4o-mini=" in result.stderr and "nothing was sent" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()
    with FakeUpstream() as up:  # the override maps the name
        result = cli("batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--api-base", up.base_url, "--api-key", "k",
                     "--model-override", "gpt-4o-mini=openai/mapped")  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert up.last.json["model"] == "mapped"


def test_batch_resume_after_partial_output_and_retry_failed(tmp_path):
    items = [chat_line(f"id-{i}", f"text {i}") for i in range(10)]
    items[3] = chat_line("id-3", "make-400")
    source = write_jsonl(tmp_path / "in.jsonl", items)
    out = tmp_path / "out.jsonl"
    with FakeUpstream(handler=e2e_handler) as up:
        assert cli("batch", str(source), "-o", str(out), "--api-base", up.base_url, "--num-retries", "0").returncode == 1
    full = out.read_text().splitlines()
    kept = full[:4]
    kept_ids = {json.loads(line)["custom_id"] for line in kept}
    # an earlier run that finished 4 lines and was killed while writing the 5th
    out.write_text("\n".join(kept) + "\n" + full[4][: len(full[4]) // 2])
    with FakeUpstream(handler=e2e_handler) as up:
        result = cli("batch", str(source), "-o", str(out), "--api-base", up.base_url, "--num-retries", "0", "--json-summary")
        texts = sent_texts(up)
    assert "cut-off last line" in result.stderr
    assert len(texts) == 6 and not {f"text {i}" for i in range(10) if f"id-{i}" in kept_ids} & set(texts)
    records = read_jsonl(out)
    assert sorted(r["custom_id"] for r in records) == sorted(f"id-{i}" for i in range(10))
    assert json.loads(result.stdout)["skipped"] == 4

    # --retry-failed: the 400 line is run again (the upstream has been fixed)
    with FakeUpstream() as up:
        result = cli("batch", str(source), "-o", str(out), "--api-base", up.base_url, "--retry-failed")
        assert sent_texts(up) == ["make-400"]
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert sorted(r["custom_id"] for r in records) == sorted(f"id-{i}" for i in range(10))
    assert all(r["error"] is None for r in records)


def test_a_second_run_on_the_same_output_is_refused(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(f"id-{i}", f"text {i}") for i in range(100)])
    out = tmp_path / "out.jsonl"
    with FakeUpstream(handler=lambda request: chat_reply(request, delay=0.05)) as up:
        first = subprocess.Popen([sys.executable, "-m", "modelport", "batch", str(source), "-o", str(out), "--api-base", up.base_url,
                                  "--concurrency", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while _count_lines(out) < 1:
                assert time.monotonic() < deadline and first.poll() is None
                time.sleep(0.01)
            second = cli("batch", str(source), "-o", str(out), "--api-base", up.base_url)
        finally:
            first.kill()
            first.wait()
    assert second.returncode == 2 and "another run is writing" in second.stderr


def test_recover_output_drops_only_a_cut_off_last_line(tmp_path):
    out = tmp_path / "out.jsonl"
    good = json.dumps({"id": "batch_req_1", "custom_id": "a", "response": {"status_code": 200, "request_id": None, "body": {}}, "error": None})
    bad = json.dumps({"id": "batch_req_2", "custom_id": None, "response": None, "error": {"code": "invalid_json_line", "message": "line 3: x", "line": 3}})
    out.write_text(good + "\n" + bad + "\n" + '{"id": "batch_req_3", "cust')
    found = recover_output(out)
    assert found.dropped_partial_line and found.done_ids == {"a"} and found.done_lines == {3}
    assert out.read_text() == good + "\n" + bad + "\n"
    assert recover_output(tmp_path / "missing.jsonl").done_ids == set()


def _count_lines(path):
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_batch_interrupted_then_rerun_gives_every_line_once(tmp_path, how):
    count = 300
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(f"id-{i}", f"text {i}") for i in range(count)])
    out = tmp_path / "out.jsonl"
    with FakeUpstream(handler=lambda request: chat_reply(request, delay=0.02)) as up:
        process = subprocess.Popen(
            [sys.executable, "-m", "modelport", "batch", str(source), "-o", str(out), "--api-base", up.base_url, "--concurrency", "4"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while _count_lines(out) < 20:
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(getattr(signal, how))
        code = process.wait(30)
        stderr = process.stderr.read().decode()
        first_run = len(up.requests)
    if how == "SIGKILL":
        assert code == -signal.SIGKILL
    else:
        assert code == 128 + signal.SIGTERM, stderr
        assert "interrupted (SIGTERM)" in stderr and "rerun the same command" in stderr
    survived = [json.loads(line) for line in out.read_bytes().split(b"\n") if line.strip() and line.endswith(b"}")]
    survived_ids = {r["custom_id"] for r in survived}
    assert 20 <= len(survived_ids) < count and first_run < count
    with FakeUpstream(handler=lambda request: chat_reply(request)) as up:
        result = cli("batch", str(source), "-o", str(out), "--api-base", up.base_url, "--concurrency", "8", "--json-summary")
        texts = sent_texts(up)
    assert result.returncode == 0, result.stderr
    assert not {f"text {cid.split('-')[1]}" for cid in survived_ids} & set(texts)  # finished lines are not redone
    records = read_jsonl(out)
    ids = [r["custom_id"] for r in records]
    assert len(ids) == count and set(ids) == {f"id-{i}" for i in range(count)}  # every custom_id exactly once
    assert all(r["error"] is None for r in records)
    for record in records:
        number = record["custom_id"].split("-")[1]
        assert record["response"]["body"]["choices"][0]["message"]["content"] == f"You said: text {number}"


class Throttling:
    """An upstream that serves ``capacity`` requests at once (``service`` seconds each) and
    answers 429 with Retry-After beyond that; records the requests in flight at each arrival."""

    def __init__(self, capacity, service=0.05, retry_after="0.1"):
        self.capacity = capacity
        self.service = service
        self.retry_after = retry_after
        self.ends = []
        self.seen = []
        self.lock = threading.Lock()

    def __call__(self, request):
        with self.lock:
            now = time.monotonic()
            self.ends = [end for end in self.ends if end > now]
            in_flight = len(self.ends) + 1
            self.seen.append(in_flight)
            self.ends.append(now + self.service)
        if in_flight > self.capacity:
            return Reply(status=429, json={"error": {"message": "slow down", "type": "rate_limit_error", "code": "rate_limit_exceeded"}},
                         headers={"Retry-After": self.retry_after}, delay=self.service)  # fmt: skip
        return chat_reply(request, delay=self.service)


def test_batch_adapts_concurrency_to_429s(tmp_path):
    count = 160
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(f"id-{i}", f"text {i}") for i in range(count)])
    out = tmp_path / "out.jsonl"
    throttle = Throttling(capacity=4)
    with FakeUpstream(handler=throttle) as up:
        result = cli("batch", str(source), "-o", str(out), "--api-base", up.base_url, "--concurrency", "16", "--json-summary",
                     "--progress", "plain", "--progress-interval", "0.2")  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert len(records) == count and all(r["error"] is None for r in records)
    summary = json.loads(result.stdout)
    assert summary["ok"] == count and summary["throttled"] > 0 and summary["concurrency_cuts"] >= 1
    assert summary["lowest_concurrency"] <= 8
    early, late = throttle.seen[:16], throttle.seen[len(throttle.seen) // 2 :]
    assert max(early) >= 10, early  # the run started at its full concurrency (16)
    assert max(late) <= 8, late  # and backed off near the upstream's capacity (4)
    assert "throttled" in result.stderr and "ETA" in result.stderr  # plain progress lines


def test_batch_with_config_aliases_and_fallbacks(tmp_path):
    with FakeUpstream(handler=e2e_handler) as up:
        config = tmp_path / "config.yaml"
        config.write_text(
            "model_list:\n"
            "  - model_name: fast\n"
            "    params: {model: openai/gpt-fast, api_base: 'http://127.0.0.1:9/v1', api_key: k}\n"  # nothing listens there
            "  - model_name: backup\n"
            f"    params: {{model: openai/gpt-backup, api_base: '{up.base_url}', api_key: os.environ/BATCH_TEST_KEY}}\n"
            "  - model_name: vectors\n"
            f"    params: {{model: openai/embed-1, api_base: '{up.base_url}', api_key: k}}\n"
            "router_settings: {num_retries: 0, fallbacks: [{fast: [backup]}]}\n"
        )  # fmt: skip
        source = write_jsonl(tmp_path / "in.jsonl", [
            chat_line("a", "one", model="fast"),
            chat_line("b", "two", model="backup"),
            {"custom_id": "c", "method": "POST", "url": "/v1/embeddings", "body": {"model": "vectors", "input": "x"}},
        ])  # fmt: skip
        out = tmp_path / "out.jsonl"
        result = cli("batch", str(source), "-o", str(out), "--config", str(config), env={"BATCH_TEST_KEY": KEY})
        models = sorted(r.json["model"] for r in up.requests)
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in up.requests if r.json["model"] == "gpt-backup")
    assert result.returncode == 0, result.stderr
    assert models == ["embed-1", "gpt-backup", "gpt-backup"]
    records = {r["custom_id"]: r for r in read_jsonl(out)}
    assert records["a"]["response"]["body"]["choices"][0]["message"]["content"] == "You said: one"
    assert records["c"]["response"]["body"]["object"] == "list"


def test_batch_progress_bar_when_tqdm_is_installed(tmp_path):
    pytest.importorskip("tqdm")
    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(f"id-{i}", "x") for i in range(5)])
    with FakeUpstream() as up:
        result = cli("batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--api-base", up.base_url, "--progress", "bar")
    assert result.returncode == 0, result.stderr
    assert "5/5" in result.stderr and "tokens" in result.stderr and "cost $0.0000" in result.stderr


def test_run_batch_file_from_python_counts_tokens_and_cost(tmp_path):
    from modelport.batch import run_batch_file, set_cost_function

    def priced(request):
        reply = chat_reply(request)
        reply.json["usage"]["cost"] = 0.25  # a cost the answer carries (OpenRouter's place)
        return reply

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line("a", "x"), chat_line("b", "y")])
    with FakeUpstream(handler=priced) as up:
        options = {"api_base": up.base_url, "api_key": "k"}
        stats = run_batch_file(source, tmp_path / "out.jsonl", concurrency=2, call_options=options)
        assert (stats.ok, stats.failed, stats.tokens, stats.cost) == (2, 0, 10, 0.5)
        set_cost_function(lambda model, body: 1.5 if model == "openai/m" else None)  # the pricing hook wins
        try:
            stats = run_batch_file(source, tmp_path / "out2.jsonl", call_options=options)
        finally:
            set_cost_function(None)
        assert stats.cost == 3.0
        assert run_batch_file(source, tmp_path / "out2.jsonl", call_options=options).skipped == 2


def test_a_failed_write_stops_the_run_and_a_rerun_completes(tmp_path, monkeypatch):
    import errno

    import modelport.batch as batch

    source = write_jsonl(tmp_path / "in.jsonl", [chat_line(f"id-{i}", f"text {i}") for i in range(30)])
    out = tmp_path / "out.jsonl"
    real_write = os.write
    writes = []

    def failing_write(fd, data):
        writes.append(len(data))
        if len(writes) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    with FakeUpstream(handler=lambda request: chat_reply(request, delay=0.01)) as up:
        options = {"api_base": up.base_url, "api_key": "k"}
        monkeypatch.setattr(batch, "_write", failing_write)
        with pytest.raises(OSError, match="No space left"):
            batch.run_batch_file(source, out, concurrency=2, call_options=options)
        monkeypatch.setattr(batch, "_write", real_write)
        written = len(read_jsonl(out))
        assert 1 <= written < 30
        stats = batch.run_batch_file(source, out, concurrency=4, call_options=options)
    assert stats.skipped == written and stats.ok == 30 - written
    assert sorted(r["custom_id"] for r in read_jsonl(out)) == sorted(f"id-{i}" for i in range(30))


# --- modelport images --------------------------------------------------------------------------------------------

MODEL = "modelscope/Tongyi-MAI/Z-Image-Turbo"
MS_ENV = {"MODELSCOPE_TOKEN": "ms-batch-token"}


class TaskServer:
    """ModelScope's task API for many tasks (the idea of tests/test_modelscope.py's helper):
    a submit returns a new task id; its first poll is RUNNING, the next SUCCEED (FAILED for
    prompts in ``fail``); the image's bytes carry the prompt."""

    def __init__(self, fail=()):
        self.fail = set(fail)
        self.tasks = {}
        self.polls = collections.Counter()
        self.submits = []
        self.upstream = FakeUpstream(handler=self.handle)

    def handle(self, request):
        if request.path == "/v1/images/generations":
            prompt = request.json["prompt"]
            self.submits.append(request.json)
            task_id = f"task-{len(self.submits)}"
            self.tasks[task_id] = prompt
            return Reply(json={"task_id": task_id, "request_id": "sub"})
        if request.path.startswith("/v1/tasks/"):
            task_id = request.path.rsplit("/", 1)[1]
            self.polls[task_id] += 1
            if self.polls[task_id] == 1:
                return Reply(json={"task_status": "RUNNING"})
            if self.tasks[task_id] in self.fail:
                return Reply(json={"task_status": "FAILED", "errors": {"message": "Out of memory"}, "request_id": "r"})
            return Reply(json={"task_status": "SUCCEED", "output_images": [f"{self.upstream.url}/files/{task_id}.png"]})
        if request.path.startswith("/files/"):
            task_id = request.path.rsplit("/", 1)[1].removesuffix(".png")
            return Reply(body=PNG + self.tasks[task_id].encode(), content_type="image/png")
        return None

    def __enter__(self):
        self.upstream.start()
        return self

    def __exit__(self, *exc):
        self.upstream.stop()


def images(server, prompts, out, *extra):
    return cli("images", "--prompts", str(prompts), "--out", str(out), "-m", MODEL, "--api-base", server.upstream.base_url,
               "--option", "poll_interval=0.01", *extra, env=MS_ENV)  # fmt: skip


def test_images_in_bulk_numbered_and_resumable(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("".join(f"a fox number {i}\n" for i in range(1, 6)))
    out = tmp_path / "out"
    with TaskServer() as server:
        result = images(server, prompts, out, "--concurrency", "3", "--size", "512x512", "--progress", "plain")
        assert len(server.submits) == 5 and all(s["size"] == "512x512" for s in server.submits)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"000{i}.png" for i in range(1, 6)]
    for i in range(1, 6):
        assert (out / f"000{i}.png").read_bytes() == PNG + f"a fox number {i}".encode()
    assert "5 prompts: 5 ok, 0 failed" in result.stderr and "ms-batch-token" not in result.stderr

    # resume: a lost file and a download cut off by a kill are redone, nothing else
    (out / "0002.png").unlink()
    (out / ".partial-0004").mkdir()
    (out / ".partial-0004" / "0004.png").write_bytes(b"half")
    with TaskServer() as server:
        result = images(server, prompts, out)
        assert [s["prompt"] for s in server.submits] == ["a fox number 2"]
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == [f"000{i}.png" for i in range(1, 6)]
    assert (out / "0002.png").read_bytes() == PNG + b"a fox number 2" and "4 skipped" in result.stderr


def test_image_with_a_prompts_file_is_the_bulk_command(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red kite\na blue heron\n")
    out = tmp_path / "out"
    with TaskServer() as server:
        result = cli("image", "--prompts", str(prompts), "--out", str(out), "-m", MODEL, "--api-base", server.upstream.base_url,
                     "--option", "poll_interval=0.01", env=MS_ENV)  # fmt: skip
        assert sorted(s["prompt"] for s in server.submits) == ["a blue heron", "a red kite"]
    assert result.returncode == 0, result.stderr
    assert (out / "0001.png").read_bytes() == PNG + b"a red kite"
    assert (out / "0002.png").read_bytes() == PNG + b"a blue heron"
    assert "2 prompts: 2 ok, 0 failed" in result.stderr


def test_images_checks_every_prompt_before_sending(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a short prompt\n\n" + "x" * 60 + "\nfine\n")
    out = tmp_path / "out"
    with TaskServer() as server:
        result = images(server, prompts, out, "--max-prompt-chars", "50")
        assert server.upstream.requests == []
    assert result.returncode == 2
    assert "prompt 2 (line 2): empty prompt" in result.stderr
    assert "prompt 3 (line 3): prompt has 60 characters, the limit is 50" in result.stderr
    assert "nothing was sent" in result.stderr and not out.exists()

    structured = tmp_path / "prompts.jsonl"
    write_jsonl(structured, [{"prompt": "ok", "negative_prompt": "y" * 80, "seed": 1}, "plain string prompt", {"prompt": 7}])
    with TaskServer() as server:
        result = images(server, structured, out, "--max-prompt-chars", "50")
        assert server.upstream.requests == []
    assert result.returncode == 2
    assert "negative_prompt has 80 characters" in result.stderr and "prompt 3 (line 3): the prompt must be text" in result.stderr


def test_images_uses_the_limit_the_provider_declares(tmp_path, monkeypatch, capsys):
    import modelport_modelscope
    from modelport.cli import main

    monkeypatch.setattr(modelport_modelscope, "IMAGE_PROMPT_MAX_CHARS", 1999, raising=False)
    monkeypatch.setenv("MODELSCOPE_TOKEN", "ms-batch-token")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ok\n" + "z" * 2000 + "\n")
    with TaskServer() as server:
        code = main(["images", "--prompts", str(prompts), "--out", str(tmp_path / "out"), "-m", MODEL, "--api-base", server.upstream.base_url])
        assert server.upstream.requests == []
    assert code == 2 and "prompt has 2000 characters, the limit is 1999" in capsys.readouterr().err
    assert check_prompts(read_prompts(prompts)[0], max_chars=None) == []  # no declared limit: only emptiness counts


def test_images_failed_prompt_is_reported_and_retried_on_rerun(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("one\ntwo\nthree\n")
    out = tmp_path / "out"
    with TaskServer(fail={"two"}) as server:
        result = images(server, prompts, out, "--json-summary")
    assert result.returncode == 1
    assert "prompt 2 failed" in result.stderr and "Out of memory" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0001.png", "0003.png"]
    assert json.loads(result.stdout)["failed"] == 1
    with TaskServer() as server:
        result = images(server, prompts, out)
        assert [s["prompt"] for s in server.submits] == ["two"]
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["0001.png", "0002.png", "0003.png"]
