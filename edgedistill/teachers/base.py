"""The teacher interface and its settings.

A teacher turns a batch of chat conversations into completions::

    teacher = load_teacher(TeacherConfig(path="models/teacher"))
    [c] = teacher.generate([[{"role": "user", "content": "Hi"}]], SamplingConfig())
    c.text, c.finish_reason, c.top_logprobs

Kinds live in the ``TEACHERS`` registry (``hf``, ``gguf``, ``openai``) as "module:Class" strings so
that optional back ends (llama-cpp-python) are imported only when used.
"""

from __future__ import annotations

import hashlib
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path

from edgedistill.config import one_of, require
from edgedistill.errors import EdgeDistillError
from edgedistill.registry import Registry

TEACHERS: Registry[str] = Registry("teacher kind")
TEACHERS.register("hf", "edgedistill.teachers.hf:HFTeacher")
TEACHERS.register("gguf", "edgedistill.teachers.gguf:GGUFTeacher")
TEACHERS.register("openai", "edgedistill.teachers.openai:OpenAITeacher")

FINISH_REASONS = ("stop", "length", "error")


@dataclass
class SamplingConfig:
    """How the teacher samples. Recorded in every output record."""

    temperature: float = field(default=0.7, metadata={"help": "sampling temperature; 0 = greedy"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling probability mass (0, 1]"})
    max_new_tokens: int = field(default=256, metadata={"help": "most tokens generated per answer"})
    seed: int = field(default=0, metadata={"help": "random seed (local teachers; sent to servers)"})
    top_logprobs: int = field(
        default=0, metadata={"help": "record the top-K log-probabilities of every generated token (0 = off)"}
    )
    stop: list[str] | None = field(
        default=None, metadata={"help": "stop sequences: an answer ends before the first one, which is dropped "
                                        "(None: the task's default; [] none)"}
    )
    plain_cue: str | None = field(
        default=None, metadata={"help": "for a teacher without a chat template (a base model): text written "
                                        "after the prompt that opens the answer, e.g. 'Summary: It' "
                                        "(None: the task's default; '' none)"}
    )

    def __post_init__(self):
        require(self.temperature >= 0, "temperature", f"must be >= 0, got {self.temperature}")
        require(0 < self.top_p <= 1, "top_p", f"must be in (0, 1], got {self.top_p}")
        require(self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}")
        require(0 <= self.top_logprobs <= 20, "top_logprobs", f"must be between 0 and 20, got {self.top_logprobs}")
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if self.stop is not None:
            self.stop = list(self.stop)
            require(all(isinstance(s, str) and s for s in self.stop), "stop",
                    f"stop sequences must be non-empty strings, got {self.stop!r}")
            require(len(self.stop) <= 4, "stop", f"at most 4 stop sequences (as OpenAI servers accept), "
                    f"got {len(self.stop)}")
        require(self.plain_cue is None or isinstance(self.plain_cue, str), "plain_cue",
                f"must be a string, got {self.plain_cue!r}")


@dataclass
class TeacherConfig:
    """Which teacher to ask, and how."""

    path: str | None = field(
        default=None, metadata={"help": "local Hugging Face model directory or .gguf file"}
    )
    url: str | None = field(
        default=None, metadata={"help": "base URL of an OpenAI-compatible server, e.g. http://host:8000/v1"}
    )
    model: str | None = field(default=None, metadata={"help": "model name sent to the server (with url)"})
    kind: str = field(default="auto", metadata={"help": "hf, gguf, openai, or auto (from path / url)"})
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "environment variable holding the server's API key (never logged or written)"},
    )
    concurrency: int = field(default=4, metadata={"help": "parallel requests to the server"})
    timeout_s: float = field(default=120.0, metadata={"help": "seconds to wait for one server reply"})
    max_retries: int = field(
        default=5, metadata={"help": "retries of a request on 429, 5xx, time-outs and refused connections"}
    )
    backoff_s: float = field(default=1.0, metadata={"help": "first retry delay; doubles on each retry"})
    max_backoff_s: float = field(default=60.0, metadata={"help": "longest delay between retries"})
    batch_size: int = field(default=8, metadata={"help": "prompts per generate() call (hf teacher)"})
    device: str = field(default="cpu", metadata={"help": "torch device of the hf teacher"})
    n_threads: int | None = field(default=None, metadata={"help": "CPU threads (gguf teacher; default: all)"})
    n_ctx: int = field(default=2048, metadata={"help": "context window in tokens (gguf teacher; per sequence)"})
    parallel: int = field(default=1, metadata={
        "help": "prompts the gguf teacher decodes together in one llama.cpp batch (1: one at a time); "
                "greedy answers can differ from one at a time at near-ties (docs/generate.md)"})

    def __post_init__(self):
        one_of(self.kind, "kind", ["auto", *TEACHERS.names()])
        if self.kind == "auto":
            if self.url:
                self.kind = "openai"
            elif self.path:
                self.kind = "gguf" if str(self.path).lower().endswith(".gguf") else "hf"
            else:
                require(False, "teacher", "give a model path (--teacher) or a server URL (--teacher-url)")
        if self.kind == "openai":
            require(bool(self.url), "url", "an openai teacher needs the server URL (--teacher-url)")
            require(bool(self.model), "model", "an openai teacher needs the model name (--teacher-model)")
            require(str(self.url).startswith(("http://", "https://")), "url",
                    f"{redact_url(str(self.url))!r} is not an http(s) URL")
        else:
            require(bool(self.path), "path", f"a {self.kind} teacher needs a model path (--teacher)")
            require(not self.url, "url", "give either a model path or a server URL, not both")
        require(self.concurrency >= 1, "concurrency", f"must be >= 1, got {self.concurrency}")
        require(self.timeout_s > 0, "timeout_s", f"must be > 0, got {self.timeout_s}")
        require(self.max_retries >= 0, "max_retries", f"must be >= 0, got {self.max_retries}")
        require(self.backoff_s >= 0, "backoff_s", f"must be >= 0, got {self.backoff_s}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.n_threads is None or self.n_threads >= 1, "n_threads", "must be >= 1")
        require(self.n_ctx >= 16, "n_ctx", f"must be >= 16, got {self.n_ctx}")
        require(1 <= self.parallel <= 64, "parallel", f"must be between 1 and 64, got {self.parallel}")


@dataclass
class Completion:
    """One teacher answer. ``top_logprobs``: per generated token, a list of {"token", "logprob"}."""

    text: str
    finish_reason: str  # one of FINISH_REASONS
    top_logprobs: list[list[dict]] | None = None
    error: str | None = None


class Teacher(ABC):
    """A loaded teacher. ``id`` identifies it in output records (and in resume checks)."""

    id: str = ""
    #: how many conversations to pass to one generate() call; at most this many are in flight
    preferred_batch: int = 1

    @abstractmethod
    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig) -> list[Completion]:
        """One completion per conversation, in order."""

    def close(self) -> None:
        """Free the model / connections."""


