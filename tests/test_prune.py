"""`edgedistill prune`: depth and width pruning of every architecture, on tiny random models.

Every architecture x {depth, width} x {tied, untied head} is pruned through the library entry point,
run forward, exported to GGUF f32 and verified by the exporter's own verification (the rarer head
variants of qwen2/qwen3/phi3 are ``slow``). Exactness checks:
pruning only dead MLP channels or dead key/value groups (their activation is exactly zero) leaves the
logits unchanged, which fails if any weight is sliced on the wrong axis or in the wrong order.
"""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from edgedistill.errors import ConfigError
from edgedistill.prune import PruneConfig, prune
from edgedistill.prune.width import choose_heads
from edgedistill.testing.tiny import ARCHITECTURES, CORPUS, build_tiny_model

TEXTS = [line for line in CORPUS if "\n" not in line]


@pytest.fixture(scope="module")
def calib(tmp_path_factory):
    """generate-style records: the prompt as messages plus a teacher answer."""
    path = tmp_path_factory.mktemp("calib") / "teacher.jsonl"
    with path.open("w") as fh:
        for i, text in enumerate(TEXTS):
            rec = {"id": str(i), "messages": [{"role": "user", "content": f"Repeat: {text}"}], "response": text}
            fh.write(json.dumps(rec) + "\n")
    return path


def _teacher(tmp_path_factory, tiny_tokenizer, arch: str, tied: bool, layers: int = 4):
    out = tmp_path_factory.mktemp(f"teacher-{arch}-{'tied' if tied else 'untied'}")
    build_tiny_model(arch, out, tokenizer=tiny_tokenizer, num_layers=layers)
    model = AutoModelForCausalLM.from_pretrained(out)
    if bool(model.config.tie_word_embeddings) != tied:  # the builder's default is the real models' choice
        model.config.tie_word_embeddings = tied
        if tied:
            model.tie_weights()
        else:
            model.lm_head.weight = torch.nn.Parameter(model.get_input_embeddings().weight.detach().clone() * 0.5)
        model.save_pretrained(out, safe_serialization=True)
    return out


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, tiny_tokenizer):
    cache = {}

    def get(arch, tied):
        if (arch, tied) not in cache:
            cache[arch, tied] = _teacher(tmp_path_factory, tiny_tokenizer, arch, tied)
        return cache[arch, tied]

    return get


def _logits(model_dir, ids):
    m = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return m(torch.tensor([ids])).logits


def _export_and_verify(model_dir, tmp_path):
    from edgedistill.export.formats import FORMATS, ExportOptions
    from edgedistill.export.verify import build_reference, verify_artifact

    fmt = FORMATS.get("gguf")
    art = tmp_path / "gguf-f32"
    art.mkdir()
    fmt.write(model_dir, art, "f32", ExportOptions())
    verdict = verify_artifact(art, fmt.quants["f32"], build_reference(model_dir, new_tokens=8))
    assert verdict.passed, (verdict.failures, verdict.figures.get("kl_mean"), verdict.figures.get("greedy_match"))


WIDTH = dict(hidden_size=32, intermediate_size=64, num_attention_heads=2)


def _cases():
    """Every architecture x {depth, width} with its usual head (Gemma tied, the others untied), plus the
    other head for llama and gemma3 in width mode (which slices the head), by default; the remaining head
    variants are ``slow`` (depth pruning never touches the head, so its other-head case repeats the usual one)."""
    for arch in sorted(ARCHITECTURES):
        for mode in ("depth", "width"):
            for tied in (False, True):
                usual = tied == (arch == "gemma3")
                marks = () if usual or (arch in ("llama", "gemma3") and mode == "width") else pytest.mark.slow
                yield pytest.param(arch, mode, tied, id=f"{arch}-{mode}-{'tied' if tied else 'untied'}", marks=marks)


