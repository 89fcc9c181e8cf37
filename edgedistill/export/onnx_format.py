"""The ``onnx`` export format: optimum's ONNX exporter, then onnxruntime's quantizers.

What the artifact directory holds (loadable as it is by ``optimum.onnxruntime.ORTModelForCausalLM``
and by :class:`edgedistill.runtimes.onnx_runtime.OnnxRuntime`):

* ``model.onnx`` - one decoder graph with KV cache (optimum task ``text-generation-with-past``):
  inputs ``input_ids``, ``attention_mask``, ``position_ids`` (not for every architecture),
  ``past_key_values.N.key/value``; outputs ``logits``, ``present.N.key/value``;
* ``model.onnx_data`` - the weights, only when they do not fit in one 2 GB protobuf;
* ``config.json``, ``generation_config.json`` and the tokenizer files, copied by optimum.

Quantization types:

* ``fp32`` - the exporter's graph as it is.
* ``fp16`` - the fp32 export converted by ``onnxruntime.transformers.float16`` with float32
  inputs/outputs kept: float16 weights and compute inside, float32 ``logits`` and KV cache at the
  graph boundary; onnxruntime's CPU provider runs it (checked by the tests). optimum's own
  ``dtype=fp16`` export is not used: its Gemma 3 graph fails at the second decoding step.
* ``int8`` - ``onnxruntime.quantization.quantize_dynamic``: per-channel symmetric int8 weights of
  every MatMul with a constant weight, activations quantized on the fly (DynamicQuantizeMatMul /
  MatMulInteger). Attention score MatMuls stay float.
* ``int4`` - weight-only block-wise int4 (``MatMulNBits``, ``MatMulNBitsQuantizer``), block size
  ``options.int4_block_size``, compute precision ``options.accuracy_level(ONNX_QUANTS["int4"])`` (default
  4: int8 compute).

Thresholds are measured, see docs/export-onnx.md and benchmarks/onnx_quant_figures.py.
"""

from __future__ import annotations

import collections
import json
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

from edgedistill.errors import EdgeDistillError
from edgedistill.export.formats import FORMATS, ExportFormat, ExportOptions, QuantSpec

TASK = "text-generation-with-past"
MODEL_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx_data"
#: Weights above this many bytes go to model.onnx_data (protobuf cannot hold more than 2 GiB).
EXTERNAL_DATA_THRESHOLD_BYTES = 1_800_000_000
VALID_INT4_BLOCK_SIZES = (16, 32, 64, 128, 256)
VALID_ACCURACY_LEVELS = (0, 1, 2, 3, 4)
#: what can write the float graph (options.onnx_exporter); "builder" is the default
ONNX_EXPORTERS = ("builder", "optimum")
#: files of the model directory an onnx artifact carries beside the graph (config, tokenizer, chat template)
MODEL_SIDE_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                    "chat_template.json")

# Thresholds: measured on the tiny test models (5 architectures) and a ~112M-parameter llama
# (benchmarks/results/onnx_quant_figures.json), then set with margin; docs/export-onnx.md has the figures.
ONNX_QUANTS: dict[str, QuantSpec] = {
    "fp32": QuantSpec(
        "fp32", 32.0, max_kl=1e-4, min_greedy_match=0.95, max_abs_logit_diff=1e-2,
        description="float32 graph as exported; matches PyTorch to rounding (measured KL < 1e-7).",
    ),
    "fp16": QuantSpec(
        "fp16", 16.0, max_kl=3e-2, min_greedy_match=0.85, max_abs_logit_diff=None,
        description="float16 weights and compute, float32 inputs/outputs (logits, KV cache); CPU provider.",
    ),
    "int8": QuantSpec(
        "int8", 8.0, max_kl=0.15, min_greedy_match=0.5, max_abs_logit_diff=None,
        description="dynamic int8: per-channel int8 MatMul weights, activations quantized at run time.",
        # Activation scales are per tensor, so a prompt run (many tokens) and a decoding step (one)
        # quantize differently: streamed tokens and the full pass disagree more than for weight-only.
        min_stream_consistency=0.3,
    ),
    "int4": QuantSpec(
        "int4", 5.0, max_kl=0.5, min_greedy_match=0.25, max_abs_logit_diff=None,
        # 5.0 = 4 bits + one fp32 scale per 32-weight block (the embedding table too, unless
        # options.int4_embeddings is off: then it stays fp32 on top).
        description="weight-only block-wise int4 (MatMulNBits; the embedding table as GatherBlockQuantized).",
        matmul_nbits=4, default_accuracy_level=4,
    ),
}


