"""Shared fixtures: a tokenizer trained in-process and tiny random models of every architecture."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from edgedistill.testing.tiny import ARCHITECTURES, build_tiny_model, build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory, tiny_tokenizer):
    """factory(arch, **kw) -> path of a saved tiny model; cached per (arch, kw) for the session."""
    cache: dict = {}

    def make(arch: str = "llama", **kw):
        key = (arch, tuple(sorted(kw.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp(f"tiny-{arch}")
            cache[key] = build_tiny_model(arch, out, tokenizer=tiny_tokenizer, **kw)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_llama(tiny_model_factory):
    return tiny_model_factory("llama")


@pytest.fixture(scope="session", params=sorted(ARCHITECTURES))
def tiny_any_arch(request, tiny_model_factory):
    return request.param, tiny_model_factory(request.param)


@pytest.fixture(scope="session")
def tiny_llama_gguf(tiny_model_factory, tmp_path_factory):
    """The tiny llama written as an f16 GGUF file (llama.cpp runtime and GGUF-teacher tests)."""
    from edgedistill.export.gguf import write_gguf

    path = tmp_path_factory.mktemp("tiny-llama-gguf") / "model.gguf"
    write_gguf(tiny_model_factory("llama"), path, "f16")
    return path
