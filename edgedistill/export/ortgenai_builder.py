"""Runs onnxruntime-genai's model builder with the compatibility fixes edgedistill needs.

Used as ``python -m edgedistill.export.ortgenai_builder <the builder's arguments>`` (the ort-genai and
onnx formats run it in a subprocess); it patches the builder in that process only, then runs the
builder's own command line unchanged.

The fix: transformers 5 stores Gemma 3's RoPE settings per layer type
(``rope_parameters = {"full_attention": {...}, "sliding_attention": {...}}``) instead of
``rope_theta`` + ``rope_local_base_freq``. onnxruntime-genai 0.18's ``Gemma3Model`` still reads the
flat form and stops with ``KeyError: 'rope_type'`` (its Gemma 4 builder reads the nested form). The
patch gives it the flat form it expects: the full-attention layers' parameters as ``rope_parameters``
and the sliding layers' theta as ``rope_local_base_freq``, which is what transformers 4 wrote.
Without the nested form (transformers 4 configs, later builders that read it) nothing is changed.
"""

from __future__ import annotations

import runpy


def flatten_gemma3_rope(config) -> bool:
    """Rewrite a transformers-5 Gemma 3 config's nested RoPE settings in place; True when it did."""
    params = getattr(config, "rope_parameters", None)
    if not (isinstance(params, dict) and "full_attention" in params and "sliding_attention" in params):
        return False
    full, sliding = dict(params["full_attention"]), params["sliding_attention"]
    config.rope_local_base_freq = sliding["rope_theta"]
    config.rope_theta = full["rope_theta"]
    config.rope_parameters = full
    return True


def _patch_gemma3() -> None:
    import importlib

    import onnxruntime_genai.models  # noqa: F401  puts its folder on sys.path: builder.py imports `builders`

    try:
        # the module builder.py itself imports (a second copy under onnxruntime_genai.models.* is unused)
        Gemma3Model = importlib.import_module("builders.gemma").Gemma3Model
    except (ImportError, AttributeError):  # a builder that moved or dropped the class needs no patch of ours
        return
    original = Gemma3Model.make_config_init

    def make_config_init(self, config):
        if type(self) is Gemma3Model:  # Gemma 4 (a subclass) reads the nested form itself
            flatten_gemma3_rope(config)
        original(self, config)

    Gemma3Model.make_config_init = make_config_init


def main() -> None:
    _patch_gemma3()
    runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
