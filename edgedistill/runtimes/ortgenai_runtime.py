"""onnxruntime-genai runtime for ``ort-genai`` artifacts (``genai_config.json`` + ``model.onnx``).

This is the library ORT ships for phones (the same C API backs its Android and iOS packages), so the
artifact is run exactly as an app would: ``og.Model`` from the directory, ``og.Tokenizer`` for text
(onnxruntime-extensions reading the artifact's ``tokenizer.json``), and an ``og.Generator`` that owns
the KV cache. ``append_tokens`` runs the prompt once; each ``generate_next_token`` picks a token from the
current logits and runs the decoder once on it, so ``stream`` does one decoder run per token.
"""

from __future__ import annotations

import json
from typing import Iterator

import numpy as np

from edgedistill.artifacts import Artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.runtimes.base import Runtime


class OrtGenaiRuntime(Runtime):
    name = "ort-genai"
    # After append_tokens the generator's "logits" output holds every prompt position.
    full_logits = True

    def __init__(self, artifact: Artifact, threads: int | None = None):
        super().__init__(artifact, threads)
        try:
            import onnxruntime_genai as og
        except ImportError:
            raise EdgeDistillError(
                "the ort-genai runtime needs the onnxruntime-genai package",
                hint="pip install 'onnxruntime-genai>=0.18'",
            ) from None
        self._og = og
        try:
            config = og.Config(str(artifact.path))
            config.clear_providers()  # CPU: what the verification and the CPU benchmarks measure
            if threads:
                overlay = {"model": {"decoder": {"session_options": {
                    "intra_op_num_threads": int(threads), "inter_op_num_threads": 1}}}}
                config.overlay(json.dumps(overlay))
            self.model = og.Model(config)
            self.tokenizer = og.Tokenizer(self.model)
        except Exception as exc:  # onnxruntime-genai raises plain RuntimeError with its message
            raise EdgeDistillError(f"onnxruntime-genai could not load {artifact.path}: {exc}") from None
        self._add_special: bool | None = None
        self._eos = {int(t) for t in self.tokenizer.eos_token_ids}
        genai = json.loads((artifact.path / "genai_config.json").read_text())
        eos_cfg = genai.get("model", {}).get("eos_token_id")
        if eos_cfg is not None:
            self._eos |= set(eos_cfg) if isinstance(eos_cfg, list) else {int(eos_cfg)}
        self._context_length = int(genai.get("model", {}).get("context_length") or 0)
        # onnxruntime-genai refuses a KV buffer shorter than a sliding window (Gemma 3: "KV cache capacity
        # (33) must be at least local_window_size (512)"), so buffers are never sized below the window.
        window = int((genai.get("model", {}).get("decoder", {}).get("sliding_window") or {}).get("window_size") or 0)
        self._min_buffer = min(window, self._context_length) if self._context_length else window

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        if self._add_special is not add_special_tokens:
            # The same switch an app flips on og.Tokenizer; it adds BOS the way tokenizer.json says.
            self.tokenizer.update_options(add_special_tokens="true" if add_special_tokens else "false")
            self._add_special = add_special_tokens
        return [int(t) for t in self.tokenizer.encode(text)]

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode(np.asarray(ids, dtype=np.int32))

    @property
    def eos_token_ids(self) -> set[int]:
        return set(self._eos)

    def _generator(self, max_length: int):
        og = self._og
        if self._context_length and max_length > self._context_length:
            raise EdgeDistillError(
                f"{max_length} tokens exceed the artifact's context length {self._context_length}"
            )
        params = og.GeneratorParams(self.model)
        # Greedy; min_length 0 so EOS may come at any time; the buffer is sized to what is asked for (at
        # least the sliding window; callers stop after the tokens they asked for, so the size changes nothing).
        params.set_search_options(max_length=max(max_length, self._min_buffer), do_sample=False, num_beams=1, min_length=0)
        return og.Generator(self.model, params)

    def logits(self, ids: list[int]) -> np.ndarray:
        if not ids:
            raise EdgeDistillError("logits() needs at least one token id")
        gen = self._generator(len(ids) + 1)
        gen.append_tokens(np.asarray([ids], dtype=np.int32))
        out = np.asarray(gen.get_output("logits"))
        return out.reshape(-1, out.shape[-1])[-len(ids):].astype(np.float32)

    def stream(self, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        if not ids:
            raise EdgeDistillError("stream() needs at least one prompt token id")
        if max_new_tokens <= 0:
            return
        eos = self.eos_token_ids
        gen = self._generator(len(ids) + max_new_tokens)
        gen.append_tokens(np.asarray([ids], dtype=np.int32))  # prefill: one decoder run
        for _ in range(max_new_tokens):
            gen.generate_next_token()  # picks from the current logits, then runs the decoder on it
            tok = int(gen.get_next_tokens()[0])
            yield tok
            if tok in eos or gen.is_done():
                return

    def close(self) -> None:
        self.tokenizer = None
        self.model = None
