// What TF.js hands its convolution-gradient kernels (Conv2DBackpropFilter / Input), and the geometry of
// such a convolution as TF.js computes it, for wolfpack's replacements on wasm and webgpu.
import { tf } from './tf.js';

export type Shape4 = [number, number, number, number];

/** The attributes both convolution-gradient kernels get. */
export interface ConvAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | tf.backend_util.ExplicitPadding;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
}

/** The geometry of an NHWC convolution (dilation 1) of an input of `inputShape` with a filter of `filterShape`. */
export function nhwcConvInfo(inputShape: Shape4, filterShape: Shape4, attrs: ConvAttrs): tf.backend_util.Conv2DInfo {
  return tf.backend_util.computeConv2DInfo(
    inputShape,
    filterShape,
    attrs.strides,
    1,
    attrs.pad,
    attrs.dimRoundingMode,
    false,
    'channelsLast',
  );
}