def model_type_of(model_dir: Path) -> str:
    cfg = Path(model_dir) / "config.json"
    try:
        return json.loads(cfg.read_text()).get("model_type", "")
    except (OSError, json.JSONDecodeError) as exc:
        raise EdgeDistillError(f"{cfg}: cannot read the model config ({exc})") from None


def check_architecture(fmt: ExportFormat, model_dir: Path) -> str:
    """The model's ``model_type``; a clear error when ``fmt`` cannot export it."""
    model_type = model_type_of(model_dir)
    if model_type not in fmt.supported_architectures:
        raise EdgeDistillError(
            f"format {fmt.name!r} cannot export architecture {model_type!r} ({Path(model_dir) / 'config.json'}); "
            f"supported: {', '.join(fmt.supported_architectures)}",
            hint="export another format (see `edgedistill export --help`) or use a supported student architecture",
        )
    return model_type


def check_quant_options(fmt: ExportFormat, quant: str, options: ExportOptions) -> None:
    if quant not in fmt.quants:
        raise EdgeDistillError(
            f"quantization {quant!r} is not available for format {fmt.name}; valid: {', '.join(fmt.quants)}"
        )
    if options.int4_block_size not in VALID_INT4_BLOCK_SIZES:
        raise EdgeDistillError(
            f"options.int4_block_size = {options.int4_block_size} is not supported; "
            f"valid: {', '.join(map(str, VALID_INT4_BLOCK_SIZES))}"
        )
    if options.int4_accuracy_level is not None and options.int4_accuracy_level not in VALID_ACCURACY_LEVELS:
        raise EdgeDistillError(
            f"options.int4_accuracy_level = {options.int4_accuracy_level} is not supported; valid: 0 (fp32 compute), "
            "1 (fp32), 2 (fp16), 3 (bf16), 4 (int8 compute)"
        )


def _check_onnx_options(quant: str, options: ExportOptions) -> None:
    """The options only the onnx format reads (its float graph's exporter and opset)."""
    if ONNX_QUANTS[quant].matmul_nbits and options.int4_embeddings and options.opset and options.opset < 18:
        # the int4 table needs opset 21, to which the quantizer raises the graph without converting its
        # nodes; the operator forms of opset 18 and later survive that, older ones (ReduceMean's axes
        # attribute, for one) do not
        raise EdgeDistillError(
            f"onnx:int4 with an int4 embedding table needs opset >= 18 (options.opset = {options.opset})",
            hint="drop --opset, pass --opset 18 or higher, or keep the table float with --int4-float-embeddings",
        )
    if options.onnx_exporter not in ONNX_EXPORTERS:
        raise EdgeDistillError(f"options.onnx_exporter = {options.onnx_exporter!r} is not known; "
                               f"valid: {', '.join(ONNX_EXPORTERS)}")
    if options.onnx_exporter == "builder" and options.opset:
        raise EdgeDistillError(
            f"options.opset = {options.opset} applies to the optimum exporter only; onnxruntime-genai's builder "
            "writes its own opset", hint="drop --opset, or pass --onnx-exporter optimum")


