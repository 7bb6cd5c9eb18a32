"""The diffusers + PyTorch side of ditcache's speed benchmarks (a tool, never part of a package).

The TypeScript harness (bench/harness.ts next to this file) runs it with the Python the user
named in DITCACHE_REFERENCE_PYTHON, a venv with torch and diffusers. Commands:

  python reference.py make CLASS CONFIG_JSON SEED OUT_DIR
      Builds diffusers.CLASS(**config) with random weights (torch.manual_seed(SEED), the
      class's own init) and writes it with save_pretrained to OUT_DIR.

  python reference.py serve CLASS MODEL_DIR INPUTS THREADS [DTYPE]
      Loads the model (from_pretrained with torch_dtype DTYPE: float32, the default, bfloat16
      or float16) and the inputs (a safetensors file whose names are the keyword arguments of
      the model's forward; floating-point ones are cast to DTYPE, as a pipeline in that dtype
      passes them) once, then answers one JSON command per stdin line with one JSON line on
      stdout:
        {"cmd": "time", "reps": N, "warmup": W}  -> {"seconds": [...], "cpu": [...]}: wall and
                                                    process CPU time of each forward call
        {"cmd": "run", "out": PATH}             -> writes the output as `sample` to PATH (in DTYPE)
        {"cmd": "profile", "reps": N}           -> the fastest of N profiled calls: {"classes":
                                                    {cls: seconds}, "wall": s, "ops": [slowest ops
                                                    with their input shapes]}
        {"cmd": "threads", "threads": N}        -> torch.set_num_threads(N)
        {"cmd": "quit"}
Every forward is model(**inputs, return_dict=False)[0] under torch.inference_mode().

  python reference.py ops < SPEC_JSON
      Times single torch ops on random inputs (see ops()), for op-benchmark.ts.
"""
import importlib
import json
import sys
import time

import torch
import torch.nn.functional as F


def load_class(name):
    import diffusers

    return getattr(diffusers, name)


def make(class_name, config_json, seed, out_dir):
    torch.manual_seed(int(seed))
    model = load_class(class_name)(**json.loads(config_json))
    model.save_pretrained(out_dir, safe_serialization=True)
    print(json.dumps({"parameters": sum(p.numel() for p in model.parameters())}))


# Ranges named for the op classes the TypeScript profile reports, so that torch's time per
# class is comparable: the aten ops run inside one of these functions count for its class, the
# others for the class their aten name says (see classify).
LABELLED_FUNCTIONS = [
    ("torch.nn", "Linear.forward", "linear"),
    ("torch.nn", "LayerNorm.forward", "norm"),
    ("torch.nn", "RMSNorm.forward", "norm"),
    ("torch.nn", "GroupNorm.forward", "norm"),
    ("diffusers.models.normalization", "RMSNorm.forward", "norm"),
    ("diffusers.models.normalization", "FP32LayerNorm.forward", "norm"),
    ("torch.nn.functional", "scaled_dot_product_attention", "attention"),
    ("diffusers.models.transformers.transformer_flux", "apply_rotary_emb", "rope"),
    ("diffusers.models.transformers.transformer_hidream_image", "apply_rope", "rope"),
    # Wan's rotary is a function nested in WanAttnProcessor.__call__: its ops count as elementwise.
]

LABEL_PREFIX = "ditcache::"


def label_functions():
    """Wraps each function of LABELLED_FUNCTIONS that exists in a torch.profiler range."""
    for module_name, attr_path, label in LABELLED_FUNCTIONS:
        try:
            owner = importlib.import_module(module_name)
        except ImportError:
            continue
        *parents, attr = attr_path.split(".")
        for p in parents:
            owner = getattr(owner, p, None)
        if owner is None or not hasattr(owner, attr):
            continue
        original = getattr(owner, attr)

        def wrapped(*args, __original=original, __label=LABEL_PREFIX + label, **kwargs):
            with torch.profiler.record_function(__label):
                return __original(*args, **kwargs)

        setattr(owner, attr, wrapped)


# The classes of op-profile.ts (linear, attention, norm, rope, elementwise, copy, view, gather,
# create); aten ops outside these sets are reported as 'other:<name>'.
ELEMENTWISE = {
    "add", "add_", "sub", "mul", "mul_", "div", "neg", "exp", "silu", "gelu", "sigmoid", "tanh", "pow",
    "rsqrt", "sqrt", "cos", "sin", "where", "clamp", "mean", "sum", "softmax", "_softmax", "abs",
    "einsum",
}
COPIES = {"cat", "copy_", "contiguous", "clone", "repeat", "repeat_interleave", "stack", "to", "_to_copy",
          "type_as", "float"}
VIEWS = {"view", "reshape", "transpose", "permute", "unsqueeze", "squeeze", "slice", "select", "as_strided",
         "flatten", "t", "narrow", "detach", "alias", "_unsafe_view", "lift_fresh", "expand", "chunk", "split",
         "split_with_sizes", "unbind", "item", "_local_scalar_dense"}
GATHERS = {"topk", "index", "index_select", "gather", "scatter_reduce_", "bincount", "argsort", "sort", "cumsum",
           "floor_divide", "eq", "nonzero"}
CREATES = {"zeros", "zeros_like", "ones", "arange", "empty", "empty_like", "full", "tensor", "scalar_tensor"}


