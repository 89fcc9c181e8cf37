"""One benchmark run in a fresh process: load an artifact, time prefill and decode, report JSON.

    python -m edgedistill.bench.runner < spec.json          # on the host
    python3 runner.py --spec spec.json                      # on a device (file copied there)

This file is self-contained on purpose: it imports only the standard library and the runtime
package itself, so a device needs Python plus ``llama_cpp`` / ``onnxruntime_genai`` / ``transformers``
and nothing from edgedistill. When edgedistill *is* importable and ``spec["impl"]`` is ``auto``, the
project's own runtimes (``edgedistill.runtimes.open_runtime``) are used, so the host measures exactly
what export verification and eval run. Plain ONNX (``onnxruntime``) needs edgedistill on the device.

The result is printed as one line ``EDGEDISTILL_RESULT {json}`` on stdout (runtimes may print
their own noise); exit status 0 = measured, 3 = did not fit the memory budget, 2 = error.

Spec keys: artifact, format, main_file, threads, cpus (list or null), memory_budget_bytes (or null),
address_space_headroom_bytes, prompt_len, gen_len, warmup, min_reps, min_duration_s, max_reps, impl.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
import time

RESULT_MARK = "EDGEDISTILL_RESULT "
EXIT_OK, EXIT_ERROR, EXIT_DOES_NOT_FIT = 0, 2, 3
FILLER = (
    "The quick brown fox jumps over the lazy dog while the small model on the edge device answers "
    "questions about weather, recipes, code and travel plans in short, clear sentences. "
)


class DoesNotFit(Exception):
    pass


# -- memory -----------------------------------------------------------------------------------------
def _status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int | None:
    """VmHWM: this process's peak resident set (not the whole system's memory)."""
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: ru_maxrss (bytes on macOS, KiB elsewhere)
        import resource

        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r if sys.platform == "darwin" else r * 1024
    return kb * 1024


class MemoryWatch:
    """Enforce a memory budget the way a device's low-memory killer would.

    A thread samples the resident set every ``POLL_S`` (each wake-up preempts a runtime thread, and
    llama.cpp's threads all wait at the next barrier for it: at 50 ms the poll cost the quickstart
    student 5 % of its decode speed on 2 cores, benchmarks/results/llamabench_compare.md); over budget,
    the run stops as "does not fit", and the check against VmHWM after each phase catches a peak
    between two samples, so a slower poll loses no does-not-fit verdict. RLIMIT_AS is set
    as a backstop (current address space + budget + headroom) so a fast allocation spike fails before
    it can swap the host; address space, not RSS, is what RLIMIT_AS limits, hence the headroom for the
    runtime's reserved-but-untouched virtual memory (thread stacks, allocator arenas, mmap'ed files).
    """

    def __init__(self, budget: int | None, headroom: int):
        self.budget = budget
        self.exceeded_at: int | None = None
        self._stop = threading.Event()
        if not budget:
            return
        try:
            import resource

            vm = (_status_kb("VmSize") or 0) * 1024
            limit = vm + budget + headroom
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            self.rlimit_as = limit
        except (ImportError, ValueError, OSError):
            self.rlimit_as = None
        threading.Thread(target=self._watch, daemon=True).start()

    POLL_S = 0.25

    def _watch(self):
        page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        try:  # /proc/self/statm, read through one open descriptor: no open() or line parsing per sample
            fd = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            fd = None
        try:
            while not self._stop.wait(self.POLL_S):
                if fd is not None:
                    rss = int(os.pread(fd, 128, 0).split()[1]) * page
                else:
                    rss = (_status_kb("VmRSS") or 0) * 1024
                if rss > self.budget:
                    self.exceeded_at = rss
                    return
        finally:
            if fd is not None:
                os.close(fd)

    def check(self):
        if self.budget:
            hwm = peak_rss_bytes() or 0
            if self.exceeded_at or hwm > self.budget:
                raise DoesNotFit(max(self.exceeded_at or 0, hwm))

    def stop(self):
        self._stop.set()


# -- runtimes: the project's, or minimal stand-alone adapters -------------------------------------
class _LlamaCpp:
    """llama-cpp-python directly; greedy, EOS ignored (decodes exactly n tokens)."""

    def __init__(self, spec):
        from llama_cpp import Llama

        n_ctx = spec["prompt_len"] + spec["gen_len"] + 16
        self.llm = Llama(model_path=spec["main_file"], n_threads=spec["threads"], n_threads_batch=spec["threads"],
                         n_ctx=n_ctx, n_batch=min(512, n_ctx), verbose=False)

    def tokenize(self, text, add_special_tokens=True):
        return self.llm.tokenize(text.encode("utf-8"), add_bos=add_special_tokens)

    def stream(self, ids, n):
        self.llm.reset()  # no prompt-prefix reuse between repetitions: every prefill is real
        for i, tok in enumerate(self.llm.generate(ids, top_k=1, temp=0.0, reset=True)):
            yield tok
            if i + 1 >= n:
                return

    def close(self):
        self.llm.close() if hasattr(self.llm, "close") else None


class _OrtGenai:
    def __init__(self, spec):
        import onnxruntime_genai as og

        self.og = og
        cfg = og.Config(os.path.dirname(spec["main_file"]))
        cfg.clear_providers() if hasattr(cfg, "clear_providers") else None
        self.model = og.Model(cfg)
        self.tok = og.Tokenizer(self.model)
        self.n_ctx = spec["prompt_len"] + spec["gen_len"] + 16

    def tokenize(self, text, add_special_tokens=True):
        return [int(t) for t in self.tok.encode(text)]

    def stream(self, ids, n):
        params = self.og.GeneratorParams(self.model)
        params.set_search_options(do_sample=False, max_length=len(ids) + n, min_length=len(ids) + n)
        gen = self.og.Generator(self.model, params)
        gen.append_tokens(ids)
        for _ in range(n):
            gen.generate_next_token()
            yield int(gen.get_next_tokens()[0])
            if gen.is_done():
                return

    def close(self):
        pass


class _Transformers:
    def __init__(self, spec):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.set_num_threads(spec["threads"])
        self.torch = torch
        path = os.path.dirname(spec["main_file"])
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(path)

    def tokenize(self, text, add_special_tokens=True):
        return self.tokenizer(text, add_special_tokens=add_special_tokens).input_ids

    def stream(self, ids, n):
        torch, past, inp = self.torch, None, self.torch.tensor([ids])
        with torch.inference_mode():
            for _ in range(n):
                out = self.model(inp, past_key_values=past, use_cache=True)
                past = out.past_key_values
                tok = int(out.logits[0, -1].argmax())
                yield tok
                inp = torch.tensor([[tok]])

    def close(self):
        pass


# format -> stand-alone adapter. This file runs on devices without edgedistill, so it keeps this small
# table itself; tests/test_runtime_registry.py checks it against edgedistill.runtime_registry
# (formats, and the packages each adapter imports).
STANDALONE = {"gguf": _LlamaCpp, "ort-genai": _OrtGenai, "hf": _Transformers}


def open_model(spec):
    """(model, implementation name)."""
    if spec.get("impl", "auto") == "auto":
        try:
            from edgedistill.artifacts import detect_artifact
            from edgedistill.runtimes import open_runtime
        except ImportError:
            pass
        else:
            runtime = open_runtime(detect_artifact(spec["artifact"]), threads=spec["threads"], decode_only=True)
            return runtime, "edgedistill"
    cls = STANDALONE.get(spec["format"])
    if cls is None:
        raise RuntimeError(f"format {spec['format']!r} needs edgedistill installed where the runner runs")
    return cls(spec), "standalone"


def close_model(model):
    close = getattr(model, "close", None)
    if close:
        close()


# -- measurement ------------------------------------------------------------------------------------
def synthetic_prompt(model, n: int) -> list[int]:
    """Exactly ``n`` token ids from the artifact's own tokenizer (filler text, BOS kept)."""
    text = FILLER
    while True:
        ids = list(model.tokenize(text, add_special_tokens=True))
        if len(ids) >= n:
            return ids[:n]
        text += FILLER


