"""A local Hugging Face causal LM as teacher: batched ``generate`` with left padding.

Prompts are rendered with the tokenizer's chat template when it has one, else as plain text (the
turns' contents separated by blank lines), which suits base models.
"""

from __future__ import annotations

from edgedistill.errors import EdgeDistillError
from edgedistill.stopping import cut_at_stop, stop_token_index, stopping_criteria
from edgedistill.tasks import render_plain
from edgedistill.teachers.base import Completion, SamplingConfig, Teacher, TeacherConfig, teacher_id


class HFTeacher(Teacher):
    def __init__(self, config: TeacherConfig):
        import torch

        from edgedistill.models import load_causal_lm

        self.config = config
        self.id = teacher_id(config)
        self.preferred_batch = config.batch_size
        self.model, self.tok = load_causal_lm(config.path, what="teacher", device=config.device)
        self.tok.padding_side = "left"
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        eos = self.model.generation_config.eos_token_id
        eos = eos if eos is not None else self.tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, (list, tuple)) else [eos])
        self._seeded = False
        self._torch = torch

    def render(self, conversation: list[dict], plain_cue: str = "") -> str:
        if getattr(self.tok, "chat_template", None):
            try:
                return self.tok.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            except Exception as exc:  # jinja raises e.g. for roles a template does not support
                raise EdgeDistillError(f"the teacher's chat template rejected a conversation: {exc}") from None
        return render_plain(conversation, plain_cue)

    def generate(self, conversations: list[list[dict]], sampling: SamplingConfig) -> list[Completion]:
        torch = self._torch
        if not self._seeded:  # one seed per run: reproducible for the same inputs and batch size
            torch.manual_seed(sampling.seed)
            self._seeded = True
        texts = [self.render(c, sampling.plain_cue or "") for c in conversations]
        # A template that writes the BOS token itself must not get a second one from the tokenizer.
        bos = self.tok.bos_token
        add_special = not (bos and all(t.startswith(bos) for t in texts))
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=add_special)
        enc = {k: enc[k].to(self.model.device) for k in ("input_ids", "attention_mask")}
        prompt_len = enc["input_ids"].shape[1]
        if self.max_positions and prompt_len + sampling.max_new_tokens > self.max_positions:
            # Too long for the model. Padding makes the whole batch as long as its longest prompt, so
            # retry one by one: only the prompts that are too long by themselves become error records.
            if len(conversations) > 1:
                return [self.generate([c], sampling)[0] for c in conversations]
            return [Completion("", "error", error=f"prompt of {prompt_len} tokens + max_new_tokens "
                               f"{sampling.max_new_tokens} exceeds the teacher's {self.max_positions} positions")]
        kwargs = dict(
            stopping_criteria=stopping_criteria(self.tok, sampling.stop, prompt_len),
            max_new_tokens=sampling.max_new_tokens,
            pad_token_id=self.tok.pad_token_id,
            eos_token_id=sorted(self.eos_ids),
            return_dict_in_generate=True,
            output_logits=sampling.top_logprobs > 0,
        )
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(**enc, **kwargs)
        new_tokens = out.sequences[:, prompt_len:].tolist()
        results = []
        for row, ids in enumerate(new_tokens):
            stop_at = next((i for i, t in enumerate(ids) if t in self.eos_ids), None)
            kept = ids if stop_at is None else ids[:stop_at]
            # A stop string ends the row at the token that completes it (the rest is padding).
            at = stop_token_index(kept, self.tok.decode, sampling.stop)
            if at is not None:
                kept, stop_at = kept[: at + 1], at
            finish = "stop" if stop_at is not None or len(ids) < sampling.max_new_tokens else "length"
            text, _ = cut_at_stop(self.tok.decode(kept, skip_special_tokens=True), sampling.stop)
            top = None
            if sampling.top_logprobs > 0:
                # the EOS step teaches stopping; a stop string's last token is in ``kept`` already
                n_steps = len(kept) + (1 if stop_at is not None and at is None else 0)
                top = self._top_logprobs(out.logits, row, n_steps, sampling.top_logprobs)
            results.append(Completion(text=text, finish_reason=finish, top_logprobs=top))
        return results

    def _top_logprobs(self, step_logits, row: int, n_steps: int, k: int) -> list[list[dict]]:
        torch = self._torch
        out = []
        for step in range(n_steps):
            logp = torch.log_softmax(step_logits[step][row].float(), dim=-1)
            values, ids = logp.topk(k)
            out.append(
                [
                    {"token": self.tok.decode([i]), "id": i, "logprob": round(v, 6)}
                    for v, i in zip(values.tolist(), ids.tolist())
                ]
            )
        return out

    def close(self) -> None:
        self.model = None
