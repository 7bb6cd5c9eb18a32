// QwenImagePipeline's true CFG: the classifier-free combination, rescaled per token so that its
// norm over the channels equals the conditional prediction's.
import { div, mul, sqrt, square, sum, tidy, type Tensor } from '@ditcache/cuda-runtime';
import { classifierFreeGuidance } from '@ditcache/diffusion';

/** torch.norm(x, dim=-1, keepdim=True): reduced in float32, rounded once to x's dtype. */
function channelNorm(x: Tensor): Tensor {
  return tidy(() => sqrt(sum(square(x.cast('float32')), x.rank - 1, true)).cast(x.dtype));
}

/** uncond + scale * (cond - uncond), times |cond| / |that| per token. */
export function normRescaledGuidance(uncond: Tensor, cond: Tensor, scale: number): Tensor {
  return tidy(() => {
    const combined = classifierFreeGuidance(uncond, cond, scale);
    return mul(combined, div(channelNorm(cond), channelNorm(combined)));
  });
}