def one_sample(model, ids, gen_len) -> dict:
    t0 = time.perf_counter()
    stamps = []
    for _ in model.stream(ids, gen_len):
        stamps.append(time.perf_counter())
    if not stamps:
        raise RuntimeError("the runtime produced no token")
    ttft = stamps[0] - t0
    itl = [b - a for a, b in zip(stamps, stamps[1:])]
    decode_time = stamps[-1] - stamps[0]
    return {
        "ttft_s": ttft,
        "prefill_tps": len(ids) / ttft,
        "decode_tps": (len(stamps) - 1) / decode_time if decode_time > 0 else None,
        "gen_tokens": len(stamps),
        "itl_s": itl,
        "total_s": stamps[-1] - t0,
    }


def preload_runtime(spec: dict) -> float:
    """Import the artifact's runtime packages before a memory budget's address-space limit is set;
    returns the seconds it took (part of the cold load).

    A CUDA build of torch maps several GB of libraries at import, which RLIMIT_AS (a backstop against
    allocation spikes, not a measure of memory) refuses as "failed to map segment from shared object":
    the run was reported as "runtime package not installed". The libraries' resident pages still count
    in the resident set that the watch enforces. Without edgedistill (a bare device) nothing is preloaded.
    """
    t = time.perf_counter()
    try:
        from edgedistill.runtime_registry import runtime_for_format

        packages = runtime_for_format(spec["format"]).packages
    except Exception:  # no edgedistill here, or a format it does not know: open_model reports it
        return 0.0
    for name in packages:
        try:
            __import__(name)
        except ImportError:  # open_model reports a missing package as before
            pass
    if spec["format"] == "onnx":  # the project's onnx runtime loads the artifact's tokenizer with
        try:  # transformers' AutoTokenizer, whose import brings in torch when torch is installed
            from transformers import AutoTokenizer  # noqa: F401
        except ImportError:
            pass
    return time.perf_counter() - t


