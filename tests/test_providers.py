"""LLM providers against mocked HTTP (the SDKs' own transport is replaced; nothing leaves)."""

from __future__ import annotations

import importlib
import json

import pytest
from kernelwright.agents import retry
from kernelwright.agents.llm import (
    BudgetExceeded,
    Message,
    MissingKey,
    ProviderError,
    RepliesExhausted,
)
from kernelwright.agents.pricing import Budget, cost, model_info
from kernelwright.agents.registry import make_model
from kernelwright.errors import BadInput


def _httpx():
    """The HTTP library the installed SDKs are built on (httpx, or httpx2 in newer SDKs)."""
    for name in ("httpx2", "httpx"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    pytest.skip("neither httpx nor httpx2 is installed")


class Server:
    """Serves scripted responses in order and records the requests."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.requests = []

    def __call__(self, request):
        self.requests.append(request)
        item = self.responses.pop(0)
        if isinstance(item, Exception):
            raise item
        status, body, headers = item
        return _httpx().Response(status, json=body, headers=headers, request=request)

    def client(self):
        httpx = _httpx()
        return httpx.Client(transport=httpx.MockTransport(self))


OPENAI_OK = {
    "id": "c1",
    "object": "chat.completion",
    "created": 0,
    "model": "gpt-4o",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "```cpp\nkernel\n```"},
        }
    ],
    "usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500},
}
ANTHROPIC_OK = {
    "id": "m1",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [{"type": "text", "text": "the plan"}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {"input_tokens": 2000, "output_tokens": 500},
}
ERROR = {"error": {"message": "nope", "type": "error"}}
MESSAGES = [Message("system", "You write CUDA."), Message("user", "Make it fast.")]


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")


def _openai(server, sleeps, **kw):
    return make_model("openai:gpt-4o", http_client=server.client(), sleep=sleeps.append, **kw)


def _anthropic(server, sleeps, spec="anthropic:claude-sonnet-4-6", **kw):
    return make_model(spec, http_client=server.client(), sleep=sleeps.append, **kw)


def test_openai_success_usage_and_cost(keys):
    server, sleeps = Server([(200, OPENAI_OK, {})]), []
    done = _openai(server, sleeps).complete(MESSAGES, role="coder")
    assert done.text == "```cpp\nkernel\n```"
    assert (done.usage.input_tokens, done.usage.output_tokens) == (1200, 300)
    assert done.cost_usd == pytest.approx((1200 * 2.5 + 300 * 10.0) / 1e6)
    body = json.loads(server.requests[0].content)
    assert body["model"] == "gpt-4o" and body["messages"][0] == {
        "role": "system",
        "content": "You write CUDA.",
    }
    assert server.requests[0].headers["authorization"] == "Bearer sk-test"
    assert sleeps == []


def test_openai_429_then_success_honours_retry_after(keys):
    server, sleeps = Server([(429, ERROR, {"retry-after": "7"}), (200, OPENAI_OK, {})]), []
    done = _openai(server, sleeps).complete(MESSAGES, role="judge")
    assert done.attempts == 2 and sleeps == [7.0] and len(server.requests) == 2


def test_openai_400_is_not_retried(keys):
    server, sleeps = Server([(400, ERROR, {})]), []
    with pytest.raises(ProviderError) as info:
        _openai(server, sleeps).complete(MESSAGES, role="coder")
    assert info.value.status == 400 and not info.value.retryable
    assert len(server.requests) == 1 and sleeps == []


def test_openai_timeouts_are_retried_then_reported(keys):
    httpx = _httpx()
    server = Server([httpx.ReadTimeout("slow") for _ in range(retry.MAX_ATTEMPTS)])
    sleeps = []
    with pytest.raises(ProviderError, match=f"after {retry.MAX_ATTEMPTS} attempt"):
        _openai(server, sleeps).complete(MESSAGES, role="coder")
    assert len(server.requests) == retry.MAX_ATTEMPTS and len(sleeps) == retry.MAX_ATTEMPTS - 1
    assert all(0 < s <= retry.MAX_DELAY_S for s in sleeps)


def test_openai_compatible_server_needs_no_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server, sleeps = Server([(200, OPENAI_OK, {})]), []
    model = make_model(
        "openai:qwen-coder",
        base_url="http://127.0.0.1:8000/v1",
        http_client=server.client(),
        sleep=sleeps.append,
    )
    done = model.complete(MESSAGES, role="coder")
    assert str(server.requests[0].url).startswith("http://127.0.0.1:8000/v1/")
    assert done.cost_usd is None  # not in the price table


def test_anthropic_success_usage_and_cost(keys):
    server, sleeps = Server([(200, ANTHROPIC_OK, {})]), []
    done = _anthropic(server, sleeps).complete(MESSAGES, role="judge")
    assert done.text == "the plan"
    assert done.cost_usd == pytest.approx((2000 * 3.0 + 500 * 15.0) / 1e6)
    body = json.loads(server.requests[0].content)
    assert body["system"] == "You write CUDA." and body["messages"] == [
        {"role": "user", "content": "Make it fast."}
    ]
    headers = server.requests[0].headers  # SDK versions differ: x-api-key or a bearer token
    assert "sk-ant-test" in headers.get("x-api-key", "") + headers.get("authorization", "")


def test_anthropic_overload_then_success_and_400(keys):
    server, sleeps = Server([(529, ERROR, {}), (200, ANTHROPIC_OK, {})]), []
    assert _anthropic(server, sleeps).complete(MESSAGES, role="judge").attempts == 2
    assert len(sleeps) == 1
    server, sleeps = Server([(400, ERROR, {})]), []
    with pytest.raises(ProviderError) as info:
        _anthropic(server, sleeps).complete(MESSAGES, role="judge")
    assert info.value.status == 400 and len(server.requests) == 1


@pytest.mark.parametrize(
    ("spec", "reasoning", "thinking", "extra", "effort"),
    [
        # budgets where the model takes them (Claude 4.5 and earlier)
        (
            "anthropic:claude-opus-4-5-20251101",
            "4000",
            {"type": "enabled", "budget_tokens": 4000},
            4000,
            None,
        ),
        ("anthropic:claude-opus-4-5", "high", None, 0, None),  # no effort there: no thinking
        # adaptive thinking on the models that deprecate or refuse budgets
        ("anthropic:claude-sonnet-5-5", "high", {"type": "adaptive"}, 0, "high"),
        ("anthropic:claude-opus-4-7", "8000", {"type": "adaptive"}, 8000, None),
        ("anthropic:claude-sonnet-5-5", None, None, 0, None),
    ],
)
def test_anthropic_thinking_follows_the_model_table(keys, spec, reasoning, thinking, extra, effort):
    server, sleeps = Server([(200, ANTHROPIC_OK, {})]), []
    model = _anthropic(server, sleeps, spec, reasoning=reasoning)
    model.complete(MESSAGES, role="coder", max_tokens=1000)
    body = json.loads(server.requests[0].content)
    assert body.get("thinking") == thinking
    assert body["max_tokens"] == 1000 + extra == model.sent_max_tokens(1000)
    assert body.get("output_config", {}).get("effort") == effort


def test_claude_reasoning_must_be_a_budget_or_an_effort(keys):
    with pytest.raises(BadInput, match="thinking budget in tokens"):
        make_model("anthropic:claude-sonnet-5-5", reasoning="lots")


def test_the_budget_reserves_the_thinking_allowance_too(keys):
    from kernelwright.agents.calls import ask, max_tokens_for

    server, sleeps = Server([(200, ANTHROPIC_OK, {})]), []
    model = _anthropic(server, sleeps, "anthropic:claude-opus-4-5", reasoning="30000")
    limit = max_tokens_for(model, "judge")
    answer_only = limit * 25.0 / 1e6  # what the answer alone could cost at the output price
    budget = Budget(answer_only + 0.01)  # enough for the answer, not for the thinking on top
    with pytest.raises(BudgetExceeded):
        ask(model, MESSAGES, role="judge", problem=None, budget=budget)
    assert server.requests == []  # refused before any request


def test_missing_keys_name_the_variable(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(MissingKey, match="OPENAI_API_KEY is not set"):
        make_model("openai:gpt-4o")
    with pytest.raises(MissingKey, match="ANTHROPIC_API_KEY is not set"):
        make_model("anthropic:claude-sonnet-4")


@pytest.mark.parametrize("spec", ["gpt-4o", "foo:bar", "openai:"])
def test_bad_model_specs(spec):
    with pytest.raises(BadInput):
        make_model(spec)


def test_model_table_matches_dated_snapshots():
    info = model_info("anthropic", "claude-sonnet-4-20250514")
    assert (info.input_per_mtok, info.output_per_mtok, info.reasoning) == (
        3.0,
        15.0,
        "anthropic_thinking",
    )
    assert model_info("openai", "gpt-5-mini").input_per_mtok == 0.25  # not gpt-5's price
    assert not model_info("openai", "o3").temperature


def test_budget_stops_before_a_call_that_could_pass_it():
    info = model_info("openai", "gpt-4o")
    budget = Budget(0.05)
    budget.check(info, "x" * 3000, max_tokens=1000)  # worst case ~ $0.0125
    budget.add(0.04)
    with pytest.raises(BudgetExceeded, match="could cost up to"):
        budget.check(info, "x" * 3000, max_tokens=1000)
    with pytest.raises(BadInput, match="no price"):
        Budget(1.0).check(model_info("openai", "mystery-model"), "x", 10)
    Budget(None).check(model_info("openai", "mystery-model"), "x", 10)  # no budget, no check


def test_cost_of_unknown_model_is_none():
    from kernelwright.agents.llm import Usage

    assert cost(model_info("openai", "mystery-model"), Usage(10, 10)) is None


def test_replay_serves_in_order_per_role_and_problem(tmp_path):
    path = tmp_path / "replies.jsonl"
    lines = [
        {"role": "coder", "text": "c-any-1"},
        {"role": "coder", "text": "c-gelu", "problem": "01_gelu"},
        {"role": "judge", "text": "j-1"},
        {"role": "coder", "text": "c-any-2"},
    ]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n\n")
    model = make_model(f"replay:{path}")
    assert model.complete(MESSAGES, role="coder", problem="02_sum").text == "c-any-1"
    assert model.complete(MESSAGES, role="coder", problem="02_sum").text == "c-any-2"
    assert model.complete(MESSAGES, role="coder", problem="01_gelu").text == "c-gelu"
    assert model.complete(MESSAGES, role="judge", problem="01_gelu").text == "j-1"
    with pytest.raises(RepliesExhausted, match="no more coder replies"):
        model.complete(MESSAGES, role="coder", problem="01_gelu")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "line 1 is not JSON"),
        ('{"role": "boss", "text": "x"}', 'needs "role"'),
        ('{"role": "coder", "text": "x", "problem": 3}', "must be a string"),
    ],
)
def test_bad_replay_files(tmp_path, text, fragment):
    path = tmp_path / "bad.jsonl"
    path.write_text(text + "\n")
    with pytest.raises(BadInput, match=fragment):
        make_model(f"replay:{path}")
    with pytest.raises(BadInput, match="not found"):
        make_model(f"replay:{tmp_path / 'missing.jsonl'}")


def test_a_run_stores_its_replay_file_by_an_absolute_path(tmp_path, monkeypatch):
    from kernelwright.agents.registry import lasting_spec

    monkeypatch.chdir(tmp_path)
    assert lasting_spec("replay:r.jsonl") == f"replay:{tmp_path / 'r.jsonl'}"
    assert lasting_spec("openai:gpt-5") == "openai:gpt-5" and lasting_spec(None) is None
