// Kernels that replace slow ones of TF.js 4.22's webgpu backend, registered for 'webgpu' only.
//
// Conv2DBackpropFilter: TF.js runs one thread per filter element, each looping over batch x height x
// width (1.77 s of GPU time per ResNet-50 step at batch 32 on an H100). Here the weight gradient is a
// matrix product dW[m, n] = sum_k A[k, m] * dy[k, n], with k = (image, out row, out col),
// m = (kh, kw, ci) and A the im2col patches of x, which the kernel reads straight from x (no patches
// buffer). Workgroups compute 64x64 tiles of dW (4x4 per thread, 16-deep slices of k staged in shared
// memory), and k is split over enough workgroups to fill the GPU; a second dispatch sums the splits in
// a fixed order, so the result is deterministic.
//
// Conv2DBackpropInput: 1x1 stride-1 unpadded convolutions (most of ResNet-50) become one matrix
// product dx = dy . W^T on TF.js's tiled matmul; other shapes keep TF.js's kernel.
import { tf } from '../tf.js';
import { nhwcConvInfo, type ConvAttrs } from '../conv-attrs.js';
import { PER_ELEMENT_MAIN, bindingDecls, runRaw, type RawKernel } from './raw.js';
import { WolfpackError } from '../../errors.js';

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
interface DisposableBackend extends tf.KernelBackend {
  disposeData(dataId: object, force?: boolean): boolean;
}

/** Workgroups the split-k product aims for (an H100 runs ~1000 such 256-thread groups at once). */
export const TARGET_WORKGROUPS = 1024;
const TILE = 64;
const KSTEP = 16;

/** Splits a count of workgroups over x and y so that neither exceeds the per-dimension limit. */
export function grid(count: number, limit = 65535): [number, number, number] {
  if (count <= limit) return [Math.max(1, count), 1, 1];
  const y = Math.ceil(count / limit);
  return [Math.ceil(count / y), y, 1];
}

/** The split of k: `splits` chunks of `chunk` rows (a multiple of 16). */
export function splitK(m: number, n: number, k: number, target = TARGET_WORKGROUPS): { splits: number; chunk: number } {
  const tiles = Math.ceil(m / TILE) * Math.ceil(n / TILE);
  const want = Math.max(1, Math.min(Math.ceil(target / tiles), Math.ceil(k / 256)));
  const chunk = Math.ceil(k / want / KSTEP) * KSTEP;
  return { splits: Math.ceil(k / chunk), chunk };
}

interface ConvShape {
  N: number;
  H: number;
  W: number;
  CI: number;
  OH: number;
  OW: number;
  CO: number;
  KH: number;
  KW: number;
  SH: number;
  SW: number;
  PT: number;
  PL: number;
}

/**
 * The tiled product C[s, m, n] = sum over k in split s of A[k, m] * B[k, n] (needs constants M, NN, K,
 * KCHUNK and functions loadA4(k, m) / loadB4(k, n), four consecutive m / n, and store(s, m, n, v)):
 * 16x16 threads, each 4x4 of a 64x64 tile, 16-deep slices of k staged in shared memory.
 */
