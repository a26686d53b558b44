// The wasm backend of TF.js 4.22 has no Conv2DBackpropFilter kernel (tfjs issue 8474), so full
// fine-tuning cannot compute convolution weight gradients there. This module registers one, built
// only from kernels wasm has, called directly on the backend (no engine, no tape):
//  - 1x1 convolutions with stride 1 (most of ResNet-50): dW = x^T . dy, one BatchMatMul.
//  - everything else: the weight gradient is itself a convolution. With x as [Ci, H, W, N] (batch and
//    channels swapped) and dy as a [OH, OW, N, Co] filter, a stride-1 convolution dilated by the
//    forward stride gives dW as [Ci, KH, KW, Co]; a transpose turns it into HWIO.
import { tf } from '../tf.js';
import { nhwcConvInfo, type ConvAttrs, type Shape4 } from '../conv-attrs.js';
import { WolfpackError } from '../../errors.js';

type Info = tf.TensorInfo;
type KernelArgs = { inputs: tf.NamedTensorInfoMap; backend: tf.KernelBackend; attrs?: tf.NamedAttrMap };
interface DisposableBackend extends tf.KernelBackend {
  disposeData(dataId: object, force?: boolean): boolean;
}

function kernel(name: string): (args: KernelArgs) => Info {
  const k = tf.getKernel(name, 'wasm');
  if (!k) throw new WolfpackError('E_BACKEND', `wasm backend has no ${name} kernel`);
  return k.kernelFunc as unknown as (args: KernelArgs) => Info;
}

export interface BackpropFilterAttrs extends ConvAttrs {
  filterShape: Shape4;
}

/** Conv2DBackpropFilter for the wasm backend, from Transpose, Reshape, Slice, BatchMatMul and Conv2D. */
export function conv2dBackpropFilterWasm(args: KernelArgs): Info {
  const backend = args.backend as DisposableBackend;
  const { x, dy } = args.inputs as { x: Info; dy: Info };
  const attrs = args.attrs as unknown as BackpropFilterAttrs;
  if (attrs.dataFormat !== 'NHWC')
    throw new WolfpackError('E_BACKEND', 'Conv2DBackpropFilter (wasm): only NHWC is supported');
  const info = nhwcConvInfo(x.shape as [number, number, number, number], attrs.filterShape, attrs);
  const {
    batchSize: N,
    inHeight: H,
    inWidth: W,
    inChannels: Ci,
    filterHeight: KH,
    filterWidth: KW,
    strideHeight: sh,
    strideWidth: sw,
    outHeight: OH,
    outWidth: OW,
    outChannels: Co,
  } = info;
  const temps: Info[] = [];
  const keep = (t: Info): Info => {
    temps.push(t);
    return t;
  };
  const reshape = kernel('Reshape');
  const transpose = kernel('Transpose');
  try {
    if (KH === 1 && KW === 1 && sh === 1 && sw === 1 && info.padInfo.top === 0 && info.padInfo.left === 0) {
      // An explicit Transpose then a plain product: wasm's BatchMatMul with transposeA is ~40x slower.
      const x2 = keep(reshape({ inputs: { x }, backend, attrs: { shape: [N * H * W, Ci] } }));
      const xT = keep(transpose({ inputs: { x: x2 }, backend, attrs: { perm: [1, 0] } }));
      const x3 = keep(reshape({ inputs: { x: xT }, backend, attrs: { shape: [1, Ci, N * H * W] } }));
      const dy2 = keep(reshape({ inputs: { x: dy }, backend, attrs: { shape: [1, N * OH * OW, Co] } }));
      const prod = keep(
        kernel('BatchMatMul')({ inputs: { a: x3, b: dy2 }, backend, attrs: { transposeA: false, transposeB: false } }),
      );
      return reshape({ inputs: { x: prod }, backend, attrs: { shape: [1, 1, Ci, Co] } });
    }
    const xT = keep(transpose({ inputs: { x }, backend, attrs: { perm: [3, 1, 2, 0] } })); // [Ci,H,W,N]
    const dyT = keep(transpose({ inputs: { x: dy }, backend, attrs: { perm: [1, 2, 0, 3] } })); // [OH,OW,N,Co]
    const { top, left } = info.padInfo;
    // Pad bottom/right so the output is at least KH x KW; rows the forward pass never read are sliced off.
    const bottom = Math.max(0, KH - 1 + (OH - 1) * sh - (H - 1) - top);
    const right = Math.max(0, KW - 1 + (OW - 1) * sw - (W - 1) - left);
    const pad: tf.backend_util.ExplicitPadding = [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ];
    const conv = keep(
      kernel('Conv2D')({
        inputs: { x: xT, filter: dyT },
        backend,
        attrs: { strides: [1, 1], pad, dataFormat: 'NHWC', dilations: [sh, sw] } as unknown as tf.NamedAttrMap,
      }),
    );
    let cropped = conv;
    if (conv.shape[1] !== KH || conv.shape[2] !== KW) {
      cropped = keep(
        kernel('Slice')({ inputs: { x: conv }, backend, attrs: { begin: [0, 0, 0, 0], size: [Ci, KH, KW, Co] } }),
      );
    }
    return transpose({ inputs: { x: cropped }, backend, attrs: { perm: [1, 2, 0, 3] } }); // [KH,KW,Ci,Co]
  } finally {
    for (const t of temps) backend.disposeData(t.dataId);
  }
}

let registered = false;

/** Registers the kernel once; a no-op if wasm already has one (a future TF.js). */
export function registerWasmConv2dBackpropFilter(): void {
  if (registered || tf.getKernel('Conv2DBackpropFilter', 'wasm')) return;
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName: 'wasm',
    kernelFunc: conv2dBackpropFilterWasm as unknown as tf.KernelFunc,
  });
  registered = true;
}