@pytest.mark.parametrize("arch,mode,tied", list(_cases()))
def test_prune_forward_and_export(arch, mode, tied, teachers, calib, tmp_path):
    teacher = teachers(arch, tied)
    shape = {"num_layers": 2} if mode == "depth" else WIDTH
    report = prune(PruneConfig(teacher=str(teacher), data=str(calib), out=str(tmp_path / "student"), **shape),
                   log=lambda s: None)
    out = tmp_path / "student"
    saved = json.loads((out / "prune.json").read_text())
    assert saved["layers_kept"] == report.layers_kept
    cfg = AutoConfig.from_pretrained(out)
    t_cfg = AutoConfig.from_pretrained(teacher)
    assert bool(cfg.tie_word_embeddings) == tied
    if mode == "depth":
        assert cfg.num_hidden_layers == 2 and len(report.layers_kept) == 2
        assert len(report.layer_scores) == 4 and all(s > 0 for s in report.layer_scores)
        assert report.layers_kept == sorted(sorted(range(4), key=lambda i: -report.layer_scores[i])[:2])
        assert cfg.hidden_size == t_cfg.hidden_size
    else:
        assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == (32, 64, 2)
        assert cfg.head_dim == t_cfg.hidden_size // t_cfg.num_attention_heads  # head_dim is kept
        assert cfg.num_hidden_layers == 4
        assert len(report.heads_kept) == 4 and all(len(h["query_heads"]) == 2 for h in report.heads_kept)
    before, after = report.parameters_before, report.parameters_after
    assert after["total"] < before["total"]
    assert after["embedding"] + after["head"] + after["attention"] + after["mlp"] + after["norms"] == after["total"]
    assert (after["head"] == 0) == tied
    assert report.size_bytes_after["q4_k_m"] < report.size_bytes_after["q8_0"] < report.size_bytes_after["f16"]
    assert report.perplexity_before > 1 and report.perplexity_after > 1
    logits = _logits(out, [1, 20, 30, 40, 50])
    assert logits.shape[-1] == cfg.vocab_size and torch.isfinite(logits).all()
    _export_and_verify(out, tmp_path)


def _edit_weights(teacher, tmp_path, edit):
    """A copy of ``teacher`` with ``edit(state_dict, config)`` applied."""
    model = AutoModelForCausalLM.from_pretrained(teacher)
    with torch.no_grad():
        edit(dict(model.named_parameters()), model.config)
    out = tmp_path / "edited"
    model.save_pretrained(out, safe_serialization=True)
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(teacher).save_pretrained(out)
    return out


def _kill_mlp_channels(params, config):
    """Zero the up projection of the odd MLP channels: their activation (and so their score) is 0."""
    inter = config.intermediate_size
    for name, p in params.items():
        if name.endswith("mlp.up_proj.weight"):
            p[1::2] = 0
        elif name.endswith("mlp.gate_up_proj.weight"):  # phi3: [gate; up]
            p[inter + 1::2] = 0


