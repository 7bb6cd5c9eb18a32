"""Makes a small excerpt of the real CLIP BPE vocabulary and the token ids open_clip gives.

A tool, not part of the package or its tests: run it once where open_clip_torch (and so its
bpe_simple_vocab_16e6.txt.gz, the OpenAI CLIP vocabulary) is installed, from packages/metrics:

    python tools/make_clip_tokenizer_subset.py

The full vocabulary is 1.3 MB; the test only needs the merges that fire on its prompts. BPE
applies, at each step, the lowest-ranked merge among the adjacent pairs, so keeping exactly
the merges that fired (in their original order) and the vocabulary entries of the final
tokens (with their real ids) reproduces the real tokenisation of those prompts. The script
checks that claim by re-tokenising with the excerpt before writing
test/data/clip-bpe-excerpt/{vocab.json,merges.txt,expected.json}.
"""
import gzip
import importlib.util
import json
import os



HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(os.path.dirname(HERE), "test", "data", "clip-bpe-excerpt")

PROMPTS = [
    "a photo of a cat",
    "A   RED sports-car, parked (illegally) at 5:30pm!",
    "it's the dog's ball; they're here, we'll see",
    "café crème brûlée",
    "a robot 🤖 painting 猫 in 3D",
    "an astronaut riding a horse on the moon, highly detailed, 8k, trending on artstation",
    " ".join(["tokens"] * 90),  # longer than the 77-token context: truncated, end token kept
]


def load_simple_tokenizer():
    """Imports open_clip/tokenizer.py on its own (the package __init__ pulls in torchvision)."""
    spec = importlib.util.find_spec("open_clip")
    folder = os.path.dirname(spec.origin)
    module_spec = importlib.util.spec_from_file_location("open_clip_tokenizer", os.path.join(folder, "tokenizer.py"))
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module, os.path.join(folder, "bpe_simple_vocab_16e6.txt.gz")


def main() -> None:
    module, bpe_path = load_simple_tokenizer()
    tokenizer = module.SimpleTokenizer()
    merges = gzip.open(bpe_path).read().decode("utf-8").split("\n")[1 : 49152 - 256 - 2 + 1]
    merges = [tuple(m.split()) for m in merges]
    byte_chars = list(module.bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
    # open_clip names the special tokens <start_of_text>/<end_of_text>; the Hugging Face files
    # call the same ids 49406/49407 <|startoftext|>/<|endoftext|>.
    assert {t: i for i, t in enumerate(vocab_list + ["<start_of_text>", "<end_of_text>"])} == tokenizer.encoder
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(vocab_list)}
    ranks = {m: i for i, m in enumerate(merges)}

    used = set()

    def traced_bpe(token: str):
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(word[i], word[i + 1]) for i in range(len(word) - 1)]
            best = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if best not in ranks:
                break
            used.add(best)
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    expected = []
    final_tokens = set()
    for prompt in PROMPTS:
        ids = tokenizer(prompt, context_length=77)[0].tolist()
        # Rebuild the same tokens through the traced BPE to learn which merges fired.
        cleaned = module.whitespace_clean(module.basic_clean(prompt)).lower()
        traced = []
        for word in module.re.findall(tokenizer.pat, cleaned):
            word = "".join(tokenizer.byte_encoder[b] for b in word.encode("utf-8"))
            traced.extend(traced_bpe(word))
        final_tokens.update(traced)
        traced_ids = [vocab["<|startoftext|>"]] + [vocab[t] for t in traced][:75] + [vocab["<|endoftext|>"]]
        real = [i for i in ids if i != 0]
        assert traced_ids == real, (prompt, traced_ids, real)
        expected.append({"prompt": prompt, "ids": real})

    os.makedirs(OUT, exist_ok=True)
    excerpt_vocab = {t: vocab[t] for t in sorted(final_tokens | {"<|startoftext|>", "<|endoftext|>"}, key=vocab.get)}
    excerpt_merges = [" ".join(m) for m in merges if m in used]
    with open(os.path.join(OUT, "vocab.json"), "w") as f:
        json.dump(excerpt_vocab, f, ensure_ascii=False, indent=0)
    with open(os.path.join(OUT, "merges.txt"), "w") as f:
        f.write("#version: 0.2 (excerpt of OpenAI CLIP's bpe_simple_vocab_16e6, see tools/make_clip_tokenizer_subset.py)\n")
        f.write("\n".join(excerpt_merges) + "\n")
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"generated_by": "open_clip_torch 3.3.0 SimpleTokenizer, context_length 77", "cases": expected}, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
