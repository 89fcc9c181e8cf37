"""A batched Hugging Face teacher in `generate` on CUDA. Marked `cuda`; skipped without a GPU.

EDGEDISTILL_CUDA_TESTS_DEVICE=cpu runs it on the CPU (checks the test itself, not CUDA).
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from edgedistill.atomic import read_jsonl_records
from edgedistill.generate import GenerateConfig, generate
from edgedistill.teachers import load_teacher
from edgedistill.teachers.base import SamplingConfig, TeacherConfig

DEVICE = os.environ.get("EDGEDISTILL_CUDA_TESTS_DEVICE", "cuda")
pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(DEVICE == "cuda" and not torch.cuda.is_available(), reason="needs CUDA")]

PROMPTS = ["What is 2 plus 3?", "Summarize: The meeting covered the budget, the schedule and the hiring plan.",
           "Hi", "Return a list of the words in the string, using sep as the delimiter string, please."]
GREEDY = SamplingConfig(temperature=0, max_new_tokens=8, top_logprobs=3)


def test_batched_hf_teacher_on_cuda_matches_one_by_one_and_cpu(tiny_llama):
    convs = [[{"role": "user", "content": p}] for p in PROMPTS]
    gpu = load_teacher(TeacherConfig(path=str(tiny_llama), batch_size=4, device=DEVICE))
    assert gpu.model.device.type == DEVICE
    batch = gpu.generate(convs, GREEDY)  # prompts of different lengths: left padding on the device
    alone = [gpu.generate([c], GREEDY)[0] for c in convs]
    assert [c.text for c in batch] == [c.text for c in alone]
    cpu = load_teacher(TeacherConfig(path=str(tiny_llama), batch_size=4, device="cpu")).generate(convs, GREEDY)
    for g, c in zip(batch, cpu):
        # fp32 on both devices: the first step's top log-probs agree to float rounding
        first_g = {e["id"]: e["logprob"] for e in g.top_logprobs[0]}
        first_c = {e["id"]: e["logprob"] for e in c.top_logprobs[0]}
        shared = set(first_g) & set(first_c)
        assert shared and all(abs(first_g[i] - first_c[i]) < 1e-3 for i in shared)


def test_generate_stage_with_a_cuda_teacher(tmp_path, tiny_llama):
    data = tmp_path / "p.jsonl"
    data.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS * 2))
    summary = generate(GenerateConfig(data=str(data), out=str(tmp_path / "o.jsonl"), task="conversation",
                                      teacher=TeacherConfig(path=str(tiny_llama), batch_size=4, device=DEVICE),
                                      sampling=SamplingConfig(max_new_tokens=6), progress=False))
    recs = read_jsonl_records(tmp_path / "o.jsonl")
    assert summary.generated == len(recs) == 8
    assert all(r["finish_reason"] in ("stop", "length") for r in recs)
