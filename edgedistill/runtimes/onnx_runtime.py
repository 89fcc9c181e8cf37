"""onnxruntime runtime for ``onnx`` artifacts (a decoder graph with KV-cache inputs, as the builder or optimum exports it).

The graph is driven by hand rather than through optimum's ORTModelForCausalLM, so that the benchmark
times exactly what a device app would run: one ``InferenceSession.run`` for the prompt, then one per
generated token, feeding back the ``present.*`` outputs as ``past_key_values.*``. Which of
``attention_mask`` / ``position_ids`` / ``use_cache_branch`` to feed is read from the graph's inputs
(Gemma 3 exports have no ``position_ids``, for example), as are the KV-cache shapes and dtype (an fp16
export has fp16 cache inputs).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import numpy as np

from edgedistill.artifacts import Artifact
from edgedistill.errors import EdgeDistillError
from edgedistill.runtimes.base import Runtime

_PAST_RE = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")

# ONNX tensor type string -> numpy dtype, for the inputs a decoder graph can have
_NP_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    full_logits = True

    def __init__(self, artifact: Artifact, threads: int | None = None):
        super().__init__(artifact, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                str(artifact.main_file), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise EdgeDistillError(f"onnxruntime could not load {artifact.main_file}: {exc}") from None
        self._inputs = {i.name: i for i in self.session.get_inputs()}
        if "input_ids" not in self._inputs:
            raise EdgeDistillError(
                f"{artifact.main_file} has no input_ids input; it is not a causal-LM decoder "
                f"(inputs: {', '.join(self._inputs)})"
            )
        self._past_specs = self._read_past_specs()
        self._output_names = [o.name for o in self.session.get_outputs()]
        self._tokenizer = _load_artifact_tokenizer(artifact.path)
        self._eos = _eos_ids(artifact.path, self._tokenizer)

    # -- graph plumbing -------------------------------------------------------------------------

    def _read_past_specs(self) -> list[tuple[str, str, tuple[int, int], type]]:
        """(input name, matching output name, (heads, head_dim), dtype) for each KV-cache input."""
        specs = []
        for name, arg in self._inputs.items():
            m = _PAST_RE.match(name)
            if not m:
                continue
            layer, kind = int(m.group(1)), m.group(2)
            shape = arg.shape  # [batch, heads, past_len, head_dim]
            if len(shape) != 4 or not isinstance(shape[1], int) or not isinstance(shape[3], int):
                raise EdgeDistillError(
                    f"{self.artifact.main_file}: KV-cache input {name} has shape {shape}; "
                    "expected [batch, heads, past_sequence_length, head_dim] with fixed heads/head_dim"
                )
            specs.append((layer, kind, name, f"present.{layer}.{kind}", (shape[1], shape[3]),
                          _NP_DTYPES.get(arg.type, np.float32)))
        specs.sort(key=lambda s: (s[0], s[1] != "key"))
        return [(name, out, hd, dt) for _, _, name, out, hd, dt in specs]

    def _feed(self, new_ids: list[int], past: dict[str, np.ndarray] | None, past_len: int) -> dict:
        total = past_len + len(new_ids)
        feed: dict[str, np.ndarray] = {"input_ids": np.asarray([new_ids], dtype=self._dtype("input_ids"))}
        if "attention_mask" in self._inputs:
            feed["attention_mask"] = np.ones((1, total), dtype=self._dtype("attention_mask"))
        if "position_ids" in self._inputs:
            feed["position_ids"] = np.arange(past_len, total, dtype=self._dtype("position_ids"))[None, :]
        if "use_cache_branch" in self._inputs:  # older optimum "merged" decoders
            feed["use_cache_branch"] = np.asarray([past_len > 0], dtype=np.bool_)
        for name, _out, (heads, head_dim), dtype in self._past_specs:
            feed[name] = past[name] if past is not None else np.zeros((1, heads, 0, head_dim), dtype=dtype)
        unknown = set(self._inputs) - set(feed)
        if unknown:
            raise EdgeDistillError(
                f"{self.artifact.main_file} has inputs this runtime does not know how to fill: {sorted(unknown)}"
            )
        return feed

    def _dtype(self, name: str):
        return _NP_DTYPES.get(self._inputs[name].type, np.int64)

    def _run(self, new_ids: list[int], past: dict | None, past_len: int) -> tuple[np.ndarray, dict]:
        outputs = self.session.run(self._output_names, self._feed(new_ids, past, past_len))
        by_name = dict(zip(self._output_names, outputs))
        logits = by_name["logits"][0]
        present = {name: by_name[out] for name, out, _hd, _dt in self._past_specs}
        return logits, present

    # -- Runtime interface ----------------------------------------------------------------------

    def tokenize(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._tokenizer(text, add_special_tokens=add_special_tokens).input_ids

    def detokenize(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids)

    @property
    def eos_token_ids(self) -> set[int]:
        return set(self._eos)

    def logits(self, ids: list[int]) -> np.ndarray:
        if not ids:
            raise EdgeDistillError("logits() needs at least one token id")
        logits, _ = self._run(list(ids), None, 0)
        return logits.astype(np.float32)

    def stream(self, ids: list[int], max_new_tokens: int) -> Iterator[int]:
        """One session run for the prompt (prefill), then exactly one per further token."""
        if not ids:
            raise EdgeDistillError("stream() needs at least one prompt token id")
        eos = self.eos_token_ids
        past, past_len, new = None, 0, list(ids)
        for _ in range(max_new_tokens):
            logits, past = self._run(new, past, past_len)
            past_len += len(new)
            tok = int(np.argmax(logits[-1]))
            yield tok
            if tok in eos:
                return
            new = [tok]

    def close(self) -> None:
        self.session = None


def _load_artifact_tokenizer(path: Path):
    """The tokenizer files shipped inside the artifact, loaded as a Python app would (AutoTokenizer)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(path))
    except (OSError, ValueError) as exc:
        raise EdgeDistillError(
            f"artifact {path} has no usable tokenizer files: {exc}",
            hint="re-export it with `edgedistill export`, which copies the tokenizer into the artifact",
        ) from None


def _eos_ids(path: Path, tokenizer) -> list[int]:
    """EOS ids from generation_config.json, then config.json, then the tokenizer."""
    for fname in ("generation_config.json", "config.json"):
        f = Path(path) / fname
        if f.exists():
            eos = json.loads(f.read_text()).get("eos_token_id")
            if eos is not None:
                return list(eos) if isinstance(eos, list) else [eos]
    return [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
