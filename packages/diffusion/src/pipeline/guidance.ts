// Classifier-free guidance, as every diffusers pipeline combines its two predictions:
// uncond + scale * (cond - uncond).
import { add, mul, sub, tidy, type Tensor } from '@ditcache/cuda-runtime';

/** The guided prediction from the unconditional and the conditional one. */
export function classifierFreeGuidance(uncond: Tensor, cond: Tensor, scale: number): Tensor {
  return tidy(() => add(uncond, mul(sub(cond, uncond), scale)));
}

/** The same for a prediction of the batch [uncond, cond] (batched CFG: one transformer call). */
export function batchedGuidance(prediction: Tensor, scale: number): Tensor {
  return tidy(() => {
    const [uncond, cond] = prediction.split(2, 0);
    return classifierFreeGuidance(uncond, cond, scale);
  });
}