class OnnxFormat(ExportFormat):
    name = "onnx"
    quants = ONNX_QUANTS
    # Each exported, checked with onnx.checker, loaded in onnxruntime and compared with PyTorch
    # (tests/test_export_onnx.py).
    supported_architectures = ("gemma3_text", "llama", "phi3", "qwen2", "qwen3")

    def write(self, model_dir: Path, out_dir: Path, quant: str, options: ExportOptions) -> dict[str, Any]:
        model_dir, out_dir = Path(model_dir), Path(out_dir)
        check_quant_options(self, quant, options)
        _check_onnx_options(quant, options)
        check_architecture(self, model_dir)
        info: dict[str, Any] = {"exporter": {"tool": options.onnx_exporter, **_versions()}, "task": TASK}
        if quant == "fp32":
            _export_float(model_dir, out_dir, options)
            _normalise_external_data(out_dir / MODEL_FILE)
        else:
            stage = out_dir / ".fp32-export"  # inside the atomic temp dir: removed with it on failure
            _export_float(model_dir, stage, options)
            for f in stage.iterdir():  # config, tokenizer, generation config: never the float graph's weights
                if f.is_file() and f.suffix != ".onnx" and not f.name.startswith((EXTERNAL_DATA_FILE, MODEL_FILE)):
                    shutil.copy2(f, out_dir / f.name)
            if quant == "fp16":
                known = _rotary_params(stage / MODEL_FILE)  # an fp16 table is too coarse to read them from
                _convert_fp16(stage / MODEL_FILE, out_dir / MODEL_FILE)
                info["quantization"] = {"method": "onnxruntime.transformers.float16", "keep_io_types": True}
            elif quant == "int8":
                _quantize_int8(stage / MODEL_FILE, out_dir / MODEL_FILE)
                info["quantization"] = {"method": "quantize_dynamic", "weight_type": "QInt8", "per_channel": True,
                                        "op_types": ["MatMul"]}
            else:
                _quantize_int4(stage / MODEL_FILE, out_dir / MODEL_FILE, options, model_dir)
                info["quantization"] = {"method": "MatMulNBits", "bits": 4, "block_size": options.int4_block_size,
                                        "accuracy_level": options.accuracy_level(self.quants[quant]),
                                        "symmetric": options.int4_algorithm in ("rtn", "gptq"),
                                        "algorithm": options.int4_algorithm,
                                        "embeddings": "int4 (GatherBlockQuantized)" if options.int4_embeddings
                                        else "float32"}
            shutil.rmtree(stage)
        info["rotary_tables"] = _slim_rotary_tables(out_dir / MODEL_FILE, known if quant == "fp16" else None)
        info["opset"] = _opset(out_dir / MODEL_FILE)
        return info

    def takes_calibration_texts(self, quant: str, options: ExportOptions) -> bool:
        # GPTQ rounding of the MatMulNBits type (export/onnx_gptq.py): the texts feed its Hessians
        return bool(self.quants[quant].matmul_nbits) and options.int4_algorithm == "gptq"

    def kv_cache_dtype(self, quant: str) -> str:
        # Every quant keeps float32 graph inputs/outputs, the cache included: fp16 is converted with
        # keep_io_types (see _convert_fp16), int8/int4 quantize weights only.
        return "float32"

    def describe(self, artifact_dir: Path) -> dict[str, Any]:
        artifact_dir = Path(artifact_dir)
        main = artifact_dir if artifact_dir.is_file() else artifact_dir / MODEL_FILE
        if not main.exists():
            found = sorted(artifact_dir.glob("*.onnx"))
            if not found:
                raise EdgeDistillError(f"{artifact_dir} holds no .onnx file")
            main = found[0]
        return describe_onnx_file(main)


# -- export and quantization steps -------------------------------------------------------------------


def _export_float(model_dir: Path, out_dir: Path, options: ExportOptions) -> None:
    """The fp32 decoder graph with KV cache, written by the chosen exporter into ``out_dir``."""
    if options.onnx_exporter == "optimum":
        _optimum_export(model_dir, out_dir, "fp32", options)
    else:
        _builder_export(model_dir, out_dir)


