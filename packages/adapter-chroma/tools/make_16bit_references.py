"""Makes the 16-bit reference data of packages/adapter-chroma (test/goldens/): diffusers'
ChromaTransformer2DModel and ChromaPipeline loaded with torch_dtype=torch.bfloat16 and
torch.float16 from each
float32 reference folder (make_references.py wrote them): one transformer call on the float32
forward golden's inputs, with every block's outputs, and one pipeline call (CFG) on the float32
pipeline golden's inputs. The tests compare our 16-bit runs with these and both with float32.

Not run by CI and never by the tests. Run it by hand after make_references.py, in the same venv
(from the repository root):

    /work/refvenv-cd/bin/python packages/adapter-chroma/tools/make_16bit_references.py packages/adapter-chroma/test/goldens

The attention mask is the boolean key mask, as in make_references.py (whose processor this uses).
Everything is deterministic, so a rerun on the same torch and diffusers writes the same tensors.
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from diffusers import ChromaPipeline, ChromaTransformer2DModel
import json

sys.path.insert(0, str(Path(__file__).parent))
from make_references import SETS, use_key_mask  # noqa: E402

torch.set_num_threads(1)

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def record_forward(folder, dtype):
    golden = load_file(str(folder / "transformer_forward.safetensors"))
    transformer = ChromaTransformer2DModel.from_pretrained(str(folder / "transformer"), torch_dtype=dtype).eval()
    use_key_mask(transformer)
    recorded = {}

    def keep(name):
        def hook(_module, _args, output):
            outputs = output if isinstance(output, tuple) else (output,)
            for i, o in enumerate(outputs):
                recorded[f"{name}.out{i}"] = o.detach().clone()
        return hook

    for i, block in enumerate(transformer.transformer_blocks):
        block.register_forward_hook(keep(f"transformer_blocks.{i}"))
    for i, block in enumerate(transformer.single_transformer_blocks):
        block.register_forward_hook(keep(f"single_transformer_blocks.{i}"))
    # What a caller does with float32 inputs for a 16-bit model: latents and embeddings to its dtype;
    # timestep, ids and mask as they are (the model rounds the timestep itself).
    with torch.no_grad():
        sample = transformer(
            hidden_states=golden["hidden_states"].to(dtype),
            encoder_hidden_states=golden["encoder_hidden_states"].to(dtype),
            timestep=golden["timestep"],
            img_ids=golden["img_ids"],
            txt_ids=golden["txt_ids"],
            attention_mask=golden["attention_mask"],
            return_dict=False,
        )[0]
    out = {k: v.float().contiguous() for k, v in {**recorded, "sample": sample}.items()}
    error = ((out["sample"].double() - golden["sample"].double()).norm() / golden["sample"].double().norm()).item()
    return out, error


def record_pipeline(folder, dtype):
    """The pipeline golden's CFG call in `dtype`: embeddings and latents rounded to it by the caller, masks as they are."""
    golden = load_file(str(folder / "pipeline.safetensors"))
    meta = json.loads((folder / "meta.json").read_text())
    pipe = ChromaPipeline.from_pretrained(str(folder), torch_dtype=dtype, text_encoder=None, tokenizer=None)
    use_key_mask(pipe.transformer)
    with torch.no_grad():
        latents = pipe(prompt_embeds=golden["prompt_embeds"].to(dtype), prompt_attention_mask=golden["prompt_attention_mask"],
                       negative_prompt_embeds=golden["negative_prompt_embeds"].to(dtype),
                       negative_prompt_attention_mask=golden["negative_prompt_attention_mask"], height=meta["height"], width=meta["width"],
                       num_inference_steps=meta["num_inference_steps"], guidance_scale=meta["guidance_scale"],
                       latents=golden["latents_in"].to(dtype), output_type="latent").images
    return {"latents_out": latents.float().contiguous()}


def main(goldens):
    for set_name in SETS:
        folder = Path(goldens) / set_name
        for tag, dtype in DTYPES.items():
            tensors, error = record_forward(folder, dtype)
            save_file(tensors, folder / f"transformer_forward_{tag}.safetensors")
            save_file(record_pipeline(folder, dtype), folder / f"pipeline_{tag}.safetensors")
            print(set_name, tag, "diffusers sample vs float32:", error)


if __name__ == "__main__":
    main(sys.argv[1])