const TILED_GEMM_MAIN = `var<workgroup> As : array<vec4<f32>, 256>;
var<workgroup> Bs : array<vec4<f32>, 256>;
@compute @workgroup_size(16, 16, 1)
fn main(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {
  let tx = i32(lid.x); let ty = i32(lid.y); let tid = ty * 16 + tx;
  let n0 = i32(wid.x) * 64; let m0 = i32(wid.y) * 64; let s = i32(wid.z);
  let kBegin = s * KCHUNK; let kEnd = min(kBegin + KCHUNK, K);
  let lk = tid / 16; let lv = tid % 16;
  var acc0 = vec4<f32>(0.0); var acc1 = vec4<f32>(0.0); var acc2 = vec4<f32>(0.0); var acc3 = vec4<f32>(0.0);
  for (var k0 = kBegin; k0 < kEnd; k0 = k0 + 16) {
    let k = k0 + lk;
    var av = vec4<f32>(0.0); var bv = vec4<f32>(0.0);
    if (k < kEnd) { av = loadA4(k, m0 + lv * 4); bv = loadB4(k, n0 + lv * 4); }
    As[lk * 16 + lv] = av; Bs[lk * 16 + lv] = bv;
    workgroupBarrier();
    for (var kk = 0; kk < 16; kk = kk + 1) {
      let a = As[kk * 16 + ty]; let b = Bs[kk * 16 + tx];
      acc0 = acc0 + a.x * b; acc1 = acc1 + a.y * b; acc2 = acc2 + a.z * b; acc3 = acc3 + a.w * b;
    }
    workgroupBarrier();
  }
  let m = m0 + ty * 4; let n = n0 + tx * 4;
  store(s, m, n, acc0); store(s, m + 1, n, acc1); store(s, m + 2, n, acc2); store(s, m + 3, n, acc3);
}`;

function convShape(info: tf.backend_util.Conv2DInfo): ConvShape {
  return {
    N: info.batchSize,
    H: info.inHeight,
    W: info.inWidth,
    CI: info.inChannels,
    OH: info.outHeight,
    OW: info.outWidth,
    CO: info.outChannels,
    KH: info.filterHeight,
    KW: info.filterWidth,
    SH: info.strideHeight,
    SW: info.strideWidth,
    PT: info.padInfo.top,
    PL: info.padInfo.left,
  };
}

function filterGradKernel(s: ConvShape, splits: number, chunk: number): RawKernel {
  const M = s.KH * s.KW * s.CI;
  const NN = s.CO;
  const K = s.N * s.OH * s.OW;
  const pointwise = s.KH === 1 && s.KW === 1 && s.SH === 1 && s.SW === 1 && s.PT === 0 && s.PL === 0;
  const vecA = s.CI % 4 === 0;
  const vecB = NN % 4 === 0;
  const key = `wp_conv_dw_${Object.values(s).join('_')}_${splits}_${chunk}`;
  const loadA = pointwise
    ? vecA
      ? `fn loadA4(k : i32, m : i32) -> vec4<f32> { ` +
        `if (m >= M) { return vec4<f32>(0.0); } return x4[(k * CI + m) / 4]; }`
      : `fn loadA1(k : i32, m : i32) -> f32 { if (m >= M) { return 0.0; } return x[k * CI + m]; }
         fn loadA4(k : i32, m : i32) -> vec4<f32> { ` +
        `return vec4<f32>(loadA1(k, m), loadA1(k, m + 1), loadA1(k, m + 2), loadA1(k, m + 3)); }`
    : `fn xIndex(k : i32, m : i32) -> i32 {
        let ci = m % CI; let t = m / CI; let kw = t % KW; let kh = t / KW;
        let ow = k % OW; let t2 = k / OW; let oh = t2 % OH; let n = t2 / OH;
        let ih = oh * SH - PT + kh; let iw = ow * SW - PL + kw;
        if (ih < 0 || ih >= H || iw < 0 || iw >= W) { return -1; }
        return ((n * H + ih) * W + iw) * CI + ci;
      }
      ${
        vecA
          ? `fn loadA4(k : i32, m : i32) -> vec4<f32> {
            if (m >= M) { return vec4<f32>(0.0); }
            let i = xIndex(k, m); if (i < 0) { return vec4<f32>(0.0); }
            return x4[i / 4];
          }`
          : `fn loadA1(k : i32, m : i32) -> f32 {
            if (m >= M) { return 0.0; }
            let i = xIndex(k, m); if (i < 0) { return 0.0; }
            return x[i];
          }
          fn loadA4(k : i32, m : i32) -> vec4<f32> { ` +
            `return vec4<f32>(loadA1(k, m), loadA1(k, m + 1), loadA1(k, m + 2), loadA1(k, m + 3)); }`
      }`;
  const loadB = vecB
    ? `fn loadB4(k : i32, n : i32) -> vec4<f32> { ` +
      `if (n >= NN) { return vec4<f32>(0.0); } return dy4[(k * NN + n) / 4]; }`
    : `fn loadB1(k : i32, n : i32) -> f32 { if (n >= NN) { return 0.0; } return dy[k * NN + n]; }
       fn loadB4(k : i32, n : i32) -> vec4<f32> { ` +
      `return vec4<f32>(loadB1(k, n), loadB1(k, n + 1), loadB1(k, n + 2), loadB1(k, n + 3)); }`;
  const code = (): string => `
${bindingDecls(['partial'], [vecA ? 'x4' : 'x', vecB ? 'dy4' : 'dy'], (n) => (n.endsWith('4') ? 'vec4<f32>' : 'f32'))}
const M = ${M}; const NN = ${NN}; const K = ${K}; const KCHUNK = ${chunk};
const H = ${s.H}; const W = ${s.W}; const CI = ${s.CI}; const OH = ${s.OH}; const OW = ${s.OW};
const KW = ${s.KW}; const SH = ${s.SH}; const SW = ${s.SW}; const PT = ${s.PT}; const PL = ${s.PL};
${loadA}
${loadB}
fn store(s : i32, m : i32, n : i32, v : vec4<f32>) {
  if (m >= M) { return; }
  let base = (s * M + m) * NN + n;
  for (var j = 0; j < 4; j = j + 1) { if (n + j < NN) { partial[base + j] = v[j]; } }
}
${TILED_GEMM_MAIN}
`;
  return { name: 'ConvFilterGradGemm', key, code, workgroups: [Math.ceil(NN / TILE), Math.ceil(M / TILE), splits] };
}

