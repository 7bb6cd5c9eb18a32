"""The PyTorch side of gpucheck.mjs: diffusers' FluxTransformer2DModel on the same weights and
inputs as ours, timed on the same device.

  python gpucheck_torch.py MODEL_DIR INPUTS DTYPE DEVICE REPS WARMUP SAMPLE_OUT

Loads the model with torch_dtype=DTYPE onto DEVICE ('cuda:0', or 'cpu' to try the script out),
writes one forward's output as `sample` (float32) to SAMPLE_OUT, then prints one JSON line:
{"torch", "diffusers", "device", "seconds": [wall time of each of REPS calls after WARMUP]},
the device synchronized before and after each call.
"""
import json
import sys
import time

import diffusers
import torch
from safetensors.torch import load_file, save_file


def main(model_dir, inputs_path, dtype_name, device, reps, warmup, sample_out):
    dtype = getattr(torch, dtype_name)
    model = diffusers.FluxTransformer2DModel.from_pretrained(model_dir, torch_dtype=dtype).to(device).eval()
    # As diffusers' FluxPipeline passes them: everything in the model's dtype except the
    # guidance scale, which it makes in float32.
    inputs = {name: t.to(device=device, dtype=torch.float32 if name == "guidance" else dtype)
              for name, t in load_file(inputs_path).items()}
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def forward():
        with torch.inference_mode():
            return model(**inputs, return_dict=False)[0]

    save_file({"sample": forward().float().cpu().contiguous()}, sample_out)
    for _ in range(int(warmup)):
        forward()
    seconds = []
    for _ in range(int(reps)):
        sync()
        t0 = time.perf_counter()
        forward()
        sync()
        seconds.append(time.perf_counter() - t0)
    print(json.dumps({"torch": torch.__version__, "diffusers": diffusers.__version__,
                      "device": torch.cuda.get_device_name(device) if cuda else "cpu", "seconds": seconds}))


if __name__ == "__main__":
    if len(sys.argv) != 8:
        sys.exit(__doc__)
    main(*sys.argv[1:])
