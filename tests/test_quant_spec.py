"""'format:quant' text is parsed in one place (edgedistill.quant_spec): every registered pair reads back as
itself, and every way of getting it wrong is one error naming the setting and what is valid."""

from __future__ import annotations

import pytest

from edgedistill.errors import ConfigError
from edgedistill.export.formats import FORMATS
from edgedistill.quant_spec import FormatQuant

PAIRS = [(f, q) for f, fmt in FORMATS.items() for q in fmt.quants]


def test_every_registered_format_and_quant_round_trips():
    assert {f for f, _ in PAIRS} == {"gguf", "onnx", "ort-genai"}
    owners: dict[str, list[str]] = {}
    for f, q in PAIRS:
        owners.setdefault(q, []).append(f)
    for f, q in PAIRS:
        spec = FormatQuant.parse(f"{f}:{q}")
        assert (spec.format, spec.quant) == (f, q) and str(spec) == f"{f}:{q}"
        assert FormatQuant.parse(str(spec)) == spec and FormatQuant.parse(spec) is spec
        assert tuple(spec) == (f, q)
        assert FormatQuant.parse(q, default_format=f) == spec
        if owners[q] == [f]:  # a quant only one format has needs no format
            assert FormatQuant.parse(q, bare=True) == spec
        else:
            with pytest.raises(ConfigError, match=f"is a quant of {' and '.join(owners[q])}; say which"):
                FormatQuant.parse(q, bare=True)


@pytest.mark.parametrize("text, field, message", [
    ("gguf", "artifacts", "'gguf' is not 'format:quant' (e.g. gguf:q4_k_m"),
    ("gguf:", "artifacts", "'gguf:' is not 'format:quant'"),
    (":q4_k_m", "qat", "':q4_k_m' is not 'format:quant'"),
    ("gguf:q4:k", "artifacts", "'gguf:q4:k' is not 'format:quant'"),
    ("gguff:q4_k_m", "artifacts", "unknown export format 'gguff'; valid: gguf, onnx, ort-genai; did you mean 'gguf'?"),
    ("gguf:q4_k_n", "quant", "quantization 'q4_k_n' is not available for format gguf; valid: bf16, f16, f32, "),
    ("onnx:q4_k_m", "quant", "quantization 'q4_k_m' is not available for format onnx; valid: fp32, fp16, int8, int4"),
])
def test_bad_specs_name_the_setting_and_what_is_valid(text, field, message):
    with pytest.raises(ConfigError) as exc:
        FormatQuant.parse(text, field=field)
    assert str(exc.value).startswith(f"invalid setting {field!r}: ") and message in str(exc.value)


def test_near_misses_are_offered():
    with pytest.raises(ConfigError, match=r"did you mean 'q4_k_m'\?"):
        FormatQuant.parse("gguf:q4_k_mm")
    with pytest.raises(ConfigError, match=r"no format has this quantization; .*did you mean 'q4_k_m'\?"):
        FormatQuant.parse("q4_k_mm", bare=True)


def test_default_format_wins_for_a_shared_quant_and_bare_falls_back_to_the_owner():
    assert FormatQuant.parse("int4", default_format="ort-genai") == FormatQuant("ort-genai", "int4")
    assert FormatQuant.parse("q4_k_m", default_format="onnx", bare=True) == FormatQuant("gguf", "q4_k_m")
    with pytest.raises(ConfigError, match="not available for format onnx"):
        FormatQuant.parse("q4_k_m", default_format="onnx")


def test_known_formats_with_any_quant_check_the_form_only():
    known = {"gguf": None, "onnx": None}
    assert FormatQuant.parse("gguf:q9_future", known=known) == FormatQuant("gguf", "q9_future")
    with pytest.raises(ConfigError, match="unknown export format 'ort-genai'; valid: gguf, onnx"):
        FormatQuant.parse("ort-genai:int4", known=known)
    with pytest.raises(ConfigError, match="is not 'format:quant'"):
        FormatQuant.parse("gguf:Q4 K", known=known)


def test_lists_drop_duplicates_and_keep_order():
    specs = FormatQuant.parse_list("onnx:int4, gguf:q8_0,onnx:int4")
    assert [str(s) for s in specs] == ["onnx:int4", "gguf:q8_0"]
    with pytest.raises(ConfigError, match="must be a list of 'format:quant'"):
        FormatQuant.parse_list(42)
