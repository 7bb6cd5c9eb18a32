"""Writes test/data/fix-text.json: what ftfy.fix_text (default settings) makes of strings that
exercise each of its character-level repairs, for fixText's test. Not run by CI; run it by hand
with a Python that has ftfy (from the repository root):

    python3 -m venv /tmp/ftfyvenv && /tmp/ftfyvenv/bin/pip install ftfy
    /tmp/ftfyvenv/bin/python packages/text-encoders/tools/make_fix_text_references.py

`mojibake` lists inputs whose repair needs ftfy's re-decoding heuristics, which fixText does not
have: the test checks that those come out unchanged apart from the character-level repairs.
"""
import json
from pathlib import Path

import ftfy

CASES = [
    "\u201cHello\u201d \u2018world\u2019 it\u02bcs \u201equoted\u201f",
    "\ufb01ne \ufb02u\ufb00y \u0133s \u01c6 \ufb06",
    "\uff21\uff22\uff23\u3000\uff58\uff59\uff5a\uff01 \uff73\uff80\uff70\uff9d",
    "bell\x07 and \ufeffbom \u206a tab\tkept \ufffc",
    "\x1b[36;44mblue\x1b[0m text",
    "&ldquo;hi&rdquo; P&EACUTE;REZ &AMP; &ntilde; &NTILDE; &nTILDE; &SZLIG; &#x41; &#65; &#xZZ; &notit; &amp x &copy;",
    "a &amp; b\n<p>c &amp; d</p>\ne &amp; f",
    "a\r\nb\rc\u2028d\u2029e",
    "e\u0301 A\u030a",
    "a\ud800b \udc00c",
    "\U0001f44d\U0001f3fd caf\u00e9 \u03b1\u03b2\u03b3 \u043f\u0440\u0438\u0432\u0435\u0442 \u65e5\u672c",
    "",
    "plain text, nothing to fix.",
]
MOJIBAKE = ["caf\u00c3\u00a9 au lait", "\u00e2\u20ac\u0153quoted\u00e2\u20ac\u009d"]

out = Path(__file__).resolve().parents[1] / "test/data/fix-text.json"
data = dict(ftfy=ftfy.__version__, cases=[dict(text=t, fixed=ftfy.fix_text(t)) for t in CASES], mojibake=[dict(text=t, ftfy=ftfy.fix_text(t)) for t in MOJIBAKE])
out.write_text(json.dumps(data, indent=2) + "\n")
print(f"wrote {out}")
