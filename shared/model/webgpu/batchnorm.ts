// Fused BatchNorm for the webgpu backend: a training-mode BatchNorm, with the ReLU and the residual
// addition that follow it in a ResNet block, in three dispatches forward and three backward, where
// TF.js ops take ~27 (moments, rsqrt, the affine map, relu, add, and the closed-form gradient).
//
//   forward   partial   per row chunk and channel: sum(x - x0) and sum((x - x0)^2), x0 = the channel's
//                       first value (a shift that keeps the variance exact when it is small next to
//                       the mean)
//             finalize  mean, unbiased variance (for the moving statistics), 1/sqrt(var + eps)
//             apply     y = relu?((x - mean) * invstd * gamma + beta (+ residual))
//   backward  partial   g = dy * (y > 0 when relu): sums of g and g * xhat per chunk
//             finalize  dbeta = sum g, dgamma = sum g * xhat
//             apply     dx = gamma * invstd / M * (M g - dbeta - xhat * dgamma); dresidual = g
// which is PyTorch's closed form, as shared/model/forward.ts computes it. xhat is recomputed from x,
// so nothing beyond x, y and per-channel vectors is kept for the backward pass. Channels are handled
// four at a time (vec4), so C must be a multiple of 4 (every ResNet-50 width is).
import { tf } from '../../backend/tf.js';
import type { BnPost } from '../forward.js';
import { grid } from '../../backend/webgpu/kernels.js';
import { PER_ELEMENT_MAIN, bindingDecls, runRaw, type RawKernel } from '../../backend/webgpu/raw.js';
import { WolfpackError } from '../../errors.js';

type Info = tf.TensorInfo;
interface DisposableBackend extends tf.KernelBackend {
  disposeData(dataId: object, force?: boolean): boolean;
}

const V4 = 'vec4<f32>';
const TARGET_WORKGROUPS = 1024;

function pow2Floor(n: number): number {
  let p = 1;
  while (p * 2 <= n) p *= 2;
  return p;
}

/** How the row reduction is split: `cg` vec4 channels x `lanes` rows per 256-thread workgroup. */
export interface ReducePlan {
  rows: number;
  cv: number;
  cg: number;
  lanes: number;
  chunks: number;
  chunkRows: number;
  blocks: number;
}

export function reducePlan(rows: number, channels: number, target = TARGET_WORKGROUPS): ReducePlan {
  const cv = channels / 4;
  const cg = Math.min(pow2Floor(cv), 64);
  const lanes = 256 / cg;
  const blocks = Math.ceil(cv / cg);
  const want = Math.max(1, Math.min(Math.ceil(target / blocks), Math.ceil(rows / lanes)));
  const chunkRows = Math.ceil(rows / want);
  return { rows, cv, cg, lanes, chunks: Math.ceil(rows / chunkRows), chunkRows, blocks };
}

/**
 * Sums each lane's (s1, s2) over the workgroup's LANES lanes, then runs `body` on lane 0 with the sums in sA[tid],
 * sB[tid].
 */
const reduceTail = (body: string): string => `
  sA[tid] = s1; sB[tid] = s2;
  workgroupBarrier();
  for (var step = LANES / 2; step > 0; step = step / 2) {
    if (lane < step) { sA[tid] = sA[tid] + sA[tid + step * CG]; sB[tid] = sB[tid] + sB[tid + step * CG]; }
    workgroupBarrier();
  }
  if (lane == 0 && live) {
    ${body}
  }`;

const REDUCE_TAIL = reduceTail(`partial[(chunk * 2) * CV + cv] = sA[tid];
    partial[(chunk * 2 + 1) * CV + cv] = sB[tid];`);

function reduceHeader(p: ReducePlan): string {
  return (
    `const CV = ${p.cv}; const CG = ${p.cg}; const LANES = ${p.lanes}; const ROWS = ${p.rows}; ` +
    `const CHUNK_ROWS = ${p.chunkRows};
var<workgroup> sA : array<${V4}, 256>;
var<workgroup> sB : array<${V4}, 256>;`
  );
}

const REDUCE_PROLOGUE = `
  let tid = i32(lid.x); let lane = tid / CG; let cv0 = i32(wid.x) * CG + tid % CG;
  let live = cv0 < CV; let cv = min(cv0, CV - 1);
  let chunk = i32(wid.y);
  let r0 = chunk * CHUNK_ROWS; let r1 = min(r0 + CHUNK_ROWS, ROWS);
  var s1 = vec4<f32>(0.0); var s2 = vec4<f32>(0.0);`;