def run(spec: dict) -> tuple[int, dict]:
    result = {"spec": {k: v for k, v in spec.items()}, "pid": os.getpid()}
    if spec.get("cpus"):
        try:
            os.sched_setaffinity(0, spec["cpus"])
            result["pinned_cpus"] = sorted(os.sched_getaffinity(0))
        except (AttributeError, OSError) as exc:
            result["pin_error"] = str(exc)
    # after pinning, so a runtime that sizes its thread pool at import sees the pinned CPUs
    preload_s = preload_runtime(spec) if spec.get("memory_budget_bytes") else 0.0
    watch = MemoryWatch(spec.get("memory_budget_bytes"), spec.get("address_space_headroom_bytes", 2 << 30))
    result["rlimit_as_bytes"] = getattr(watch, "rlimit_as", None)
    try:
        t = time.perf_counter()
        model, impl = open_model(spec)
        result["cold_load_s"] = time.perf_counter() - t + preload_s
        result["impl"] = impl
        watch.check()
        close_model(model)
        model = None  # drop the last reference before loading again, or both copies count in the peak
        gc.collect()
        t = time.perf_counter()
        model, _ = open_model(spec)  # second load in the same process: files in the page cache
        result["warm_load_s"] = time.perf_counter() - t
        ids = synthetic_prompt(model, spec["prompt_len"])
        result["prompt_tokens"] = len(ids)
        for _ in range(spec.get("warmup", 1)):
            one_sample(model, ids, spec["gen_len"])
            watch.check()
        samples, spent = [], 0.0
        while len(samples) < spec.get("max_reps", 20) and (
            len(samples) < spec.get("min_reps", 3) or spent < spec.get("min_duration_s", 0.0)
        ):
            s = one_sample(model, ids, spec["gen_len"])
            watch.check()
            spent += s["total_s"]
            samples.append(s)
        result["samples"] = samples
        result["status"] = "ok"
        close_model(model)
        code = EXIT_OK
    except DoesNotFit as exc:
        result["status"] = "does-not-fit"
        result["error"] = f"resident memory reached {exc.args[0] / 2**20:.1f} MB, over the {spec['memory_budget_bytes'] / 2**20:.1f} MB budget"
        code = EXIT_DOES_NOT_FIT
    except MemoryError:
        result["status"] = "does-not-fit"
        result["error"] = "allocation failed under the address-space limit (RLIMIT_AS) set from the memory budget"
        code = EXIT_DOES_NOT_FIT
    except ImportError as exc:
        result["status"] = "error"
        result["error"] = f"runtime package not installed: {exc}"
        code = EXIT_ERROR
    except Exception as exc:  # reported to the parent, which turns it into a clear message
        msg = str(exc)
        if spec.get("memory_budget_bytes") and ("alloc" in msg.lower() or "memory" in msg.lower()):
            result["status"] = "does-not-fit"
            result["error"] = f"the runtime failed to allocate under the memory budget: {msg[:300]}"
            code = EXIT_DOES_NOT_FIT
        else:
            result["status"] = "error"
            result["error"] = f"{type(exc).__name__}: {msg[:2000]}"
            code = EXIT_ERROR
    watch.stop()
    result["peak_rss_bytes"] = peak_rss_bytes()
    return code, result


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--spec"]:
        with open(argv[1]) as fh:
            spec = json.load(fh)
    else:
        spec = json.load(sys.stdin)
    code, result = run(spec)
    sys.stdout.write("\n" + RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
