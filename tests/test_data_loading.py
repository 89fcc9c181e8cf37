"""edgedistill.data.load_records: every input format, normalisation rules and bad input."""

from __future__ import annotations

import json

import pytest

from edgedistill.data import load_records
from edgedistill.errors import DataError

ROWS = [
    {"prompt": "What is 2+2?", "reference": "4"},
    {"prompt": "Name a colour.", "reference": "red"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_jsonl_plain_records(tmp_path):
    recs = load_records(write_jsonl(tmp_path / "p.jsonl", ROWS))
    assert [r["prompt"] for r in recs] == ["What is 2+2?", "Name a colour."]
    assert [r["reference"] for r in recs] == ["4", "red"]
    assert all(len(r["id"]) == 16 for r in recs)
    assert len({r["id"] for r in recs}) == 2


def test_ids_are_stable_and_given_ids_win(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS + [{"id": 7, "prompt": "x"}])
    first, second = load_records(path), load_records(path)
    assert [r["id"] for r in first] == [r["id"] for r in second]
    assert first[2]["id"] == "7"


def test_repeated_prompts_get_distinct_ids(tmp_path):
    recs = load_records(write_jsonl(tmp_path / "p.jsonl", [{"prompt": "same"}] * 3))
    ids = [r["id"] for r in recs]
    assert len(set(ids)) == 3
    assert ids[1] == ids[0] + "-2" and ids[2] == ids[0] + "-3"


def test_duplicate_given_ids_are_an_error(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"id": "a", "prompt": "x"}, {"id": "a", "prompt": "y"}])
    with pytest.raises(DataError, match=r"p.jsonl:2: id 'a' was already used at .*p.jsonl:1"):
        load_records(path)


def test_chat_records_trailing_assistant_becomes_reference(tmp_path):
    rows = [{"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
    ]}]
    [rec] = load_records(write_jsonl(tmp_path / "c.jsonl", rows))
    assert rec["messages"] == rows[0]["messages"][:2]
    assert rec["reference"] == "Hello!"
    assert "prompt" not in rec


def test_chat_record_bad_role(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", [{"messages": [{"role": "robot", "content": "x"}]}])
    with pytest.raises(DataError, match=r"c.jsonl:1: messages\[0\] has role 'robot'; valid: system, user, assistant"):
        load_records(path)


def test_prompt_field_and_reference_field(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Why?", "gold": "Because."}])
    [rec] = load_records(path, prompt_field="question", reference_field="gold")
    assert rec["prompt"] == "Why?" and rec["reference"] == "Because."


def test_missing_prompt_names_existing_fields(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Why?", "gold": "x"}])
    with pytest.raises(DataError) as info:
        load_records(path)
    msg = str(info.value)
    assert "q.jsonl:1" in msg and "'prompt' or 'messages'" in msg and "gold, question" in msg
    assert "--prompt-field" in msg


def test_missing_prompt_field_given(tmp_path):
    path = write_jsonl(tmp_path / "q.jsonl", [{"question": "Why?"}])
    with pytest.raises(DataError, match=r"q.jsonl:1: record has no 'text' field; its fields are: question"):
        load_records(path, prompt_field="text")


def test_malformed_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"prompt": "ok"}\n\n{"prompt": oops}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.jsonl:3: malformed JSON"):
        load_records(path)


def test_empty_dataset(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_records(path)


def test_missing_file_and_unsupported_format(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_records(tmp_path / "nope.jsonl")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(DataError, match=r"unsupported data format '.txt'.*"):
        load_records(tmp_path / "x.txt")


def test_csv(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('prompt,reference\n"What, exactly?",4\nSecond,\n', encoding="utf-8")
    recs = load_records(path)
    assert recs[0] == {"id": recs[0]["id"], "prompt": "What, exactly?", "reference": "4"}
    assert "reference" not in recs[1]  # an empty cell is no reference


def test_csv_missing_column_names_line(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("text,label\nhello,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"p.csv:2: .*fields are: label, text"):
        load_records(path)


def test_json_list(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    assert [r["prompt"] for r in load_records(path)] == [r["prompt"] for r in ROWS]


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "p.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), path)
    recs = load_records(path)
    assert [r["reference"] for r in recs] == ["4", "red"]


def test_datasets_directory_and_splits(tmp_path):
    from datasets import Dataset, DatasetDict

    Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert len(load_records(tmp_path / "ds")) == 2
    DatasetDict({"train": Dataset.from_list(ROWS), "test": Dataset.from_list(ROWS[:1])}).save_to_disk(
        str(tmp_path / "dd")
    )
    with pytest.raises(DataError, match="several splits"):
        load_records(tmp_path / "dd")
    assert len(load_records(tmp_path / "dd", split="test")) == 1
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not a saved `datasets` data set"):
        load_records(tmp_path / "plain")


def test_nli_premise_hypothesis_and_integer_label(tmp_path):
    path = write_jsonl(tmp_path / "n.jsonl", [{"premise": "A dog runs.", "hypothesis": "An animal moves.", "label": 0}])
    [rec] = load_records(path)
    assert rec["prompt"] == "Premise: A dog runs.\nHypothesis: An animal moves."
    assert rec["reference"] == "0"


def test_byte_order_mark_is_tolerated(tmp_path):
    (tmp_path / "b.jsonl").write_bytes(b'\xef\xbb\xbf{"prompt": "hi"}\n')
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbfprompt\nhi\n")
    assert load_records(tmp_path / "b.jsonl")[0]["prompt"] == "hi"
    assert load_records(tmp_path / "b.csv")[0]["prompt"] == "hi"
