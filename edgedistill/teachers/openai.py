"""An OpenAI-compatible chat server as teacher (vLLM, llama.cpp server, TGI, hosted APIs).

Plain ``urllib`` (no client package). ``concurrency`` requests run in a thread pool. A request that
gets 429, a 5xx, a time-out or a refused connection is retried up to ``max_retries`` times with
exponential back-off (``backoff_s``, doubling, at most ``max_backoff_s``), honouring a
``Retry-After`` header (capped at ``max_backoff_s``). After the last retry the whole run stops with
an :class:`EdgeDistillError`; what was written before stays. A 400/413/422 rejection concerns one
prompt only (e.g. too long): it becomes a ``finish_reason="error"`` completion. 401/403/404 mean
wrong key, URL or model name and stop the run at once.

The API key is read from the environment variable ``api_key_env`` and sent only in the
Authorization header; it is never logged, put in an error message, or written to output. A URL with
``user:password@`` is sent as HTTP basic auth instead (then the key is not sent: a request carries one
Authorization header); the password is never printed (``user:***@``).
"""

from __future__ import annotations

import base64
import email.utils
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from edgedistill.errors import EdgeDistillError
from edgedistill.stopping import cut_at_stop
from edgedistill.teachers.base import Completion, SamplingConfig, Teacher, TeacherConfig, split_userinfo, teacher_id

PER_RECORD_STATUSES = (400, 413, 422)


class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class OpenAITeacher(Teacher):
    def __init__(self, config: TeacherConfig, sleep=time.sleep):
        self.config = config
        self.id = teacher_id(config)
        self.preferred_batch = config.concurrency
        # userinfo never reaches the connection (http.client would take it for host:port) nor a message
        url, user, password = split_userinfo(str(config.url).rstrip("/"))
        self.endpoint = url + "/chat/completions"
        self._basic = None
        if user is not None:
            self._basic = base64.b64encode(f"{user}:{password or ''}".encode("utf-8")).decode("ascii")
        self._pool = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="teacher")
        self._sleep = sleep  # injectable so tests can record back-off delays

    # --- one request with retries ---------------------------------------------------------------
    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.config.api_key_env)
        if self._basic:
            headers["Authorization"] = f"Basic {self._basic}"
        elif key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post_once(self, body: bytes) -> dict:
        req = urllib.request.Request(self.endpoint, data=body, headers=self._headers(), method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.config.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = _error_detail(exc)
            key = os.environ.get(self.config.api_key_env)
            for secret in (key, self._basic, split_userinfo(str(self.config.url))[2]):
                if secret:  # a server may echo the request back; no secret may reach a message
                    detail = detail.replace(secret, "***")
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code} {detail}".strip(), parse_retry_after(exc.headers.get("Retry-After")))
            if exc.code in (401, 403):
                raise EdgeDistillError(
                    f"teacher server {self.endpoint} refused the credentials (HTTP {exc.code}) {detail}".strip(),
                    hint="check the user and password in --teacher-url" if self._basic else
                    f"put the API key in the environment variable {self.config.api_key_env} "
                    "(or name another one with --api-key-env)",
                ) from None
            if exc.code in PER_RECORD_STATUSES:
                return {"_rejected": f"HTTP {exc.code} {detail}".strip()}
            raise EdgeDistillError(
                f"teacher server {self.endpoint} answered HTTP {exc.code} {detail}".strip(),
                hint="check --teacher-url (it usually ends in /v1) and --teacher-model",
            ) from None
        except (TimeoutError, socket.timeout):
            raise _Retryable(f"no reply within {self.config.timeout_s:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, (TimeoutError, socket.timeout)):
                raise _Retryable(f"no reply within {self.config.timeout_s:g} s") from None
            raise _Retryable(f"connection failed ({reason})") from None
        except (ConnectionError, http.client.HTTPException) as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from None
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise _Retryable("reply was not JSON") from None

    def _post(self, payload: dict) -> dict:
        body = json.dumps(payload).encode("utf-8")
        cfg = self.config
        attempt = 0
        while True:
            try:
                return self._post_once(body)
            except _Retryable as exc:
                if attempt >= cfg.max_retries:
                    raise EdgeDistillError(
                        f"teacher server {self.endpoint}: {exc.reason}; gave up after {attempt + 1} attempt(s)",
                        hint="check that the server is running and reachable; rerun the same command to "
                        "resume (finished records are kept), or raise --max-retries / --timeout",
                    ) from None
                delay = min(cfg.max_backoff_s, cfg.backoff_s * (2**attempt))
                if exc.retry_after is not None:
                    delay = min(cfg.max_backoff_s, max(delay, exc.retry_after))
                self._sleep(delay)
                attempt += 1

    # --- the Teacher interface --------------------------------------------------------------------
    def _one(self, conversation: list[dict], sampling: SamplingConfig) -> Completion:
        payload = {
            "model": self.config.model,
            "messages": conversation,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": sampling.seed,
        }
        if sampling.stop:
            payload["stop"] = list(sampling.stop)
        if sampling.top_logprobs > 0:
            payload.update(logprobs=True, top_logprobs=sampling.top_logprobs)
        reply = self._post(payload)
        if "_rejected" in reply:
            return Completion("", "error", error=reply["_rejected"])
        try:
            choice = reply["choices"][0]
            text = (choice.get("message") or {}).get("content") or ""
        except (KeyError, IndexError, TypeError):
            raise EdgeDistillError(
                f"teacher server {self.endpoint} sent a reply without choices[0].message; "
                "is it an OpenAI-compatible chat endpoint?"
            ) from None
        finish = "length" if choice.get("finish_reason") == "length" else "stop"
        # A server that ignores `stop` (or keeps the string) is cut here, so every server's answers
        # follow the one rule of edgedistill.stopping.
        text, cut = cut_at_stop(text, sampling.stop)
        finish = "stop" if cut else finish
        return Completion(text=text, finish_reason=finish, top_logprobs=_logprobs(choice.get("logprobs"), sampling))

    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig) -> list[Completion]:
        futures = [self._pool.submit(self._one, c, sampling) for c in conversations]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for f in futures:
                f.cancel()
            raise

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(300).decode("utf-8", errors="replace")
    except Exception:
        return ""
    try:
        err = json.loads(text).get("error")
        if isinstance(err, dict):
            text = str(err.get("message", text))
        elif isinstance(err, str):
            text = err
    except (json.JSONDecodeError, AttributeError):
        pass
    return f"({' '.join(text.split())[:200]})" if text.strip() else ""


def _logprobs(logprobs: dict | None, sampling: SamplingConfig) -> list[list[dict]] | None:
    if sampling.top_logprobs <= 0 or not logprobs or not logprobs.get("content"):
        return None
    return [
        [{"token": t["token"], "logprob": float(t["logprob"])} for t in (entry.get("top_logprobs") or [])]
        for entry in logprobs["content"]
    ]
