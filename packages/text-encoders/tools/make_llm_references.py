"""Writes the decoder-LLM reference data of @ditcache/text-encoders (test/data/llama-decoder/,
test/data/qwen2-5-vl/ and test/data/llm_outputs.safetensors): two small random-weight language
models as transformers saves them, and every hidden state transformers computes on a padded batch.

Not run by CI, and the tests never need Python. Run it by hand from the repository root in a venv
with torch and transformers (the versions go into the output's metadata):

    /work/refvenv/bin/python packages/text-encoders/tools/make_llm_references.py

The models:
  * llama-decoder/  LlamaForCausalLM as HiDream's text_encoder_4 (Llama 3.1) and HunyuanVideo's
                    text_encoder are: grouped-query attention (4 heads, 2 key/value heads), SwiGLU,
                    RMSNorm, rotary with llama3 frequency scaling at Llama 3.1's settings (theta
                    500000, factor 8, low / high frequency factors 1 / 4, original context 8192), so
                    that the head's frequencies fall in all three bands; bfloat16 weights, as
                    those checkpoints ship.
  * qwen2-5-vl/     Qwen2_5_VLForConditionalGeneration as Qwen-Image's text_encoder: biased q/k/v,
                    multimodal rotary (mrope sections), a tiny vision tower the text path never uses.
Every parameter gets Gaussian noise of PERTURBATION of its own spread (or of 1 for a constant
tensor such as a norm's ones), so no layer is an identity.

Outputs, for model `m` in (llama, qwen) and dtype `d` in (float32, bfloat16): `m.input_ids` and
`m.attention_mask` (int32, a batch of two right-padded rows, as the pipelines' tokenizers pad),
`m.{d}.hidden_states` (layers + 1, batch, tokens, hidden) widened to float32: transformers'
`output_hidden_states`, the embeddings first and the final norm's output last.
"""
import os

import safetensors.torch
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, '..', 'test', 'data')
PERTURBATION = 0.5
VOCAB = 300
TOKENS = 11
DTYPES = {'float32': torch.float32, 'bfloat16': torch.bfloat16}

LLAMA = LlamaConfig(
    vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
    num_key_value_heads=2, max_position_embeddings=131072, rms_norm_eps=1e-5, bos_token_id=1, eos_token_id=2,
    pad_token_id=None, rope_theta=500000.0,
    rope_scaling={'rope_type': 'llama3', 'factor': 8.0, 'low_freq_factor': 1.0, 'high_freq_factor': 4.0,
                  'original_max_position_embeddings': 8192})
QWEN = Qwen2_5_VLConfig(
    text_config=dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=4,
                     num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-6, rope_theta=1000000.0,
                     rope_scaling={'type': 'mrope', 'mrope_section': [2, 1, 1]}, bos_token_id=None, eos_token_id=None),
    vision_config=dict(depth=1, hidden_size=16, intermediate_size=16, num_heads=2, out_hidden_size=32, fullatt_block_indexes=[0]))


def perturb(model, generator):
    with torch.no_grad():
        for _, p in model.named_parameters():
            spread = p.std().item() if p.numel() > 1 else 0.0
            p.add_(torch.randn(p.shape, generator=generator) * PERTURBATION * (spread if spread > 0 else 1.0))


def batch(generator):
    ids = torch.randint(3, VOCAB, (2, TOKENS), generator=generator)
    mask = torch.ones(2, TOKENS, dtype=torch.int64)
    mask[1, 7:] = 0  # the second prompt is shorter: right padding, as the pipelines' tokenizers pad
    ids[1, 7:] = 0
    return ids, mask


def main():
    generator = torch.Generator().manual_seed(0)
    out = {}
    for name, cls, config, folder, stored in [('llama', LlamaForCausalLM, LLAMA, 'llama-decoder', torch.bfloat16),
                                              ('qwen', Qwen2_5_VLForConditionalGeneration, QWEN, 'qwen2-5-vl', torch.float32)]:
        torch.manual_seed(1)
        model = cls(config).eval()
        perturb(model, generator)
        path = os.path.join(DATA, folder)
        model.to(stored).save_pretrained(path)
        ids, mask = batch(generator)
        out[f'{name}.input_ids'] = ids.to(torch.int32)
        out[f'{name}.attention_mask'] = mask.to(torch.int32)
        for dtype_name, dtype in DTYPES.items():
            loaded = cls.from_pretrained(path, torch_dtype=dtype).eval()
            with torch.no_grad():
                result = loaded(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            out[f'{name}.{dtype_name}.hidden_states'] = torch.stack(result.hidden_states).to(torch.float32).contiguous()
    meta = {'torch': torch.__version__, 'transformers': transformers.__version__}
    safetensors.torch.save_file(out, os.path.join(DATA, 'llm_outputs.safetensors'), metadata=meta)
    print('wrote', {k: tuple(v.shape) for k, v in out.items()}, meta)


if __name__ == '__main__':
    main()