/** Forward partial sums: sum(x - x0), sum((x - x0)^2) over each chunk of rows. */
function statsPartialKernel(p: ReducePlan): RawKernel {
  return {
    name: 'BnStatsPartial',
    key: `wp_bn_sp_${JSON.stringify(p)}`,
    workgroups: [p.blocks, p.chunks, 1],
    code: () => `${bindingDecls(['partial'], ['x'], () => V4)}
${reduceHeader(p)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {${REDUCE_PROLOGUE}
  let shift = x[cv];
  if (live) {
    for (var r = r0 + lane; r < r1; r = r + LANES) { let d = x[r * CV + cv] - shift; s1 = s1 + d; s2 = s2 + d * d; }
  }${REDUCE_TAIL}
}`,
  };
}

/** Backward partial sums: sum(g), sum(g * xhat), g = dy masked by y > 0 when relu. */
function gradPartialKernel(p: ReducePlan, relu: boolean): RawKernel {
  const ins = relu ? ['dy', 'x', 'moments', 'y'] : ['dy', 'x', 'moments'];
  return {
    name: 'BnGradPartial',
    key: `wp_bn_gp_${relu}_${JSON.stringify(p)}`,
    workgroups: [p.blocks, p.chunks, 1],
    code: () => `${bindingDecls(['partial'], ins, () => V4)}
${reduceHeader(p)}
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {${REDUCE_PROLOGUE}
  let m = moments[cv]; let inv = moments[CV + cv];
  if (live) {
    for (var r = r0 + lane; r < r1; r = r + LANES) {
      let i = r * CV + cv;
      ${relu ? 'let g = select(vec4<f32>(0.0), dy[i], y[i] > vec4<f32>(0.0));' : 'let g = dy[i];'}
      s1 = s1 + g; s2 = s2 + g * ((x[i] - m) * inv);
    }
  }${REDUCE_TAIL}
}`,
  };
}

/**
 * Sums the chunks' partial sums per channel: a workgroup takes `cg` vec4 channels and spreads the
 * chunks over 256/cg lanes, then adds the lanes pairwise. `finish` turns the totals (t1, t2) into the
 * outputs.
 */
function finalizeKernel(
  name: string,
  p: ReducePlan,
  outputs: string[],
  inputs: string[],
  consts: string,
  finish: string,
): RawKernel {
  const cg = Math.min(pow2Floor(p.cv), 16);
  const lanes = 256 / cg;
  return {
    name,
    key: `wp_bn_${name}_${cg}_${consts}_${JSON.stringify(p)}`,
    workgroups: [Math.ceil(p.cv / cg), 1, 1],
    code: () =>
      `${bindingDecls(outputs, ['partial', ...inputs], () => V4)}
const CV = ${p.cv}; const CG = ${cg}; const LANES = ${lanes}; const CHUNKS = ${p.chunks}; ` +
      `const ROWS = ${p.rows}; ${consts}
var<workgroup> sA : array<${V4}, 256>;
var<workgroup> sB : array<${V4}, 256>;
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {
  let tid = i32(lid.x); let lane = tid / CG; let cv0 = i32(wid.x) * CG + tid % CG;
  let live = cv0 < CV; let cv = min(cv0, CV - 1);
  var s1 = vec4<f32>(0.0); var s2 = vec4<f32>(0.0);
  for (var c = lane; c < CHUNKS; c = c + LANES) { s1 = s1 + partial[(c * 2) * CV + cv]; ` +
      `s2 = s2 + partial[(c * 2 + 1) * CV + cv]; }${reduceTail(`let t1 = sA[tid]; let t2 = sB[tid];
    ${finish}`)}
}`,
  };
}

function statsFinalizeKernel(p: ReducePlan, eps: number): RawKernel {
  const m = p.rows;
  return finalizeKernel(
    'BnStatsFinalize',
    p,
    ['moments', 'mean', 'varUnbiased'],
    ['x'],
    `const EPS = ${eps.toExponential(9)}; const INV_M = ${(1 / m).toExponential(9)}; ` +
      `const UNBIAS = ${(m > 1 ? m / (m - 1) : 1).toExponential(9)};`,
    `let d = t1 * INV_M;
    let v = max((t2 - t1 * d) * INV_M, vec4<f32>(0.0));
    let mu = x[cv] + d;
    mean[cv] = mu;
    varUnbiased[cv] = v * UNBIAS;
    moments[cv] = mu;
    moments[CV + cv] = inverseSqrt(v + vec4<f32>(EPS));`,
  );
}