def _fingerprint(paths: list[Path]) -> str:
    """Cheap identity of model files: names, sizes and the small config files' contents."""
    h = hashlib.sha256()
    for p in sorted(paths):
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}".encode())
        if p.suffix == ".json" and st.st_size < 1_000_000:
            h.update(p.read_bytes())
    return h.hexdigest()[:8]


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """``http://user:pw@host/v1`` -> (``http://host/v1``, user, password); user/password None if absent."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, host = parts.netloc.rsplit("@", 1)
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), unquote(user), unquote(password)


def redact_url(url: str) -> str:
    """The URL as it may be printed: ``user:***@`` instead of the password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def teacher_id(config: TeacherConfig) -> str:
    """A stable id string without loading the model: kind, name and a fingerprint of the files.

    Raises EdgeDistillError when the model path does not exist.
    """
    if config.kind == "openai":
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(str(config.url).rstrip("/"))
        netloc = parts.netloc.rsplit("@", 1)[-1]  # never record user:password@ from the URL
        return f"openai:{config.model}@{urlunsplit(parts._replace(netloc=netloc))}"
    p = Path(str(config.path)).expanduser()
    if not p.exists():
        raise EdgeDistillError(
            f"teacher path {str(config.path)!r} does not exist",
            hint="give a local Hugging Face model directory or a .gguf file (nothing is downloaded)",
        )
    if config.kind == "gguf":
        if not p.is_file():
            raise EdgeDistillError(f"teacher path {p} is not a .gguf file")
        return f"gguf:{p.name}@{_fingerprint([p])}"
    if not p.is_dir() or not (p / "config.json").exists():
        raise EdgeDistillError(
            f"teacher path {p} is not a Hugging Face model directory (no config.json)",
            hint="pass a directory written by save_pretrained, a .gguf file, or --teacher-url for a server",
        )
    files = [f for f in p.iterdir() if f.is_file() and (f.suffix in (".json", ".safetensors", ".bin"))]
    return f"hf:{p.resolve().name}@{_fingerprint(files)}"


def load_teacher(config: TeacherConfig) -> Teacher:
    """Instantiate the teacher ``config.kind`` names."""
    target = TEACHERS.get(config.kind)
    module_name, cls_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(config)
