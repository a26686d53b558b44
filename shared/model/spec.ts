// ResNet-50 v1.5 as a list of named parameters, in the two naming schemes wolfpack reads:
// MindSpore's model zoo (what the lab's resnet50.ckpt holds) and torchvision/timm. The flavour also
// fixes the padding rule and the BatchNorm epsilon (see forward.ts). `width` scales every channel
// count (64 is the real network; tests use 4 to keep reference files small).

export type Flavour = 'mindspore' | 'torchvision';
export const FLAVOURS: readonly Flavour[] = ['mindspore', 'torchvision'];

export interface ModelConfig {
  flavour: Flavour;
  /** Stem width: 64 for ResNet-50. Stage planes are width, 2w, 4w, 8w; block outputs 4x planes. */
  width: number;
  numClasses: number;
}

export type ParamRole = 'conv' | 'bn.gamma' | 'bn.beta' | 'bn.mean' | 'bn.var' | 'fc.weight' | 'fc.bias';

export interface ParamSpec {
  /** Name in the flavour's files, e.g. layer1.0.bn1.gamma or layer1.0.bn1.weight. */
  name: string;
  role: ParamRole;
  /** Shape as the model computes with it: convs HWIO, the dense weight [in, out]. */
  shape: number[];
  /** Shape as files store it: convs OIHW, the dense weight [out, in]. */
  fileShape: number[];
  /** In the classification head (dropped when a pretrained head is replaced). */
  head: boolean;
  /** Moving statistics are state, not trainable parameters. */
  trainable: boolean;
}

export interface ConvSpec {
  weight: string;
  kernel: number;
  stride: number;
  inC: number;
  outC: number;
}
export interface BnSpec {
  gamma: string;
  beta: string;
  mean: string;
  variance: string;
  channels: number;
}
export interface BlockSpec {
  conv1: ConvSpec;
  bn1: BnSpec;
  conv2: ConvSpec;
  bn2: BnSpec;
  conv3: ConvSpec;
  bn3: BnSpec;
  downsample?: { conv: ConvSpec; bn: BnSpec };
}
export interface NetworkSpec {
  config: ModelConfig;
  stem: { conv: ConvSpec; bn: BnSpec };
  blocks: BlockSpec[];
  fc: { weight: string; bias: string; inF: number; outF: number };
  params: ParamSpec[];
  /** BatchNorm epsilon: MindSpore's model zoo uses 1e-4, torchvision 1e-5. */
  eps: number;
}

export const STAGE_BLOCKS = [3, 4, 6, 3] as const;
export const EXPANSION = 4;
/** Moving average factor: moving = MOMENTUM*moving + (1-MOMENTUM)*batch (MindSpore 0.9, torch 0.1). */
export const BN_MOVING_MOMENTUM = 0.9;

const NAMES = {
  mindspore: {
    bn: ['gamma', 'beta', 'moving_mean', 'moving_variance'],
    downsample: 'down_sample_layer',
    fc: 'end_point',
    eps: 1e-4,
  },
  torchvision: {
    bn: ['weight', 'bias', 'running_mean', 'running_var'],
    downsample: 'downsample',
    fc: 'fc',
    eps: 1e-5,
  },
} as const;

/** Builds the parameter list and structure of ResNet-50 v1.5 for a flavour and width. */
export function resnet50Spec(config: ModelConfig): NetworkSpec {
  const n = NAMES[config.flavour];
  const params: ParamSpec[] = [];
  const conv = (weight: string, kernel: number, stride: number, inC: number, outC: number): ConvSpec => {
    params.push({
      name: weight,
      role: 'conv',
      shape: [kernel, kernel, inC, outC],
      fileShape: [outC, inC, kernel, kernel],
      head: false,
      trainable: true,
    });
    return { weight, kernel, stride, inC, outC };
  };
  const bn = (prefix: string, channels: number): BnSpec => {
    const [gamma, beta, mean, variance] = n.bn;
    const [g, b, m, v] = [`${prefix}.${gamma}`, `${prefix}.${beta}`, `${prefix}.${mean}`, `${prefix}.${variance}`];
    params.push({ name: g, role: 'bn.gamma', shape: [channels], fileShape: [channels], head: false, trainable: true });
    params.push({ name: b, role: 'bn.beta', shape: [channels], fileShape: [channels], head: false, trainable: true });
    params.push({ name: m, role: 'bn.mean', shape: [channels], fileShape: [channels], head: false, trainable: false });
    params.push({ name: v, role: 'bn.var', shape: [channels], fileShape: [channels], head: false, trainable: false });
    return { gamma: g, beta: b, mean: m, variance: v, channels };
  };
  const w = config.width;
  const stem = { conv: conv('conv1.weight', 7, 2, 3, w), bn: bn('bn1', w) };
  const blocks: BlockSpec[] = [];
  let inC = w;
  STAGE_BLOCKS.forEach((count, stage) => {
    const planes = w * 2 ** stage;
    const outC = planes * EXPANSION;
    for (let b = 0; b < count; b++) {
      const p = `layer${stage + 1}.${b}`;
      const stride = b === 0 && stage > 0 ? 2 : 1;
      const block: BlockSpec = {
        conv1: conv(`${p}.conv1.weight`, 1, 1, inC, planes),
        bn1: bn(`${p}.bn1`, planes),
        conv2: conv(`${p}.conv2.weight`, 3, stride, planes, planes),
        bn2: bn(`${p}.bn2`, planes),
        conv3: conv(`${p}.conv3.weight`, 1, 1, planes, outC),
        bn3: bn(`${p}.bn3`, outC),
      };
      if (stride !== 1 || inC !== outC) {
        block.downsample = {
          conv: conv(`${p}.${n.downsample}.0.weight`, 1, stride, inC, outC),
          bn: bn(`${p}.${n.downsample}.1`, outC),
        };
      }
      blocks.push(block);
      inC = outC;
    }
  });
  const fc = { weight: `${n.fc}.weight`, bias: `${n.fc}.bias`, inF: inC, outF: config.numClasses };
  params.push({
    name: fc.weight,
    role: 'fc.weight',
    shape: [inC, config.numClasses],
    fileShape: [config.numClasses, inC],
    head: true,
    trainable: true,
  });
  params.push({
    name: fc.bias,
    role: 'fc.bias',
    shape: [config.numClasses],
    fileShape: [config.numClasses],
    head: true,
    trainable: true,
  });
  return { config, stem, blocks, fc, params, eps: n.eps };
}

/** Prefix of the head's tensors in a flavour's files ('end_point.' or 'fc.'). */
export function headPrefix(flavour: Flavour): string {
  return `${NAMES[flavour].fc}.`;
}

/** Guesses the flavour from tensor names: MindSpore's BN is gamma/beta, torchvision's weight/bias. */
export function detectFlavour(names: Iterable<string>): Flavour | undefined {
  for (const name of names) {
    if (name === 'bn1.gamma' || name === 'bn1.moving_mean' || name.startsWith('end_point.')) return 'mindspore';
    if (name === 'bn1.running_mean' || name === 'bn1.weight' || name.startsWith('fc.')) return 'torchvision';
  }
  return undefined;
}