function gradFinalizeKernel(p: ReducePlan): RawKernel {
  return finalizeKernel(
    'BnGradFinalize',
    p,
    ['sums', 'dbeta', 'dgamma'],
    [],
    '',
    'dbeta[cv] = t1;\n    dgamma[cv] = t2;\n    sums[cv] = t1;\n    sums[CV + cv] = t2;',
  );
}

/** y = relu?((x - mean) * scale + beta (+ r)), scale = invstd * gamma; elementwise, vec4. */
function applyKernel(
  rows: number,
  cv: number,
  relu: boolean,
  residual: boolean,
  mode: 'train' | 'infer',
  eps = 0,
): RawKernel {
  const units = rows * cv;
  const g = grid(Math.ceil(units / 256));
  const ins = [
    ...(mode === 'train' ? ['x', 'moments'] : ['x', 'mean', 'variance']),
    'gamma',
    'beta',
    ...(residual ? ['r'] : []),
  ];
  const mu = mode === 'train' ? 'moments[c]' : 'mean[c]';
  const inv = mode === 'train' ? 'moments[CV + c]' : 'inverseSqrt(variance[c] + vec4<f32>(EPS))';
  return {
    name: mode === 'train' ? 'BnApply' : 'BnInferApply',
    key: `wp_bn_apply_${mode}_${rows}_${cv}_${relu}_${residual}_${eps}_${g[0]}`,
    workgroups: g,
    code: () => `${bindingDecls(['y'], ins, () => V4)}
const UNITS = ${units}; const CV = ${cv}; const GX = ${g[0]}; const EPS = ${eps.toExponential(9)};
${PER_ELEMENT_MAIN}
  let c = i % CV;
  var v = (x[i] - ${mu}) * (${inv} * gamma[c]) + beta[c];
  ${residual ? 'v = v + r[i];' : ''}
  ${relu ? 'v = max(v, vec4<f32>(0.0));' : ''}
  y[i] = v;
}`,
  };
}

/** dx (and dresidual = g) from the summed gradients. */
function gradApplyKernel(rows: number, cv: number, relu: boolean, residual: boolean): RawKernel {
  const units = rows * cv;
  const g = grid(Math.ceil(units / 256));
  const ins = ['dy', 'x', 'moments', 'gamma', 'sums', ...(relu ? ['y'] : [])];
  return {
    name: 'BnGradApply',
    key: `wp_bn_gapply_${rows}_${cv}_${relu}_${residual}_${g[0]}`,
    workgroups: g,
    code: () =>
      `${bindingDecls(residual ? ['dx', 'dr'] : ['dx'], ins, () => V4)}
const UNITS = ${units}; const CV = ${cv}; const GX = ${g[0]}; const M = ${rows}.0; ` +
      `const INV_M = ${(1 / rows).toExponential(9)};
${PER_ELEMENT_MAIN}
  let c = i % CV;
  ${relu ? 'let g = select(vec4<f32>(0.0), dy[i], y[i] > vec4<f32>(0.0));' : 'let g = dy[i];'}
  let inv = moments[CV + c];
  let xhat = (x[i] - moments[c]) * inv;
  dx[i] = (gamma[c] * inv * INV_M) * (M * g - sums[c] - xhat * sums[CV + c]);
  ${residual ? 'dr[i] = g;' : ''}
}`,
  };
}

function rowsOf(x: tf.Tensor4D): number {
  return x.shape[0] * x.shape[1] * x.shape[2];
}

function tensor(info: Info): tf.Tensor {
  return tf.engine().makeTensorFromTensorInfo(info);
}

/** tensor() over each of runRaw's outputs, keeping their count in the type. */
function tensors<T extends Info[]>(infos: [...T]): { [I in keyof T]: tf.Tensor } {
  return infos.map(tensor) as { [I in keyof T]: tf.Tensor };
}

