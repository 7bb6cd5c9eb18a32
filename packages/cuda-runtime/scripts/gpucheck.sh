#!/usr/bin/env bash
# `npm run gpucheck`, and the same check on a GPU machine that has no Node.js: every CUDA kernel
# against the CPU, then a FLUX.1-width forward in bfloat16 timed against PyTorch on the same GPU.
# It only runs what a build made elsewhere left here, so a bare machine needs no compiler, npm or
# network. Node comes from $NODE, else `node` on the PATH, else .node-dist/bin/node at the
# repository root (a git-ignored place to unpack a Node binary into). See the runtime README.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"

node="${NODE:-}"
if [ -z "$node" ]; then
  if command -v node >/dev/null 2>&1; then
    node="$(command -v node)"
  elif [ -x "$root/.node-dist/bin/node" ]; then
    node="$root/.node-dist/bin/node"
  else
    echo "gpucheck: no Node.js here: set NODE=/path/to/node, put node on the PATH, or unpack a Node >= 20.19" >&2
    echo "  linux-x64 build into $root/.node-dist (so that .node-dist/bin/node exists)" >&2
    exit 2
  fi
fi
if [ ! -x "$node" ]; then
  echo "gpucheck: NODE=$node is not an executable file" >&2
  exit 2
fi
if [ ! -f "$here/../dist/src/selfcheck.js" ]; then
  echo "gpucheck: packages/cuda-runtime/dist is missing: run \`npm run build\` (on a machine with nvcc) before carrying the checkout here" >&2
  exit 2
fi
exec "$node" --enable-source-maps "$here/gpucheck.mjs" "$@"