/**
 * The input gradient of a convolution as an implicit GEMM: dx[m, ci] = sum over k of A[k, m] * B[k, ci]
 * with m = (image, in row, in col), k = (kh, kw, co), A[k, m] the dy value that input position m
 * contributed to through filter tap (kh, kw), zero where none did (padding, or between a stride's
 * steps), read straight from dy, and B[k, ci] = filter[kh, kw, ci, co]. One dispatch; the tiles of
 * TILED_GEMM_MAIN with all of k in one split.
 */
function inputGradKernel(s: ConvShape): RawKernel {
  const M = s.N * s.H * s.W;
  const K = s.KH * s.KW * s.CO;
  const key = `wp_conv_dx_${Object.values(s).join('_')}`;
  const code = (): string => `
${bindingDecls(['dx'], ['dy', 'w'], () => 'f32')}
const M = ${M}; const NN = ${s.CI}; const K = ${K}; const KCHUNK = ${K};
const H = ${s.H}; const W = ${s.W}; const CI = ${s.CI}; const OH = ${s.OH}; const OW = ${s.OW}; const CO = ${s.CO};
const KW = ${s.KW}; const SH = ${s.SH}; const SW = ${s.SW}; const PT = ${s.PT}; const PL = ${s.PL};
fn loadA1(k : i32, m : i32) -> f32 {
  if (m >= M) { return 0.0; }
  let co = k % CO; let t = k / CO; let kw = t % KW; let kh = t / KW;
  let iw = m % W; let t2 = m / W; let ih = t2 % H; let n = t2 / H;
  let oy = ih + PT - kh; let ox = iw + PL - kw;
  if (oy < 0 || ox < 0 || oy % SH != 0 || ox % SW != 0) { return 0.0; }
  let oh = oy / SH; let ow = ox / SW;
  if (oh >= OH || ow >= OW) { return 0.0; }
  return dy[((n * OH + oh) * OW + ow) * CO + co];
}
fn loadA4(k : i32, m : i32) -> vec4<f32> {
  return vec4<f32>(loadA1(k, m), loadA1(k, m + 1), loadA1(k, m + 2), loadA1(k, m + 3));
}
fn loadB1(k : i32, n : i32) -> f32 {
  if (n >= NN) { return 0.0; }
  let co = k % CO; let t = k / CO;
  return w[(t * CI + n) * CO + co];
}
fn loadB4(k : i32, n : i32) -> vec4<f32> {
  return vec4<f32>(loadB1(k, n), loadB1(k, n + 1), loadB1(k, n + 2), loadB1(k, n + 3));
}
fn store(s : i32, m : i32, n : i32, v : vec4<f32>) {
  if (m >= M) { return; }
  for (var j = 0; j < 4; j = j + 1) { if (n + j < NN) { dx[m * NN + n + j] = v[j]; } }
}
${TILED_GEMM_MAIN}
`;
  return { name: 'ConvInputGradGemm', key, code, workgroups: [Math.ceil(s.CI / TILE), Math.ceil(M / TILE), 1] };
}

