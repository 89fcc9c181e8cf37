"""Every task type: its prompt template, answer extraction and metadata."""

from __future__ import annotations

import pytest

from edgedistill.errors import EdgeDistillError
from edgedistill.tasks import NLI_LABELS, TASKS

# task -> (record, text the template must contain, response, extracted answer, reference, normalised ref)
CASES = {
    "conversation": ({"prompt": "Tell me a joke."}, "Tell me a joke.", "  Why did... \n", "Why did...", None, None),
    "qa": ({"prompt": "Capital of France?"}, "Question: Capital of France?", "It is Paris.\nAnswer: Paris.",
           "paris", "Paris", "paris"),
    "nli": ({"prompt": "Premise: A.\nHypothesis: B."}, "Premise: A.\nHypothesis: B.", "B follows.\nLabel: Entailment",
            "entailment", "2", "contradiction"),
    "math": ({"prompt": "What is 6 times 7?"}, "Problem: What is 6 times 7?", "6*7 = 42\n#### 42", "42",
             "Natalia sold 48/2 = 24 clips.\n#### 1,024", "1024"),
    "summarization": ({"prompt": "Long text here."}, "Long text here.", "A summary.", "A summary.",
                      "The ref.", "The ref."),
}


def test_every_registered_task_has_a_case():
    assert sorted(CASES) == TASKS.names()


@pytest.mark.parametrize("name", sorted(CASES))
def test_task_template_and_extraction(name):
    task = TASKS.get(name)
    record, must_contain, response, answer, ref, norm_ref = CASES[name]
    messages = task.build_messages(record)
    assert messages[-1]["role"] == "user" and must_contain in messages[-1]["content"]
    assert task.extract_answer(response) == answer
    assert task.normalize_reference(ref) == norm_ref
    assert task.extract_answer("") is None and task.extract_answer("   ") is None
    assert task.metric in ("accuracy", "rouge_l")
    assert task.answer_format


@pytest.mark.parametrize("name", sorted(CASES))
def test_chat_records_are_used_as_is(name):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    out = TASKS.get(name).build_messages({"messages": msgs})
    assert out == msgs and out is not msgs


def test_metrics_and_required_fields():
    assert {n: TASKS.get(n).metric for n in TASKS} == {
        "conversation": "rouge_l", "qa": "accuracy", "nli": "accuracy", "math": "accuracy",
        "summarization": "rouge_l",
    }
    for name in ("nli", "math", "qa"):
        assert "reference" in TASKS.get(name).required_fields
    assert TASKS.get("nli").labels == NLI_LABELS == ("entailment", "neutral", "contradiction")


@pytest.mark.parametrize(
    "text,expected",
    [
        ("so 3 + 4 = 7\n#### 7", "7"),
        ("The final answer is 42.", "42"),
        ("The final answer is $1,250.00", "1250"),
        ("therefore \\boxed{-3}", "-3"),
        ("Answer: 12.5", "12.5"),
        ("first 3 then 5 then 8", "8"),
        ("#### 10 but wait #### 11", "11"),
        ("no numbers at all", None),
    ],
)
def test_math_extraction(text, expected):
    assert TASKS.get("math").extract_answer(text) == expected


@pytest.mark.parametrize(
    "text,expected",
    [
        ("Label: neutral", "neutral"),
        ("The premise entails it... Label: contradiction", "contradiction"),
        ("This is a contradiction.", "contradiction"),
        ("Entailment", "entailment"),
        ("**Answer:** Neutral", "neutral"),
        ("I cannot tell", None),
    ],
)
def test_nli_extraction(text, expected):
    assert TASKS.get("nli").extract_answer(text) == expected


@pytest.mark.parametrize("ref,expected", [(0, "entailment"), ("1", "neutral"), (2, "contradiction"),
                                          ("Contradiction", "contradiction")])
def test_nli_reference_normalisation(ref, expected):
    assert TASKS.get("nli").normalize_reference(ref) == expected


def test_unknown_task_lists_valid_names():
    with pytest.raises(EdgeDistillError, match="unknown task 'chat'; valid: conversation, math, nli, qa, summarization"):
        TASKS.get("chat")


def test_record_plain_cue_reads_what_generate_recorded():
    from edgedistill.tasks import record_plain_cue

    assert record_plain_cue({"sampling": {"plain_cue": "Summary: It"}}) == "Summary: It"
    assert record_plain_cue({"sampling": {"plain_cue": ""}}, default="X") == ""  # recorded as none: none
    assert record_plain_cue({"prompt": "p"}, default="X") == "X"  # never generated: the caller's default
    assert record_plain_cue({"sampling": "odd"}) == ""


def test_only_summarization_has_a_default_cue_and_configs_take_it():
    from edgedistill.errors import ConfigError
    from edgedistill.eval.evaluate import EvalConfig
    from edgedistill.teachers import SamplingConfig

    assert {n for n in TASKS.names() if TASKS.get(n).plain_cue} == {"summarization"}
    cfg = EvalConfig(models=["m"], data="d.jsonl", task="summarization")
    assert cfg.plain_cue == TASKS.get("summarization").plain_cue
    assert EvalConfig(models=["m"], data="d.jsonl", task="summarization", plain_cue="").plain_cue == ""
    with pytest.raises(ConfigError, match="plain_cue"):
        SamplingConfig(plain_cue=3)