def _builder_export(model_dir: Path, out_dir: Path) -> None:
    """onnxruntime-genai's builder, fp32 for CPU, as a plain onnxruntime decoder graph.

    Its graph fuses attention (GroupQueryAttention), RoPE and the norms into onnxruntime's contrib
    operators: about a tenth of optimum's node count per decoding step, which is what decides decode
    speed on a CPU (benchmarks/onnx_exporter_compare.py). ``windowed_kv_cache=false`` keeps every layer's
    cache the full length (Gemma 3's sliding layers included; GQA applies the window itself), so one
    past length drives every layer, as in optimum's graphs. The builder's genai_config.json is dropped:
    the artifact is a plain onnx decoder (with it, ``detect_artifact`` would take it for ort-genai).
    """
    from edgedistill.export.ortgenai_format import run_builder

    out_dir.mkdir(parents=True, exist_ok=True)
    run_builder(model_dir, out_dir, "fp32", ["windowed_kv_cache=false"])
    graph = out_dir / MODEL_FILE
    genai = out_dir / "genai_config.json"
    if not graph.exists() or not genai.exists():
        raise EdgeDistillError(f"onnxruntime-genai's builder wrote no {MODEL_FILE} / genai_config.json into {out_dir}")
    head_size = json.loads(genai.read_text())["model"]["decoder"]["head_size"]
    for f in out_dir.iterdir():  # the builder's own side files; the model's are copied below
        if f.is_file() and f != graph and not f.name.startswith(MODEL_FILE + "."):
            f.unlink()
    for name in MODEL_SIDE_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, out_dir / name)
    _fix_kv_head_size(graph, head_size)


def _rotary_params(path: Path) -> dict:
    import onnx

    from edgedistill.export.onnx_rotary import rotary_params

    return rotary_params(onnx.load(str(path)))


def _slim_rotary_tables(path: Path, known: dict | None) -> str:
    """The builder's stored cos/sin tables replaced by nodes computing them (export/onnx_rotary.py)."""
    from edgedistill.export.onnx_rotary import slim_rotary_tables

    external = EXTERNAL_DATA_FILE if (path.parent / EXTERNAL_DATA_FILE).exists() else None
    saved = slim_rotary_tables(path, external, known)
    return f"computed at load time ({saved} bytes not stored)" if saved else "as exported"


def _fix_kv_head_size(path: Path, head_size: int) -> None:
    """The builder leaves the KV cache's last axis symbolic (``kv_cache_dim``); write the head size.

    Apps (and edgedistill's runtime) read the cache shape to make the empty first-step cache.
    """
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for v in list(model.graph.input) + list(model.graph.output):
        if v.name.startswith(("past_key_values.", "present.")):
            dim = v.type.tensor_type.shape.dim[3]
            if not dim.dim_value:
                dim.dim_value = int(head_size)  # clears dim_param (a oneof)
    onnx.save_model(model, str(path))  # external data stays where it is (not loaded, not rewritten)


def _optimum_export(model_dir: Path, out_dir: Path, dtype: str, options: ExportOptions) -> None:
    try:
        from optimum.exporters.onnx import main_export
    except ImportError:
        raise EdgeDistillError(
            "the onnx format's optimum exporter needs optimum-onnx (it requires transformers < 4.58)",
            hint="pip install 'edgedistill[optimum]' in a transformers-4 environment, or use the default "
                 "--onnx-exporter builder") from None
    out_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's tracer warns on every data-dependent branch
        try:
            main_export(
                str(model_dir),
                output=str(out_dir),
                task=TASK,
                opset=options.opset,
                device="cpu",
                dtype=dtype,
                do_validation=False,  # edgedistill verifies every artifact against PyTorch itself
                local_files_only=True,
                library_name="transformers",
            )
        except EdgeDistillError:
            raise
        except Exception as exc:  # optimum raises ValueError/KeyError/RuntimeError for unsupported models
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgeDistillError(f"optimum's ONNX export of {model_dir} ({dtype}) failed: {first}") from exc
    if not (out_dir / MODEL_FILE).exists():
        raise EdgeDistillError(f"optimum's ONNX export wrote no {MODEL_FILE} into {out_dir}")
    for name in MODEL_SIDE_FILES:  # optimum silently skips a tokenizer its transformers cannot load (saved by 5.x)
        if (model_dir / name).is_file() and not (out_dir / name).exists():
            shutil.copy2(model_dir / name, out_dir / name)


