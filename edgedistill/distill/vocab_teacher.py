"""Logit KD for a vocabulary-pruned student: the teacher seen through the student's id map.

The student's tokens are a subset of the teacher's (``vocab_map.json``, student id -> teacher id).
The teacher is fed its own ids (``map[student ids]``) and its LM-head rows are gathered to the kept
ids, so its logits come out over the student's vocabulary, in the student's order; the softmax of the
losses then renormalises them over the kept tokens. Everything downstream (the four losses, the
top-k cache) sees a teacher with the student's vocabulary and needs no other change.

Renormalising over the kept tokens (rather than putting the dropped tokens' mass in a bucket) is the
right target: the student cannot produce a dropped token at all, and on the calibration data the
teacher puts little mass there (``prune.json`` reports the coverage).
"""

from __future__ import annotations

from pathlib import Path

import torch

from edgedistill.errors import ConfigError
from edgedistill.vocab_map import MAP_FILE, VocabMap, check_map_teacher


class _MappedDecoder(torch.nn.Module):
    def __init__(self, decoder, student_to_teacher: torch.Tensor):
        super().__init__()
        self.decoder = decoder
        self.register_buffer("m", student_to_teacher, persistent=False)

    def forward(self, input_ids, **kwargs):
        return self.decoder(input_ids=self.m[input_ids], **kwargs)


class MappedTeacher(torch.nn.Module):
    """A teacher whose inputs and logits are in the student's (pruned) vocabulary."""

    def __init__(self, teacher, vmap: VocabMap):
        super().__init__()
        from edgedistill.distill.student import decoder_of, head_of

        m = vmap.tensor(device=next(teacher.parameters()).device)
        self.config = teacher.config  # softcap_of() reads final_logit_softcapping here
        self._decoder = _MappedDecoder(decoder_of(teacher), m)
        head = head_of(teacher)
        self._head = torch.nn.Linear(head.in_features, len(vmap), bias=getattr(head, "bias", None) is not None,
                                     device=head.weight.device, dtype=head.weight.dtype)
        with torch.no_grad():
            self._head.weight.copy_(head.weight[m])
            if self._head.bias is not None:
                self._head.bias.copy_(head.bias[m])
        self.requires_grad_(False)

    def get_decoder(self):
        return self._decoder

    def get_output_embeddings(self):
        return self._head


def teacher_rows(teacher_dir: Path) -> int:
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(teacher_dir)
    return (getattr(cfg, "text_config", None) or cfg).vocab_size


def check_mapped_vocab(student_dir: Path, teacher_dir: Path, s_tok, t_tok, vmap: VocabMap) -> int:
    """Checks for a pruned student (instead of check_shared_vocab); returns the logit rows compared."""
    check_map_teacher(vmap, t_tok, teacher_rows(teacher_dir), student_dir, teacher_dir)
    if len(s_tok) != len(vmap):
        raise ConfigError(f"{student_dir}: the tokenizer has {len(s_tok)} tokens but {MAP_FILE} maps {len(vmap)}",
                          hint="re-run `edgedistill prune --vocab`")
    for s_id, t_id in enumerate(vmap.student_to_teacher):
        # spot check: the same token text on both sides (every 97th id, and all added tokens)
        if s_id % 97 == 0 or s_id in s_tok.added_tokens_decoder:
            s_text, t_text = s_tok.convert_ids_to_tokens(s_id), t_tok.convert_ids_to_tokens(t_id)
            if s_text != t_text:
                raise ConfigError(f"{student_dir / MAP_FILE}: student id {s_id} is {s_text!r} but teacher id {t_id} "
                                  f"is {t_text!r}", hint="re-run `edgedistill prune --vocab` from this teacher")
    return len(vmap)
