// transformers' ACT2FN names that CLIP and T5 configs use, on runtime tensors.
import { gelu, mul, relu, sigmoid, type Tensor } from '@ditcache/cuda-runtime';
import { ConfigError } from '@ditcache/diffusion';

export type Activation = (x: Tensor) => Tensor;

const ACTIVATIONS: Record<string, Activation> = {
  gelu: (x) => gelu(x),
  gelu_new: (x) => gelu(x, { approximate: 'tanh' }),
  gelu_pytorch_tanh: (x) => gelu(x, { approximate: 'tanh' }),
  // OpenAI CLIP's x * sigmoid(1.702 x).
  quick_gelu: (x) => mul(x, sigmoid(mul(x, 1.702))),
  relu: (x) => relu(x),
};

export function activation(name: string, where: string): Activation {
  const act = ACTIVATIONS[name];
  if (!act) throw new ConfigError(`${where}: activation '${name}' is not supported (supported: ${Object.keys(ACTIVATIONS).join(', ')})`);
  return act;
}
