"""Writes test/data/outputs_16bit.safetensors: what transformers' CLIP and T5 encoders compute when
loaded with torch_dtype=torch.bfloat16 and torch.float16 (as diffusers loads a pipeline's text
encoders under a 16-bit torch_dtype), on the test models that make_reference_data.py made.

Not run by CI, and the tests never need Python. Run it by hand from the repository root in a venv
with torch and transformers (the versions are written into the file's metadata):

    /tmp/tvenv/bin/python packages/text-encoders/tools/make_16bit_references.py

For every model, dtype in (float32, bfloat16, float16) and case, the file holds
`{model}.{case}.{dtype}.{output}` widened to float32 (the float32 entries are the reference the
16-bit errors are measured against), and `{model}.{case}.input_ids` / `.attention_mask` (int32).
Models: clip (CLIPTextModel, quick_gelu), clip_projection (CLIPTextModelWithProjection, exact
GELU), t5 (v1.1, gated-gelu), t5_relu (v1.0, relu), umt5 (adapter-wan's UMT5 prompt model).
Outputs: CLIP's last_hidden_state, pooled (pooler_output), penultimate (hidden_states[-2], what SD3
reads) and text_embeds; T5's last_hidden_state. Cases: two prompts' ids from tokens.json, one padded
and masked for T5 (the attention mask Wan passes).

It also writes test/data/t5-encoder-overflow/: t5-encoder-relu (float16) with the first layer's
attention output projection scaled by OVERFLOW_SCALE, so that its output overflows float16 and
transformers' clamp (infinities to +-64504) decides the result; `t5_overflow.cat.float16.*` is
transformers' float16 output of it.
"""
import json
import os

import safetensors.torch
import torch
import transformers
from transformers import CLIPTextModel, CLIPTextModelWithProjection, T5EncoderModel, UMT5EncoderModel

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, '..', 'test', 'data')
UMT5 = os.path.join(HERE, '..', '..', 'adapter-wan', 'test', 'goldens', 'wan-prompt', 'text_encoder')
OVERFLOW_SCALE = 1e4
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16, 'float16': torch.float16}


def prompt_ids():
    prompts = json.load(open(os.path.join(DATA, 'tokens.json')))['prompts']
    return {'cat': prompts[1], 'long': prompts[-1]}


def main():
    records = prompt_ids()
    out = {}

    def put(key, value):
        out[key] = value.detach().to(torch.float32).contiguous()

    clip_cases = {name: torch.tensor([r['clip_ids_77']], dtype=torch.int64) for name, r in records.items()}
    for model_name, cls, folder in [('clip', CLIPTextModel, 'clip-text-model'),
                                    ('clip_projection', CLIPTextModelWithProjection, 'clip-text-model-projection')]:
        for dtype_name, dtype in DTYPES.items():
            model = cls.from_pretrained(os.path.join(DATA, folder), torch_dtype=dtype).eval()
            for case, ids in clip_cases.items():
                out[f'{model_name}.{case}.input_ids'] = ids.to(torch.int32)
                with torch.no_grad():
                    result = model(ids, output_hidden_states=True)
                prefix = f'{model_name}.{case}.{dtype_name}'
                put(f'{prefix}.last_hidden_state', result.last_hidden_state)
                put(f'{prefix}.penultimate', result.hidden_states[-2])
                if model_name == 'clip':
                    put(f'{prefix}.pooled', result.pooler_output)
                else:
                    put(f'{prefix}.text_embeds', result.text_embeds)

    # T5: the cat prompt padded to 16 tokens, once unmasked (FLUX) and once masked (Wan).
    cat = torch.tensor([records['cat']['t5_ids_16']], dtype=torch.int64)
    t5_cases = {'cat': (cat, None), 'cat_masked': (cat, (cat != 0).to(torch.int64))}
    for model_name, cls, folder in [('t5', T5EncoderModel, os.path.join(DATA, 't5-encoder')),
                                    ('t5_relu', T5EncoderModel, os.path.join(DATA, 't5-encoder-relu')),
                                    ('umt5', UMT5EncoderModel, UMT5)]:
        for dtype_name, dtype in DTYPES.items():
            model = cls.from_pretrained(folder, torch_dtype=dtype).eval()
            for case, (ids, mask) in t5_cases.items():
                out[f'{model_name}.{case}.input_ids'] = ids.to(torch.int32)
                if mask is not None:
                    out[f'{model_name}.{case}.attention_mask'] = mask.to(torch.int32)
                with torch.no_grad():
                    result = model(input_ids=ids, attention_mask=mask)
                put(f'{model_name}.{case}.{dtype_name}.last_hidden_state', result.last_hidden_state)

    overflow = T5EncoderModel.from_pretrained(os.path.join(DATA, 't5-encoder-relu'), torch_dtype=torch.float16).eval()
    with torch.no_grad():
        overflow.encoder.block[0].layer[0].SelfAttention.o.weight.mul_(OVERFLOW_SCALE)
    overflow.save_pretrained(os.path.join(DATA, 't5-encoder-overflow'))
    with torch.no_grad():
        out['t5_overflow.cat.input_ids'] = cat.to(torch.int32)
        put('t5_overflow.cat.float16.last_hidden_state', overflow(input_ids=cat).last_hidden_state)

    meta = {'torch': torch.__version__, 'transformers': transformers.__version__}
    safetensors.torch.save_file(out, os.path.join(DATA, 'outputs_16bit.safetensors'), metadata=meta)
    print(f'wrote {len(out)} tensors', meta)


if __name__ == '__main__':
    main()
