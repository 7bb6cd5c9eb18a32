// The flags every command that loads a model shares: --dtype (what the model computes in, as
// diffusers' torch_dtype) and --weight-dtype (how float32 compute holds 16-bit checkpoints),
// and the load options they become for a family's loads.
import { Option } from 'commander';

import { COMPUTE_DTYPES, type ComputeDtype } from '@ditcache/diffusion';
import type { CliLoadOptions } from '@ditcache/diffusion/cli';

/** The load options of --dtype and --weight-dtype, as every family's load takes them. */
export function loadOptions(flags: { dtype: ComputeDtype; weightDtype: 'float32' | 'stored' }): CliLoadOptions {
  return { dtype: flags.dtype, weightDtype: flags.weightDtype };
}

/** --dtype: what the model computes in (diffusers' torch_dtype); a bad value is a usage error listing the valid ones. */
export function dtypeOption(): Option {
  return new Option(
    '--dtype <dtype>',
    "what the model computes in, as diffusers' torch_dtype (bfloat16: half the memory and, on CPUs with AMX / AVX512-BF16 and GPUs, faster)",
  )
    .choices(COMPUTE_DTYPES)
    .default('float32');
}

/** --weight-dtype: how float32 compute holds 16-bit checkpoints. */
export function weightDtypeOption(): Option {
  return new Option('--weight-dtype <dtype>', 'with --dtype float32, stored: keep bf16 / f16 weights as stored (half the memory of float32; the same results)')
    .choices(['float32', 'stored'])
    .default('float32');
}