/** Whether the fused kernels handle this input (webgpu active, NHWC with C % 4 == 0). */
export function canFuseBatchNorm(x: tf.Tensor): boolean {
  return tf.getBackend() === 'webgpu' && x.rank === 4 && (x.shape[3] ?? 1) % 4 === 0 && x.dtype === 'float32';
}

/**
 * Training-mode BatchNorm (+ residual, + ReLU) on webgpu, with the gradient of PyTorch's closed form
 * for x, gamma, beta (and the residual). onStats receives the batch mean and unbiased variance.
 */
export function batchNormTrainWebGpu(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
  onStats: (mean: tf.Tensor1D, unbiasedVariance: tf.Tensor1D) => void,
  post: BnPost = {},
): tf.Tensor4D {
  if (!canFuseBatchNorm(x))
    throw new WolfpackError(
      'E_BACKEND',
      `batchNormTrainWebGpu: needs the webgpu backend and C % 4 == 0, got ${x.shape}`,
    );
  const relu = post.relu ?? false;
  const residual = post.residual !== undefined;
  const rows = rowsOf(x);
  const C = x.shape[3];
  const plan = reducePlan(rows, C);
  const fn = (...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const [xIn, gIn, bIn, rIn] = args as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor?];
    const backend = tf.backend() as DisposableBackend;
    const [partial] = runRaw(backend, statsPartialKernel(plan), [xIn], [{ shape: [plan.chunks, 2, C] }]);
    // moments = [mean; invstd], for the apply and backward kernels (buffers per dispatch are limited to 8).
    const [moments, mean, varU] = tensors(
      runRaw(
        backend,
        statsFinalizeKernel(plan, eps),
        [partial, xIn],
        [{ shape: [2, C] }, { shape: [C] }, { shape: [C] }],
      ),
    );
    backend.disposeData(partial.dataId);
    onStats(mean as tf.Tensor1D, varU as tf.Tensor1D);
    const [y] = tensors(
      runRaw(
        backend,
        applyKernel(rows, C / 4, relu, residual, 'train'),
        [xIn, moments, gIn, bIn, ...(residual ? [rIn!] : [])],
        [{ shape: x.shape }],
      ),
    );
    save([xIn, moments, gIn, y]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]) => {
        const [sx, smoments, sgamma, sy] = saved;
        const b = tf.backend() as DisposableBackend;
        const [gp] = runRaw(
          b,
          gradPartialKernel(plan, relu),
          [dy, sx, smoments, ...(relu ? [sy] : [])],
          [{ shape: [plan.chunks, 2, C] }],
        );
        const [sums, dbeta, dgamma] = tensors(
          runRaw(b, gradFinalizeKernel(plan), [gp], [{ shape: [2, C] }, { shape: [C] }, { shape: [C] }]),
        );
        b.disposeData(gp.dataId);
        const outs = tensors(
          runRaw(
            b,
            gradApplyKernel(rows, C / 4, relu, residual),
            [dy, sx, smoments, sgamma, sums, ...(relu ? [sy] : [])],
            [{ shape: x.shape }, ...(residual ? [{ shape: x.shape }] : [])],
          ),
        );
        sums.dispose();
        return residual ? [outs[0], dgamma, dbeta, outs[1]] : [outs[0], dgamma, dbeta];
      },
    };
  };
  const op = tf.customGrad(fn as unknown as Parameters<typeof tf.customGrad>[0]);
  return (residual ? op(x, gamma, beta, post.residual!) : op(x, gamma, beta)) as tf.Tensor4D;
}

/** Evaluation-mode BatchNorm (moving statistics) + residual + ReLU in one dispatch (no gradient). */
export function batchNormInferWebGpu(
  x: tf.Tensor4D,
  mean: tf.Tensor1D,
  variance: tf.Tensor1D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
  post: BnPost = {},
): tf.Tensor4D {
  if (!canFuseBatchNorm(x))
    throw new WolfpackError(
      'E_BACKEND',
      `batchNormInferWebGpu: needs the webgpu backend and C % 4 == 0, got ${x.shape}`,
    );
  const residual = post.residual !== undefined;
  const inputs = [x, mean, variance, gamma, beta, ...(residual ? [post.residual!] : [])];
  const [y] = runRaw(
    tf.backend(),
    applyKernel(rowsOf(x), x.shape[3] / 4, post.relu ?? false, residual, 'infer', eps),
    inputs,
    [{ shape: x.shape }],
  );
  return tensor(y) as tf.Tensor4D;
}