def _convert_fp16(src: Path, dst: Path) -> None:
    """float32 graph -> float16 weights and compute, float32 inputs/outputs.

    Not optimum's own ``dtype=fp16`` export: for Gemma 3 it declares fp16 KV-cache outputs that
    onnxruntime computes in float32, so the second decoding step fails on a type mismatch.
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    # Given a path, the converter runs shape inference on the file (works above 2 GB too).
    from onnxruntime.quantization.onnx_model import ONNXModel

    model = convert_float_to_float16(str(src), keep_io_types=True)
    # The converter appends its input Casts at the end of the node list; onnxruntime does not mind,
    # onnx.checker (and other runtimes) require topological order.
    wrapped = ONNXModel(model)
    wrapped.topological_sort()
    _save(wrapped.model, dst)


def _quantize_int8(src: Path, dst: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    big = _weights_bytes(src) > EXTERNAL_DATA_THRESHOLD_BYTES
    logging.disable(logging.WARNING)  # its root-logger advice to run pre-processing (meant for CNNs)
    try:
        quantize_dynamic(
            str(src),
            str(dst),
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            weight_type=QuantType.QInt8,
            use_external_data_format=big,
            extra_options={"MatMulConstBOnly": True},  # only weight MatMuls, not Q@K^T / P@V
        )
    finally:
        logging.disable(logging.NOTSET)
    _normalise_external_data(dst)


def _quantize_int4(src: Path, dst: Path, options: ExportOptions, model_dir: Path | None = None) -> None:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    from edgedistill.export import onnx_quant_tied as tied

    model = onnx.load(str(src))  # with its external data, if any
    if options.int4_algorithm == "gptq":  # GPTQ rounds the float weights onto RTN's grid; RTN writes them
        from edgedistill.export.onnx_gptq import apply_gptq

        apply_gptq(model, src, model_dir, options.calibration_texts or [], options.int4_block_size)
    rtn = options.int4_algorithm in ("rtn", "gptq")
    # a tied table (Gemma 3): shared with the int4 LM head after RTN, else a table of its own
    share = options.int4_embeddings and rtn and tied.tied_embedding(model) is not None
    if options.int4_embeddings and not share:
        tied.untie(model)
    # hqq / k_quant round the MatMul weights only; the embedding table then gets the RTN pass below
    op_types = ("MatMul", "Gather") if options.int4_embeddings and rtn else ("MatMul",)
    quantizer = MatMulNBitsQuantizer(
        model,
        bits=4,
        block_size=options.int4_block_size,
        is_symmetric=True,
        accuracy_level=options.accuracy_level(ONNX_QUANTS["int4"]) or None,
        # Gather: the embedding table, int4 blocks along the hidden axis (quant_axes default {Gather: 1}).
        op_types_to_quantize=op_types,
        algo_config=_int4_algo_config(options, op_types, src, model_dir),
    )
    # The quantizer logs one INFO line per node it skips (thousands on a real model). With Gather it also
    # warns that it raises the graph to opset 21 / IR 10 (int4 tensors need them) and that the result
    # "may not be a valid model": optimum's graphs are opset 18 with the opset-18 operator forms, which
    # opset 21 keeps; the tests run onnx.checker's full check on every architecture's artifact and
    # verification runs it in onnxruntime, so that warning is silenced rather than shown to users.
    qlog = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer")
    level = qlog.level
    qlog.setLevel(logging.ERROR)
    try:
        quantizer.process()
        if share and not tied.share_with_lm_head(quantizer.model.model, options.int4_block_size):
            tied.untie(quantizer.model.model)  # the float table, rounded by the RTN pass below
            rtn = False
        if options.int4_embeddings and not rtn:
            quantizer = MatMulNBitsQuantizer(quantizer.model.model, bits=4, block_size=options.int4_block_size,
                                             is_symmetric=True, op_types_to_quantize=("Gather",))
            quantizer.process()
    finally:
        qlog.setLevel(level)
    _save(quantizer.model.model, dst)


def _int4_algo_config(options: ExportOptions, op_types: tuple[str, ...], src: Path | None = None,
                      model_dir: Path | None = None):
    """The quantizer's algo_config for ``options.int4_algorithm`` (None: its default RTN)."""
    algo = options.int4_algorithm
    if algo in ("rtn", "gptq"):  # gptq: already applied to the float weights (onnx_gptq.apply_gptq)
        return None
    from onnxruntime.quantization import matmul_nbits_quantizer as mq

    if algo == "hqq":  # data-free half-quadratic search of scale and zero point per block (asymmetric)
        return mq.HQQWeightOnlyQuantConfig(block_size=options.int4_block_size, bits=4, op_types_to_quantize=op_types)
    if algo == "k_quant":  # data-free: llama.cpp-style search of each block's scale and minimum
        return mq.KQuantWeightOnlyQuantConfig(op_types_to_quantize=op_types)
    from edgedistill.export.formats import INT4_ALGORITHMS

    raise EdgeDistillError(f"options.int4_algorithm = {algo!r} is not supported; valid: {', '.join(INT4_ALGORITHMS)}")


