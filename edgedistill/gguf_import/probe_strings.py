"""A deterministic, varied set of strings for checking that two tokenizers agree.

``probe_strings(n, seed)`` mixes fixed samples (many scripts, digits, code, emoji with ZWJ
sequences, whitespace runs, special-token-looking text) with random recombinations of them; the
same ``(n, seed)`` always gives the same list. Used by the GGUF tokenizer tests and by
``edgedistill.gguf_import.verify``.
"""

from __future__ import annotations

import random

SAMPLES: dict[str, list[str]] = {
    "latin": [
        "The quick brown fox jumps over the lazy dog.",
        "Hello, world! How are you today?",
        "Café, naïve, résumé, jalapeño, façade, coöperate, Zürich, São Paulo, Kraków, Ærø.",
        "Straße, Größe, Übermaß; œuvre, ﬁnancial (ligature), İstanbul, ıi, Ǆ ǅ ǆ.",
        "Don't won't can't I'm you're we've they'll she'd IT'S",
        "E = mc²; H₂O; ½ + ¼ = ¾; 10 °C; 5 µm; ±3; ©2026 ®™",
        "unbelievably antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "A.B.C. e.g. i.e. etc... — “quotes” ‘single’ «guillemets» „low“",
    ],
    "cyrillic": ["Привет, как дела? Съешь же ещё этих мягких французских булок.", "Україна, Беларусь, Србија, Македонија"],
    "greek": ["Καλημέρα κόσμε! Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.", "αβγδεζηθικλμνξοπρστυφχψω ΑΒΓΔ"],
    "arabic": ["مرحبا بالعالم، كيف حالك اليوم؟", "السَّلَامُ عَلَيْكُمْ ١٢٣٤٥٦٧٨٩٠"],
    "hebrew": ["שלום עולם! מה שלומך?", "עִבְרִית עם ניקוד"],
    "devanagari": ["नमस्ते दुनिया, आप कैसे हैं?", "हिन्दी भाषा क्षत्रिय ज्ञान १२३"],
    "cjk": ["你好，世界！今天天气很好。", "東京都渋谷区、ひらがな、カタカナ、漢字。", "中文、日本語、한국어 混合 text"],
    "thai": ["สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ"],
    "korean": ["안녕하세요, 세계! 오늘 날씨가 좋네요.", "한글 자모 ㄱㄴㄷ ㅏㅑㅓ"],
    "other_scripts": ["Բարեւ աշխարհ", "გამარჯობა", "হ্যালো বিশ্ব", "வணக்கம் உலகம்", "ሰላም ልዑል", "ᚠᚢᚦᚨᚱᚲ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝟙𝟚𝟛"],
    "digits": [
        "0", "7", "42", "123", "1234", "12345", "3.14159265358979", "-273.15", "1,000,000", "1e-9",
        "2026-11-29T04:38:03Z", "+1 (555) 010-9999", "0xDEADBEEF 0b1011 0o777",
        "98765432109876543210987654321098765432109876543210",
        "IPv4 192.168.0.1, IPv6 2001:db8::ff00:42:8329",
    ],
    "whitespace": [
        " ", "  ", "   ", "    ", "        ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", " \n ", "\t \t",
        "a  b   c    d", "line1\nline2\n\nline4", "trailing   ", "   leading", "\u00a0non-breaking\u00a0space",
        "\u3000ideographic space", "zero\u200bwidth\u200bspace", "tab\tseparated\tvalues",
    ],
    "code": [
        "def add(a, b):\n    return a + b\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += x[i];\n}",
        "const f = async (x) => { await g(x?.y ?? 0); };",
        "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
        "<div class=\"main\"><p>Hello</p></div>",
        "<table><tr><td>1</td></tr></table> <b>bold</b> <i>it</i> <code>x</code>",
        "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
        "#!/bin/bash\nset -euo pipefail\necho \"$HOME\" | grep -E '^/r' && exit 0",
        "x = [i**2 for i in range(10) if i % 2 == 0]  # squares",
        "fn main() { println!(\"{}\", 1 << 4); }",
        "$$\\int_0^1 x^2\\,dx = \\frac{1}{3}$$",
        "https://example.com/path?query=1&b=2#frag mailto:a.b@c.org",
    ],
    "emoji": [
        "🙂", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🧑🏿‍💻", "❤️‍🔥", "🇫🇷🇯🇵", "1️⃣", "I ❤ NY ✓ ✗ ★ ☃",
        "Emoji in text 🎉 party 🎂 cake", "👩‍🔬👨‍🚀🧜‍♀️",
    ],
    "special_looking": [
        "<bos>", "<eos>", "<pad>", "<unk>", "<mask>", "<s>", "</s>", "<|endoftext|>", "<|im_start|>user",
        "<start_of_turn>user\nHi<end_of_turn>", "<start_of_image>", "<unused0>", "<unused99>", "[multimodal]",
        "<0x41>", "<|end|>", "<|user|>", "[INST] hi [/INST]", "<<SYS>>", "<bos><bos>", "▁", "▁▁word",
    ],
    "misc": [
        "", "a", "A", ".", "...", "!!!???", "---", "===", "___", "~~~", "@@@", "***",
        "ALL CAPS SENTENCE", "MiXeD cAsE", "snake_case camelCase PascalCase kebab-case",
        "can't-stop won't-stop", "\u0301combining first", "e\u0301 vs é", "\ufeffBOM", "\ud7ff\ue000\uf8ff",
        "\x00null\x01ctrl\x7f", "ǅ", "ﬀ ﬁ ﬂ", "Ⅻ ⅻ", "①②③",
    ],
}

_SEPARATORS = ["", " ", "  ", "\n", "\t", " \n", "\n\n", ", ", ". ", "   "]


def probe_strings(n: int = 1200, seed: int = 0) -> list[str]:
    """``n`` strings: every fixed sample (alone, and with leading/trailing spaces), then random mixes."""
    fixed = [s for group in SAMPLES.values() for s in group]
    out: list[str] = []
    for s in fixed:
        out.append(s)
        if s.strip():
            out.append(" " + s)
            out.append(s + " ")
    rng = random.Random(seed)
    words: list[str] = []
    for s in fixed:
        words.extend(w for w in s.split(" ") if w)
    while len(out) < n:
        kind = rng.random()
        if kind < 0.5:  # a mix of whole samples from different groups
            k = rng.randint(2, 4)
            parts = [rng.choice(rng.choice(list(SAMPLES.values()))) for _ in range(k)]
            out.append("".join(p + rng.choice(_SEPARATORS) for p in parts))
        elif kind < 0.8:  # shuffled words with random separators, maybe padded
            k = rng.randint(1, 12)
            s = "".join(rng.choice(words) + rng.choice(_SEPARATORS) for _ in range(k))
            out.append(rng.choice(["", " ", "  ", "\n"]) + s)
        elif kind < 0.9:  # random digit strings and whitespace runs
            digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40)))
            out.append(rng.choice(["", "x", "$", " "]) + digits + " " * rng.randint(0, 5))
        else:  # random code points from a few blocks
            blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF), (0x1F300, 0x1F64F), (0xAC00, 0xAD00)]
            lo, hi = rng.choice(blocks)
            out.append("".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 20))))
    return out[:n] if len(out) >= n else out
