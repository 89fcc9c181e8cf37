"""Teachers: a local Hugging Face model, a GGUF file through llama.cpp, or an OpenAI-compatible server."""

from edgedistill.teachers.base import (
    FINISH_REASONS,
    TEACHERS,
    Completion,
    SamplingConfig,
    Teacher,
    TeacherConfig,
    load_teacher,
    teacher_id,
)

__all__ = [
    "FINISH_REASONS",
    "TEACHERS",
    "Completion",
    "SamplingConfig",
    "Teacher",
    "TeacherConfig",
    "load_teacher",
    "teacher_id",
]