/** out[i] = sum over s of partial[s, i] (i < size), in order of s. */
export function sumSplitsKernel(size: number, splits: number): RawKernel {
  const vec = size % 4 === 0;
  const units = vec ? size / 4 : size;
  const groups = grid(Math.ceil(units / 256));
  const t = vec ? 'vec4<f32>' : 'f32';
  return {
    name: 'SumSplits',
    key: `wp_sum_splits_${size}_${splits}_${groups[0]}`,
    workgroups: groups,
    code: () => `
${bindingDecls(['out'], ['partial'], () => t)}
const UNITS = ${units}; const SPLITS = ${splits}; const GX = ${groups[0]};
${PER_ELEMENT_MAIN}
  var acc = partial[i];
  for (var s = 1; s < SPLITS; s = s + 1) { acc = acc + partial[s * UNITS + i]; }
  out[i] = acc;
}`,
  };
}

/** Conv2DBackpropFilter for webgpu (NHWC, dilation 1): the split-k product described above. */
export function conv2dBackpropFilterWebGpu(args: KernelArgs): Info {
  const backend = args.backend as DisposableBackend;
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const attrs = args.attrs as unknown as ConvAttrs & { filterShape: [number, number, number, number] };
  if (attrs.dataFormat !== 'NHWC')
    throw new WolfpackError('E_BACKEND', 'Conv2DBackpropFilter (webgpu): only NHWC is supported');
  const info = nhwcConvInfo(x.shape as [number, number, number, number], attrs.filterShape, attrs);
  const s = convShape(info);
  const M = s.KH * s.KW * s.CI;
  const K = s.N * s.OH * s.OW;
  const { splits, chunk } = splitK(M, s.CO, K);
  const [partial] = runRaw(backend, filterGradKernel(s, splits, chunk), [x, dy], [{ shape: [splits, M, s.CO] }]);
  if (splits === 1) {
    return { dataId: partial.dataId, shape: attrs.filterShape, dtype: 'float32' };
  }
  const [out] = runRaw(backend, sumSplitsKernel(M * s.CO, splits), [partial], [{ shape: attrs.filterShape }]);
  backend.disposeData(partial.dataId);
  return out;
}

function kernelFunc(name: string): (args: KernelArgs) => Info {
  const k = tf.getKernel(name, 'webgpu');
  if (!k) throw new WolfpackError('E_BACKEND', `webgpu backend has no ${name} kernel`);
  return k.kernelFunc as unknown as (args: KernelArgs) => Info;
}

let stockBackpropInput: ((args: KernelArgs) => Info) | undefined;

/**
 * Whether the input gradients that are not a plain matrix product (3x3, strided) run as wolfpack's
 * implicit GEMM (inputGradKernel) rather than TF.js's direct kernel. Off by default until a GPU run
 * shows it faster (`bench/webgpu.ts --dx-gemm`, scripts/gpu/run.sh); lavapipe checks its numerics.
 */