def classify(aten_name):
    op = aten_name.split("::", 1)[-1]
    if op in ("linear", "addmm", "mm", "matmul", "bmm", "baddbmm"):
        return "linear"
    if op in ("layer_norm", "native_layer_norm", "rms_norm", "group_norm"):
        return "norm"
    if "scaled_dot_product" in op or "flash_attention" in op:
        return "attention"
    for name, ops in (("elementwise", ELEMENTWISE), ("copy", COPIES), ("view", VIEWS), ("gather", GATHERS), ("create", CREATES)):
        if op in ops:
            return name
    return "other:" + op


def class_times(events):
    """Seconds per class, and per op and input shapes: each outermost aten op counts once, for
    its enclosing label if any."""
    totals = {}
    ops = {}
    for e in events:
        if not e.name.startswith("aten::"):
            continue
        label = None
        parent = e.cpu_parent
        nested = False
        while parent is not None:
            if parent.name.startswith("aten::"):
                nested = True
                break
            if label is None and parent.name.startswith(LABEL_PREFIX):
                label = parent.name[len(LABEL_PREFIX):]
            parent = parent.cpu_parent
        if nested:
            continue
        cls = label or classify(e.name)
        seconds = e.cpu_time_total * 1e-6
        totals[cls] = totals.get(cls, 0.0) + seconds
        shapes = " ".join("(" + "x".join(str(d) for d in s) + ")" for s in (e.input_shapes or []) if s)
        key = (cls, e.name, shapes)
        calls, total = ops.get(key, (0, 0.0))
        ops[key] = (calls + 1, total + seconds)
    return totals, ops


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def serve(class_name, model_dir, inputs_path, threads, dtype="float32"):
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(int(threads))
    torch_dtype = DTYPES[dtype]
    model = load_class(class_name).from_pretrained(model_dir, torch_dtype=torch_dtype).eval()
    inputs = {k: v.to(torch_dtype) if v.is_floating_point() else v for k, v in load_file(inputs_path).items()}

    def forward():
        with torch.inference_mode():
            return model(**inputs, return_dict=False)[0]

    import diffusers

    print(json.dumps({"ready": True, "torch": torch.__version__, "diffusers": diffusers.__version__,
                      "threads": torch.get_num_threads(), "dtype": dtype,
                      "parameters": sum(p.numel() for p in model.parameters())}), flush=True)
    labelled = False
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "time":
            for _ in range(cmd.get("warmup", 1)):
                forward()
            seconds = []
            cpu = []
            for _ in range(cmd["reps"]):
                c0 = time.process_time()
                t0 = time.perf_counter()
                forward()
                seconds.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            reply = {"seconds": seconds, "cpu": cpu}
        elif cmd["cmd"] == "run":
            save_file({"sample": forward().contiguous()}, cmd["out"])
            reply = {"ok": True}
        elif cmd["cmd"] == "profile":
            # Each call is profiled on its own and the fastest one is reported: on a shared
            # machine the others mostly measure who else was running.
            if not labelled:
                label_functions()
                labelled = True
            forward()
            best = None
            for _ in range(cmd["reps"]):
                with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], record_shapes=True) as prof:
                    t0 = time.perf_counter()
                    forward()
                    wall = time.perf_counter() - t0
                if best is None or wall < best[0]:
                    best = (wall, prof.events())
            wall, events = best
            totals, ops = class_times(events)
            slowest = sorted(ops.items(), key=lambda kv: -kv[1][1])[: cmd.get("top", 40)]
            reply = {
                "classes": totals,
                "wall": wall,
                "ops": [{"cls": c, "key": f"{name} {shapes}", "calls": n, "seconds": t}
                        for (c, name, shapes), (n, t) in slowest],
            }
        elif cmd["cmd"] == "threads":
            torch.set_num_threads(int(cmd["threads"]))
            reply = {"threads": torch.get_num_threads()}
        elif cmd["cmd"] == "quit":
            break
        else:
            reply = {"error": "unknown command " + cmd["cmd"]}
        print(json.dumps(reply), flush=True)


def time_op(fn, budget, max_reps):
    """Seconds of each call of fn (after 3 untimed ones), until `budget` seconds or max_reps calls."""
    for _ in range(3):
        fn()
    seconds = []
    start = time.perf_counter()
    while len(seconds) < max_reps and (len(seconds) < 10 or time.perf_counter() - start < budget):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return seconds


def ops():
    """Times single torch ops. stdin: {"threads": [..], "budget": s, "max_reps": n, "cases":
    [{"name", "inputs": {name: shape}, "expr": Python expression over the inputs, torch and F}]};
    stdout: {"torch": version, "threads": {n: {case name: [seconds per call]}}}."""
    spec = json.load(sys.stdin)
    torch.manual_seed(0)
    results = {}
    with torch.inference_mode():
        for threads in spec["threads"]:
            torch.set_num_threads(int(threads))
            per_case = {}
            for case in spec["cases"]:
                scope = {"torch": torch, "F": F}
                scope.update({k: torch.randn(shape) for k, shape in case["inputs"].items()})
                fn = eval("lambda: " + case["expr"], scope)
                per_case[case["name"]] = time_op(fn, spec["budget"], spec["max_reps"])
            results[str(threads)] = per_case
    print(json.dumps({"torch": torch.__version__, "threads": results}))


if __name__ == "__main__":
    command, *rest = sys.argv[1:]
    {"make": make, "serve": serve, "ops": ops}[command](*rest)
