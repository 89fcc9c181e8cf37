"""Layer-pruned students (prune_layers) and the config checks of the distill stage."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from edgedistill.distill import DistillConfig
from edgedistill.distill.student import prune_layers
from edgedistill.errors import ConfigError


@pytest.mark.parametrize("arch", ["llama", "gemma3"])
def test_prune_layers_copies_chosen_blocks(tmp_path, tiny_model_factory, arch):
    teacher_dir = tiny_model_factory(arch, num_layers=6)
    keep = [0, 2, 5]
    out = prune_layers(teacher_dir, keep, tmp_path / "student")
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir)
    student = AutoModelForCausalLM.from_pretrained(out)
    assert student.config.num_hidden_layers == len(keep)
    t_sd, s_sd = teacher.state_dict(), student.state_dict()
    for new, old in enumerate(keep):
        for key in [k for k in s_sd if f"layers.{new}." in k]:
            assert torch.equal(s_sd[key], t_sd[key.replace(f"layers.{new}.", f"layers.{old}.")]), key
    for key in [k for k in s_sd if "layers." not in k]:
        assert torch.equal(s_sd[key], t_sd[key]), key
    if arch == "gemma3":  # per-layer lists follow their blocks
        t_types = AutoConfig.from_pretrained(teacher_dir).layer_types
        assert student.config.layer_types == [t_types[i] for i in keep]
        assert student.config.layer_types[-1] == "full_attention" != student.config.layer_types[0]
    assert (out / "tokenizer.json").exists() and (out / "generation_config.json").exists()


def test_prune_keeping_every_layer_reproduces_teacher_logits(tmp_path, tiny_model_factory):
    teacher_dir = tiny_model_factory("gemma3", num_layers=4)
    out = prune_layers(teacher_dir, [0, 1, 2, 3], tmp_path / "same")
    ids = torch.tensor([[1, 20, 30, 40, 50]])
    a = AutoModelForCausalLM.from_pretrained(teacher_dir).eval()(ids).logits
    b = AutoModelForCausalLM.from_pretrained(out).eval()(ids).logits
    assert torch.allclose(a, b, atol=1e-5)


def test_prune_layers_rejects_bad_indices(tmp_path, tiny_model_factory):
    teacher_dir = tiny_model_factory("llama")
    with pytest.raises(ConfigError, match="outside the teacher's layers 0..1"):
        prune_layers(teacher_dir, [0, 5], tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_config_validation_messages():
    base = dict(data="d.jsonl", out="o")
    with pytest.raises(ConfigError, match="valid: forward_kl, jsd, reverse_kl, sft"):
        DistillConfig(student="s", loss="kl", **base)
    with pytest.raises(ConfigError, match="alpha"):
        DistillConfig(student="s", alpha=1.5, **base)
    with pytest.raises(ConfigError, match="temperature"):
        DistillConfig(student="s", temperature=0, **base)
    with pytest.raises(ConfigError, match="--teacher"):
        DistillConfig(student="s", loss="forward_kl", **base)
    with pytest.raises(ConfigError, match="keep_layers"):
        DistillConfig(student="s", keep_layers=[0, 1], **base)
    with pytest.raises(ConfigError, match="needs --teacher"):
        DistillConfig(init_from_teacher=True, keep_layers=[0], **base)
    with pytest.raises(ConfigError, match="student"):
        DistillConfig(**base)
    with pytest.raises(ConfigError, match="top-k cache only serves logit losses"):
        DistillConfig(student="s", teacher="t", teacher_topk=8, **base)
    ok = DistillConfig(teacher="t", init_from_teacher=True, keep_layers="0, 3,6", loss="jsd", **base)
    assert ok.keep_layers == [0, 3, 6]
    # defaults as Azure's distillation documentation uses them
    d = DistillConfig(student="s", **base)
    assert (d.learning_rate, d.batch_size, d.epochs) == (2e-5, 2, 3)


def test_config_from_recipe_dict():
    from edgedistill.config import from_dict

    cfg = from_dict(DistillConfig, {"student": "s", "data": "d", "out": "o", "loss": "sft", "epochs": 1},
                    where="recipe.yaml [distill]")
    assert cfg.epochs == 1
    with pytest.raises(ConfigError, match="recipe.yaml \\[distill\\]: unknown key"):
        from_dict(DistillConfig, {"student": "s", "data": "d", "out": "o", "lr": 1}, where="recipe.yaml [distill]")
