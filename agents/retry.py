"""The one retry policy for LLM calls (the SDKs' own retries are switched off: never two layers).

Retried: rate limits (429), server errors (5xx, Anthropic's 529 overload included), timeouts and
connection failures, with exponential backoff and jitter, honouring `Retry-After`. Not retried:
any other 4xx (a bad request stays bad). The last failure is raised as `ProviderError`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kernelwright.agents.llm import ProviderError

T = TypeVar("T")

MAX_ATTEMPTS = 4
BASE_DELAY_S = 1.0
MAX_DELAY_S = 60.0


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


def is_retryable(exc: BaseException) -> bool:
    status = status_of(exc)
    if status is not None:
        return status == 429 or status >= 500
    name = type(exc).__name__
    return name in ("APITimeoutError", "APIConnectionError") or "Timeout" in name


def retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def call_with_retries(
    call: Callable[[], T], describe: str, sleep: Callable[[float], Any] = time.sleep
) -> tuple[T, int]:
    """(result, attempts). Raises ProviderError after the last failed attempt."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return call(), attempt
        except Exception as exc:  # the SDKs' errors; anything else is not ours to retry
            retryable = is_retryable(exc)
            if not retryable or attempt == MAX_ATTEMPTS:
                status = status_of(exc)
                detail = f"HTTP {status}" if status else type(exc).__name__
                raise ProviderError(
                    f"{describe} failed after {attempt} attempt(s): {detail}: {_short(exc)}",
                    retryable=retryable,
                    status=status,
                ) from exc
            delay = retry_after(exc)
            if delay is None:
                delay = min(MAX_DELAY_S, BASE_DELAY_S * 2 ** (attempt - 1)) * random.uniform(
                    0.5, 1.0
                )
            sleep(min(delay, MAX_DELAY_S))
    raise AssertionError("unreachable")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else "")[:300]
