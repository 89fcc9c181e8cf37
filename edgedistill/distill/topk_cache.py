"""The teacher's top-k log-probabilities, cached on disk so the student trains without the teacher.

A first pass runs the teacher over every example once and stores, for each response position, the k
most likely tokens (int32) and their log-probabilities at the run's temperature (fp16):

    <cache>/meta.json                 what the cache was built from (teacher, k, T, data fingerprint)
    <cache>/shard-00000.safetensors   logp [P, k] fp16, index [P, k] int32, offsets [S+1] int64

Each shard covers ``shard_size`` consecutive examples and is written atomically, so an interrupted
first pass resumes at the first missing shard. A cache whose meta.json does not match the run (other
teacher, k, temperature or tokenized data) is rebuilt.

Approximation (see docs/distill.md): KD is computed over k+1 bins — the teacher's top-k tokens and
one remainder bucket with all other mass. The student's remainder is exact; the teacher's tail shape
inside the bucket is lost. With k >= 50 the teacher's top-k usually holds > 95% of its mass.
Storage: 6 bytes x k per response token (k=64: 384 B/token, ~0.4 GB per million tokens).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from edgedistill.atomic import atomic_write_json
from edgedistill.distill.data import IGNORE, TokenizedExample, collate
from edgedistill.distill.losses import apply_head
from edgedistill.distill.student import decoder_of, head_of, softcap_of


# Examples per shard: the unit an interrupted first pass redoes, and of what TopKCache holds in memory
# (about 12 MB at k=64 and 500 response tokens an example). meta.json records it and the trainer expects
# this value, so a cache written with another size is rebuilt rather than misread.
SHARD_EXAMPLES = 64


def _shard_path(cache_dir: Path, i: int) -> Path:
    return cache_dir / f"shard-{i:05d}.safetensors"


class TopKCache:
    """Read access: ``cache.get(i)`` -> (logp [n_i, k] fp16, index [n_i, k] int32) of example i."""

    def __init__(self, cache_dir: str | os.PathLike):
        self.dir = Path(cache_dir)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.k = self.meta["k"]
        self.shard_size = self.meta["shard_size"]
        self._loaded: dict[int, dict[str, torch.Tensor]] = {}

    def get(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, j = divmod(i, self.shard_size)
        if s not in self._loaded:
            if len(self._loaded) > 8:  # keep a few shards in memory
                self._loaded.pop(next(iter(self._loaded)))
            self._loaded[s] = load_file(str(_shard_path(self.dir, s)))
        shard = self._loaded[s]
        a, b = int(shard["offsets"][j]), int(shard["offsets"][j + 1])
        return shard["logp"][a:b], shard["index"][a:b]

    def batch(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [self.get(i) for i in indices]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def cache_is_complete(cache_dir: Path, meta: dict) -> bool:
    """All shards of a cache built with ``meta``; a ``teacher`` of None matches any teacher (a run that
    reuses a cache without loading the teacher)."""
    meta_file = cache_dir / "meta.json"
    if not meta_file.exists():
        return False
    found = json.loads(meta_file.read_text())
    if meta.get("teacher") is None:
        found = {**found, "teacher": None}
    if found != meta:
        return False
    n_shards = -(-meta["n_examples"] // meta["shard_size"])
    return all(_shard_path(cache_dir, i).exists() for i in range(n_shards))


@torch.no_grad()
def build_topk_cache(
    teacher,
    examples: list[TokenizedExample],
    cache_dir: str | os.PathLike,
    k: int,
    temperature: float,
    n_vocab: int,
    meta_extra: dict,
    pad_id: int,
    batch_size: int = 4,
    shard_size: int = SHARD_EXAMPLES,
    chunk: int = 256,
    device: str | torch.device = "cpu",
    autocast_dtype: torch.dtype | None = None,
    progress: bool = True,
) -> TopKCache:
    """Run ``teacher`` over ``examples`` and store its top-k log-probs per response position."""
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    k = min(k, n_vocab)
    meta = {"k": k, "temperature": temperature, "n_vocab": n_vocab, "n_examples": len(examples),
            "shard_size": shard_size, **meta_extra}
    meta_file = cache_dir / "meta.json"
    if meta_file.exists() and json.loads(meta_file.read_text()) != meta:
        # built for other data / teacher / k: start over, deleting only the cache's own files
        # (--topk-cache-dir may name a directory that holds other things too)
        for f in [*cache_dir.glob("shard-*.safetensors"), meta_file]:
            f.unlink()
    cache_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(meta_file, meta)

    decoder, head, softcap = decoder_of(teacher), head_of(teacher), softcap_of(teacher)
    n_shards = -(-len(examples) // shard_size)
    todo = [s for s in range(n_shards) if not _shard_path(cache_dir, s).exists()]
    n_todo = sum(len(examples[s * shard_size:(s + 1) * shard_size]) for s in todo)
    bar = tqdm(total=n_todo, desc="teacher top-k", unit="ex", disable=not progress or not todo)
    for s in todo:
        shard_ex = examples[s * shard_size:(s + 1) * shard_size]
        logps, idxs, counts = [], [], []
        for b in range(0, len(shard_ex), batch_size):
            batch = collate(shard_ex[b:b + batch_size], pad_id)
            with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype,
                                enabled=autocast_dtype is not None):
                hidden = decoder(input_ids=batch["input_ids"].to(device),
                                 attention_mask=batch["attention_mask"].to(device)).last_hidden_state
            mask = (batch["labels"][:, 1:] != IGNORE).to(device)
            h = hidden[:, :-1][mask]
            for c in range(0, h.shape[0], chunk):
                logp = F.log_softmax(apply_head(head, h[c:c + chunk], n_vocab, softcap) / temperature, -1)
                v, i = logp.topk(k, dim=-1)
                logps.append(v.to(torch.float16).cpu())
                idxs.append(i.to(torch.int32).cpu())
            counts.extend(int(m.sum()) for m in mask)
            bar.update(len(shard_ex[b:b + batch_size]))
        offsets = torch.zeros(len(counts) + 1, dtype=torch.int64)
        offsets[1:] = torch.tensor(counts).cumsum(0)
        tmp = cache_dir / f".shard-{s:05d}.tmp"
        save_file({"logp": torch.cat(logps).contiguous(), "index": torch.cat(idxs).contiguous(),
                   "offsets": offsets}, str(tmp))
        os.replace(tmp, _shard_path(cache_dir, s))
    bar.close()
    return TopKCache(cache_dir)