def _weights_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.parent.iterdir() if f.is_file() and
               (f == path or f.name.startswith(path.name + "_data") or f.name.startswith(path.name + ".data")))


def _save(model, dst: Path) -> None:
    """Save inline when small, else with every weight in ``model.onnx_data`` next to it."""
    import onnx

    # per-tensor sizes: one ByteSize() of a >2 GiB ModelProto is not reliable
    big = sum(t.ByteSize() for t in model.graph.initializer) > EXTERNAL_DATA_THRESHOLD_BYTES or not _inline(model)
    for stale in (dst, dst.parent / EXTERNAL_DATA_FILE):
        if stale.exists():
            stale.unlink()
    if big:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=EXTERNAL_DATA_FILE, size_threshold=1024)
    else:
        onnx.save_model(model, str(dst))


def _inline(model) -> bool:
    """True when no initializer refers to external data (ByteSize is then the real size)."""
    from onnx.external_data_helper import uses_external_data

    return not any(uses_external_data(t) for t in model.graph.initializer)


def _normalise_external_data(path: Path) -> None:
    """One layout for every artifact: weights inline below the threshold, else in ``model.onnx_data``.

    optimum names its data file ``model.onnx_data`` and onnxruntime's quantizers ``model.onnx.data``;
    bench and inspect count and hash files by name, so it is rewritten when it differs.
    """
    import onnx

    data_files = [f for f in path.parent.iterdir() if f.is_file() and f != path and f.name.startswith(path.name)]
    size = _weights_bytes(path)
    wants_external = size > EXTERNAL_DATA_THRESHOLD_BYTES
    has_expected = [f.name for f in data_files] == [EXTERNAL_DATA_FILE]
    if (wants_external and has_expected) or (not wants_external and not data_files):
        return
    model = onnx.load(str(path))
    _save(model, path)
    for f in data_files:
        if f.exists() and f.name != EXTERNAL_DATA_FILE:
            f.unlink()


def _opset(path: Path) -> int | None:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for pkg in ("onnxruntime-genai", "optimum-onnx", "optimum", "onnx", "onnxruntime", "torch", "transformers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


# -- describe -------------------------------------------------------------------------------------------


def describe_onnx_file(path: Path) -> dict[str, Any]:
    """Opset, IR version, graph inputs/outputs, op-type counts, quantization attributes and file sizes."""
    import onnx

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise EdgeDistillError(f"{path}: not a readable ONNX model ({exc})") from None

    def value_info(v) -> dict:
        t = v.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        return {"name": v.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, "shape": dims}

    ops = collections.Counter(
        (n.domain + "." if n.domain not in ("", "ai.onnx") else "") + n.op_type for n in model.graph.node
    )
    nbits = collections.Counter()
    for n in model.graph.node:
        if n.op_type == "MatMulNBits":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            nbits[(attrs.get("bits", 4), attrs.get("block_size"), attrs.get("accuracy_level", 0))] += 1
    files = {f.name: f.stat().st_size for f in sorted(path.parent.iterdir()) if f.is_file()}
    return {
        "file": path.name,
        "ir_version": model.ir_version,
        "opsets": {(o.domain or "ai.onnx"): o.version for o in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "inputs": [value_info(v) for v in model.graph.input],
        "outputs": [value_info(v) for v in model.graph.output],
        "op_types": dict(ops.most_common()),
        "node_count": len(model.graph.node),
        "initializers": len(model.graph.initializer),
        "matmulnbits": [
            {"bits": b, "block_size": bs, "accuracy_level": acc, "count": c} for (b, bs, acc), c in sorted(nbits.items())
        ],
        "external_data": sorted(n for n in files if n != path.name and n.startswith(path.name)),
        "files": files,
        "total_bytes": sum(files.values()),
    }


FORMATS.register("onnx", OnnxFormat())