export const inputGradGemm = { enabled: false };

/**
 * Conv2DBackpropInput: 1x1 stride 1 unpadded as dy . W^T on TF.js's matmul; others TF.js's kernel, or
 * the implicit GEMM above when inputGradGemm is enabled.
 */
export function conv2dBackpropInputWebGpu(args: KernelArgs): Info {
  const backend = args.backend as DisposableBackend;
  const { dy, filter } = args.inputs as { dy: Info; filter: Info };
  const attrs = args.attrs as unknown as ConvAttrs & { inputShape: [number, number, number, number] };
  const [KH, KW, CI, CO] = filter.shape as [number, number, number, number];
  const strides = typeof attrs.strides === 'number' ? [attrs.strides, attrs.strides] : attrs.strides;
  const unpadded =
    attrs.pad === 'valid' ||
    attrs.pad === 'same' ||
    attrs.pad === 0 ||
    (Array.isArray(attrs.pad) && attrs.pad.every((p) => p[0] === 0 && p[1] === 0));
  if (attrs.dataFormat !== 'NHWC' || KH !== 1 || KW !== 1 || strides[0] !== 1 || strides[1] !== 1 || !unpadded) {
    return inputGradGemm.enabled && attrs.dataFormat === 'NHWC'
      ? conv2dBackpropInputGemm(backend, dy, filter, attrs)
      : stockBackpropInput!(args);
  }
  const rows = attrs.inputShape[0] * attrs.inputShape[1] * attrs.inputShape[2];
  const reshape = kernelFunc('Reshape');
  const dy2 = reshape({ inputs: { x: dy }, backend, attrs: { shape: [1, rows, CO] } });
  const w2 = reshape({ inputs: { x: filter }, backend, attrs: { shape: [1, CI, CO] } });
  try {
    const prod = kernelFunc('BatchMatMul')({
      inputs: { a: dy2, b: w2 },
      backend,
      attrs: { transposeA: false, transposeB: true },
    });
    const out = reshape({ inputs: { x: prod }, backend, attrs: { shape: attrs.inputShape } });
    backend.disposeData(prod.dataId);
    return out;
  } finally {
    backend.disposeData(dy2.dataId);
    backend.disposeData(w2.dataId);
  }
}

function conv2dBackpropInputGemm(
  backend: DisposableBackend,
  dy: Info,
  filter: Info,
  attrs: ConvAttrs & { inputShape: [number, number, number, number] },
): Info {
  const info = nhwcConvInfo(attrs.inputShape, filter.shape as [number, number, number, number], attrs);
  const s = convShape(info);
  const [dx] = runRaw(backend, inputGradKernel(s), [dy, filter], [{ shape: attrs.inputShape }]);
  return dx;
}

function replace(kernelName: string, fn: (args: KernelArgs) => Info): void {
  if (tf.getKernel(kernelName, 'webgpu')) tf.unregisterKernel(kernelName, 'webgpu');
  tf.registerKernel({ kernelName, backendName: 'webgpu', kernelFunc: fn as unknown as tf.KernelFunc });
}

let registered = false;

/** Registers wolfpack's webgpu kernels (once; after @tensorflow/tfjs-backend-webgpu is imported). */
export function registerWebGpuKernels(): void {
  if (registered) return;
  const stock = tf.getKernel('Conv2DBackpropInput', 'webgpu');
  if (!stock)
    throw new WolfpackError('E_BACKEND', 'registerWebGpuKernels: @tensorflow/tfjs-backend-webgpu is not loaded');
  stockBackpropInput = stock.kernelFunc as unknown as (args: KernelArgs) => Info;
  replace('Conv2DBackpropFilter', conv2dBackpropFilterWebGpu);
  replace('Conv2DBackpropInput', conv2dBackpropInputWebGpu);
  registered = true;
}
