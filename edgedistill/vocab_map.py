"""The id map of a vocabulary-pruned student: student token id -> teacher token id.

``edgedistill prune --vocab`` keeps a subset of the teacher's tokens, renumbered 0..n-1 in the
teacher's order, and writes ``vocab_map.json`` into the student directory. Every stage that compares
the student with its teacher (distill's logit losses and top-k cache, eval's teacher agreement) reads it
with :func:`load_vocab_map` and translates ids through it. The file also records the teacher's
embedding rows and a hash of the teacher's vocabulary, so a map is never applied to another teacher.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edgedistill.atomic import atomic_write_json
from edgedistill.errors import ConfigError

MAP_FILE = "vocab_map.json"
FORMAT = 1


@dataclass(frozen=True)
class VocabMap:
    student_to_teacher: list[int]
    teacher_vocab_size: int  # the teacher's embedding rows (config.vocab_size)
    teacher_vocab_sha256: str  # see vocab_hash()

    def __post_init__(self):
        ids = self.student_to_teacher
        if not ids or min(ids) < 0 or max(ids) >= self.teacher_vocab_size:
            raise ConfigError(f"{MAP_FILE}: student_to_teacher must hold ids in 0..{self.teacher_vocab_size - 1}")
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{MAP_FILE}: student_to_teacher maps two student ids to one teacher id")

    def __len__(self) -> int:
        return len(self.student_to_teacher)

    def tensor(self, device=None):
        """The map as an int64 tensor: ``teacher_ids = m[student_ids]``."""
        import torch

        return torch.tensor(self.student_to_teacher, dtype=torch.long, device=device)

    def teacher_to_student(self) -> dict[int, int]:
        return {t: s for s, t in enumerate(self.student_to_teacher)}

    def fingerprint(self) -> str:
        """sha256 of the map itself (a top-k cache built through another map is rebuilt)."""
        return hashlib.sha256(json.dumps(self.student_to_teacher).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {"format": FORMAT, "teacher_vocab_size": self.teacher_vocab_size,
                "teacher_vocab_sha256": self.teacher_vocab_sha256, "student_to_teacher": self.student_to_teacher}

    def write(self, model_dir: str | Path) -> Path:
        return atomic_write_json(Path(model_dir) / MAP_FILE, self.to_dict())


def vocab_hash(tokenizer) -> str:
    """sha256 of a tokenizer's (token, id) pairs: stable across re-saves and file formatting."""
    pairs = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


def load_vocab_map(model_dir: str | Path) -> VocabMap | None:
    """The map in ``model_dir``, or None for a student with the teacher's full vocabulary."""
    path = Path(model_dir) / MAP_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format") != FORMAT:
            raise ConfigError(f"{path}: unknown format {data.get('format')!r} (this edgedistill reads {FORMAT})")
        return VocabMap([int(i) for i in data["student_to_teacher"]], int(data["teacher_vocab_size"]),
                        str(data["teacher_vocab_sha256"]))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a valid id map ({exc})",
                          hint="re-run `edgedistill prune --vocab` to rewrite it") from None


def check_map_teacher(vmap: VocabMap, t_tok, teacher_rows: int, student_dir: Path, teacher_dir: Path) -> None:
    """The map was made from this teacher: same vocabulary hash and the same embedding rows."""
    hint = "give the teacher the student was pruned from, or use --loss sft"
    if vocab_hash(t_tok) != vmap.teacher_vocab_sha256:
        raise ConfigError(f"{student_dir / MAP_FILE} was made from another teacher tokenizer than {teacher_dir}'s "
                          "(vocabulary hash differs)", hint=hint)
    if teacher_rows != vmap.teacher_vocab_size:
        raise ConfigError(f"{student_dir / MAP_FILE} expects a teacher with {vmap.teacher_vocab_size} embedding rows; "
                          f"{teacher_dir} has {teacher_rows}", hint=hint)


def copy_vocab_map(src_dir: str | Path, dst_dir: str | Path, vocab_size: int | None = None) -> bool:
    """Carry a pruned model's map along (export artifacts, import-gguf); only a map of ``vocab_size`` ids."""
    vmap = load_vocab_map(src_dir)
    if vmap is None or (vocab_size is not None and len(vmap) != vocab_size):
        return False
    vmap.write(dst_dir)
    return True


def artifact_vocab_map(path: str | Path) -> VocabMap | None:
    """The map of a model directory or export artifact (a directory, or the directory of a model file)."""
    p = Path(path)
    return load_vocab_map(p if p.is_dir() else p.parent)