def _kill_kv_groups(params, config):
    """Zero the value rows of the second half of the key/value heads: every query head reading them
    outputs 0."""
    d = config.hidden_size // config.num_attention_heads
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    for name, p in params.items():
        if name.endswith("v_proj.weight") or name.endswith("v_proj.bias"):
            p[(kv // 2) * d:] = 0
        elif name.endswith("qkv_proj.weight"):  # phi3: [q; k; v]
            p[(heads + kv) * d + (kv // 2) * d:] = 0


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_removing_dead_channels_and_heads_keeps_logits(arch, teachers, calib, tmp_path):
    teacher = teachers(arch, arch == "gemma3")
    ids = [1, 20, 30, 40, 50, 60]
    dead = _edit_weights(teacher, tmp_path, lambda p, c: (_kill_mlp_channels(p, c), _kill_kv_groups(p, c)))
    cfg = AutoConfig.from_pretrained(dead)
    heads, kv = cfg.num_attention_heads, cfg.num_key_value_heads
    report = prune(PruneConfig(teacher=str(dead), data=str(calib), out=str(tmp_path / "s"),
                               intermediate_size=cfg.intermediate_size // 2,
                               num_key_value_heads=kv // 2, num_attention_heads=heads // 2),
                   log=lambda s: None)
    assert all(h["kv_heads"] == list(range(kv // 2)) for h in report.heads_kept)
    torch.testing.assert_close(_logits(tmp_path / "s", ids), _logits(dead, ids), atol=1e-4, rtol=1e-4)
    assert report.perplexity_after == pytest.approx(report.perplexity_before, rel=1e-4)


def test_gemma_scaled_embedding_keeps_the_residual_stream(teachers, calib, tmp_path):
    """Gemma multiplies embeddings by sqrt(hidden): the kept channels enter the blocks as before."""
    teacher = teachers("gemma3", True)
    prune(PruneConfig(teacher=str(teacher), data=str(calib), out=str(tmp_path / "s"), hidden_size=32),
          log=lambda s: None)
    t = AutoModelForCausalLM.from_pretrained(teacher)
    s = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    ids = torch.tensor([[1, 20, 30]])
    t_emb, s_emb = t.get_input_embeddings()(ids), s.get_input_embeddings()(ids)
    kept = [int(i) for i in range(64) if any(torch.allclose(s_emb[..., j], t_emb[..., i]) for j in range(32))]
    assert len(kept) == 32, "every student channel equals one teacher channel, scale included"
    # tied head: norm weight (1 + w) was divided by the same factor, so the head's output scale is kept
    c = (64 / 32) ** 0.5
    t_norm, s_norm = t.model.norm.weight[kept], s.model.norm.weight
    torch.testing.assert_close(1 + s_norm, (1 + t_norm) / c)


def test_choose_heads_keeps_whole_groups_and_the_strongest_heads():
    scores = torch.tensor([0.1, 0.9, 0.2, 0.3, 5.0, 0.0, 0.4, 0.5])  # 8 heads, 4 groups of 2
    q, kv = choose_heads(scores, kv=4, new_heads=2, new_kv=2)
    assert kv.tolist() == [0, 2]  # group sums 1.0, 0.5, 5.0, 0.9
    assert q.tolist() == [1, 4]  # the stronger head of each kept group, in group order
    q, kv = choose_heads(scores, kv=4, new_heads=8, new_kv=4)
    assert q.tolist() == list(range(8)) and kv.tolist() == [0, 1, 2, 3]


@pytest.mark.parametrize("options,message", [
    ({"num_layers": 9}, "more than the teacher's 4 layers"),
    ({"keep_layers": [0, 7]}, "outside the teacher's layers 0..3"),
    ({"hidden_size": 30}, "not divisible by the 4 attention heads"),
    ({"hidden_size": 128}, "larger than the teacher's 64"),
    ({"num_attention_heads": 3}, "cannot be split into 2 key/value groups"),
    ({"num_attention_heads": 4, "num_key_value_heads": 1}, "need 4 per group"),
])
def test_bad_shapes_are_clear_errors(options, message, teachers, calib, tmp_path):
    with pytest.raises(ConfigError, match=message):
        prune(PruneConfig(teacher=str(teachers("llama", False)), data=str(calib), out=str(tmp_path / "s"),
                          **options), log=lambda s: None)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("options,message", [
    ({"keep_layers": [0, 1], "num_layers": 2}, "either keep_layers or num_layers"),
    ({"vocab_size": 100}, "only meaningful with vocab=data"),
    ({"vocab": "tiny"}, "not one of full, data"),
    ({"num_attention_heads": 4, "num_key_value_heads": 3}, "does not divide"),
    ({"num_layers": 0}, "positive integer"),
])
def test_bad_settings_fail_before_loading(options, message):
    with pytest.raises(ConfigError, match=message):
        PruneConfig(teacher="t", data="d", out="o", **options)


def test_cli_prints_one_error_line(teachers, calib, tmp_path):
    from click.testing import CliRunner

    from edgedistill.cli import main

    res = CliRunner().invoke(main, ["prune", "--teacher", str(teachers("llama", False)), "--data", str(calib),
                                    "--out", str(tmp_path / "s"), "--num-layers", "12"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert "error: invalid setting 'num_layers': 12 is more than the teacher's 4 layers" in res.output


def test_cli_depth_prune_writes_report(teachers, calib, tmp_path):
    from click.testing import CliRunner

    from edgedistill.cli import main

    res = CliRunner().invoke(main, ["prune", "--teacher", str(teachers("qwen3", False)), "--data", str(calib),
                                    "--out", str(tmp_path / "s"), "--keep-layers", "0,3",
                                    "--intermediate-size", "96"])
    assert res.exit_code == 0, res.output
    assert "layers kept: [0, 3]" in res.output
    cfg = AutoConfig.from_pretrained(tmp_path / "s")
    assert (cfg.num_hidden_layers, cfg.intermediate_size) == (2, 96)

    # an earlier prune output is replaced only with --overwrite; a user's directory never
    args = ["prune", "--teacher", str(teachers("qwen3", False)), "--data", str(calib), "--keep-layers", "1"]
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "s")])
    assert res.exit_code != 0 and "error: --out" in res.output and "--overwrite" in res.output, res.output
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "s"), "--overwrite"])
    assert res.exit_code == 0, res.output
    assert AutoConfig.from_pretrained(tmp_path / "s").num_hidden_layers == 1
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    res = CliRunner().invoke(main, args + ["--out", str(tmp_path / "mine"), "--overwrite"])
    assert res.exit_code != 0 and "is not an earlier edgedistill output" in res.output, res.output
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_perplexity_scores_only_the_answer_positions(tiny_llama):
    """perplexity() (logits only where scored) equals the NLL of the full logits at those positions."""
    from edgedistill.prune.importance import CalibSequence, perplexity

    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    ids = [1, 20, 30, 40, 50, 60, 70]
    scored = [False, False, False, False, True, True, True]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0], dim=-1)
    want = -sum(float(logp[t, ids[t + 1]]) for t in (3, 4, 5)) / 3
    got = perplexity(model, [CalibSequence(ids, scored)])
    assert got == pytest.approx(float(torch.exp(torch.tensor(want))), rel=1e-5)


def test_vocab_data_calls_the_vocabulary_step_last(teachers, calib, tmp_path, monkeypatch):
    """vocab="data": the depth/width-pruned student goes through prune_vocabulary (edgedistill.prune.vocab,
    stood in for here) with the rendered calibration texts, and its report lands in prune.json."""
    import shutil
    import sys
    import types
    from dataclasses import asdict, dataclass

    calls = []

    @dataclass
    class FakeReport:
        kept: int

        def to_dict(self):
            return asdict(self)

    def fake_prune_vocabulary(model_dir, texts, out_dir, *, vocab_size=None):
        calls.append((AutoConfig.from_pretrained(model_dir).num_hidden_layers, list(texts), vocab_size))
        shutil.copytree(model_dir, out_dir, dirs_exist_ok=True)
        return FakeReport(kept=123)

    monkeypatch.setitem(sys.modules, "edgedistill.prune.vocab",
                        types.SimpleNamespace(prune_vocabulary=fake_prune_vocabulary))
    report = prune(PruneConfig(teacher=str(teachers("llama", False)), data=str(calib), out=str(tmp_path / "s"),
                               num_layers=2, vocab="data", vocab_size=300), log=lambda s: None)
    [(layers, texts, size)] = calls
    assert layers == 2 and size == 300  # called on the already depth-pruned student
    assert len(texts) == len(TEXTS) and texts[0].startswith("<|user|>\nRepeat: ") and texts[0].endswith(TEXTS[0])
    assert report.vocab == {"kept": 123}
    assert json.loads((tmp_path / "s" / "prune.json").read_text())["vocab"] == {"kept": 123}
    assert not list(tmp_path.glob(".s.*")), "no staging directory is left behind"


def test_out_replaces_an_earlier_prune_output_and_refuses_other_directories(teachers, calib, tmp_path):
    from edgedistill.errors import EdgeDistillError

    cfg = dict(teacher=str(teachers("llama", False)), data=str(calib), out=str(tmp_path / "s"))
    prune(PruneConfig(**cfg, num_layers=3), log=lambda s: None)
    prune(PruneConfig(**cfg, num_layers=2, overwrite=True), log=lambda s: None)  # its own output: replaced
    assert AutoConfig.from_pretrained(tmp_path / "s").num_hidden_layers == 2
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(EdgeDistillError, match="not empty"):
        prune(PruneConfig(**{**cfg, "out": str(mine)}, num_layers=2, overwrite=True), log=lambda s: None)
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]
