// The training job's options, once: `wolfpack train`, `demo` and `coordinator` parse their flags from this
// table, `--help` and docs/CONFIG.md describe them from it, and the library's train() checks its options
// against it (api/train.ts). A spec's `api` name is the JobOptions / TrainOptions field it sets; kind
// `seconds` flags are milliseconds there (--timeout 30 is timeoutMs 30000).
import { MAX_CHUNK_KIB } from '../shared/allreduce/ring.js';
import { WIRE_FORMATS } from '../shared/allreduce/wire.js';
import { BACKENDS } from '../shared/backend/select.js';
import { DEFAULT_OUT } from './checkpoints.js';
import { DEFAULT_HOLD_TIMEOUT_MS } from './hold.js';
import type { FlagSpec } from '../shared/config/flags.js';

/** What the job is: data, model, optimiser, schedule. */
export const JOB_FLAGS: readonly FlagSpec[] = [
  {
    name: 'data',
    kind: 'string',
    value: 'DIR',
    api: 'data',
    defaultText: 'required',
    describe: 'ImageFolder root: train/CLASS/* and val/CLASS/* (JPEG, PNG or WebP)',
  },
  {
    name: 'weights',
    kind: 'string',
    value: 'FILE',
    api: 'weights',
    defaultText: 'required unless --resume',
    describe:
      'pretrained ResNet-50 weights (MindSpore .ckpt or safetensors); ' +
      'their dense head is dropped and a new one trained',
  },
  {
    name: 'workers',
    kind: 'int',
    value: 'N',
    min: 1,
    max: 256,
    default: 2,
    api: 'workers',
    describe:
      'workers: local processes for train and demo; for coordinator, how many to wait for before training starts',
  },
  {
    name: 'epochs',
    kind: 'int',
    value: 'N',
    min: 1,
    default: 20,
    api: 'epochs',
    describe: 'passes over the training set; each ends with validation and checkpoints',
  },
  {
    name: 'batch-size',
    kind: 'int',
    value: 'N',
    min: 1,
    default: 18,
    api: 'batchSize',
    describe: 'the global batch, split over the workers (at least --workers)',
  },
  {
    name: 'lr',
    kind: 'number',
    value: 'X',
    min: 0,
    default: 0.001,
    api: 'lr',
    describe: 'learning rate of Momentum: accum = momentum*accum + grad; w -= lr*accum',
  },
  {
    name: 'momentum',
    kind: 'number',
    value: 'X',
    min: 0,
    max: 1,
    default: 0.9,
    api: 'momentum',
    describe: "Momentum's momentum",
  },
  {
    name: 'freeze',
    kind: 'choice',
    choices: ['none', 'backbone'],
    default: 'none',
    api: 'freeze',
    describe: 'backbone trains only the new head (the lab\'s "fixed features" variant); none fine-tunes everything',
  },
  {
    name: 'bn',
    kind: 'choice',
    choices: ['train', 'frozen'],
    default: 'train',
    api: 'bn',
    describe:
      'BatchNorm with batch statistics, moving averages updated (train), or with the moving statistics (frozen)',
  },
  {
    name: 'image-size',
    kind: 'int',
    value: 'PX',
    min: 16,
    max: 1024,
    default: 224,
    api: 'imageSize',
    describe: 'side of the square crops the network sees',
  },
  {
    name: 'seed',
    kind: 'int',
    value: 'N',
    min: 0,
    default: 0,
    api: 'seed',
    describe: "data order, augmentation and the new head's initialisation",
  },
  {
    name: 'augment',
    kind: 'choice',
    choices: ['train', 'none'],
    default: 'train',
    api: 'augment',
    describe: 'training augmentation: RandomResizedCrop + flip (train), or the evaluation transform (none)',
  },
  {
    name: 'views',
    kind: 'int',
    value: 'K',
    min: 0,
    max: 1 << 20,
    default: 0,
    api: 'views',
    describe:
      'with --augment train: K fixed augmentation draws per sample, reused every K epochs (0: a new draw every epoch)',
  },
  {
    name: 'cache-features',
    kind: 'boolean',
    api: 'cacheFeatures',
    describe:
      'with --freeze backbone --bn frozen: ' +
      "compute each view's backbone features once and train the head on cached features",
  },
  {
    name: 'feature-cache-mb',
    kind: 'number',
    value: 'MB',
    min: 1,
    max: 1 << 24,
    default: 1024,
    api: 'featureCacheMb',
    describe: "memory bound of each worker's feature cache",
  },
  {
    name: 'wire',
    kind: 'choice',
    choices: WIRE_FORMATS,
    default: 'fp32',
    api: 'wire',
    describe:
      'what the gradient all-reduce sends between workers: float32, ' +
      'or 16-bit bf16/fp16 (half the bytes; sums stay float32; for slow links, see docs/DESIGN.md)',
  },
  {
    name: 'chunk-kib',
    kind: 'int',
    value: 'KIB',
    min: 1,
    max: MAX_CHUNK_KIB,
    default: MAX_CHUNK_KIB,
    api: 'chunkKib',
    describe:
      'the most KiB of float32 values in one all-reduce message (half that on a 16-bit wire); ' +
      'each hop of the ring forwards whole messages, so on links slower than about 1 Gbit/s smaller ones ' +
      '(1024) finish sooner (docs/DESIGN.md)',
  },
  {
    name: 'bucket-mb',
    kind: 'number',
    value: 'MB',
    min: 0,
    max: 1e4,
    default: 0,
    api: 'bucketMb',
    describe:
      'all-reduce the gradients in buckets of about MB MiB, last layers first, each as soon as it is computed ' +
      '(webgpu workers read them back while the backward pass runs; DDP uses 25); 0: the whole buffer at once',
  },
];

/** Where the run's files go, and resuming. */
export const OUTPUT_FLAGS: readonly FlagSpec[] = [
  {
    name: 'out',
    kind: 'string',
    value: 'DIR',
    default: DEFAULT_OUT,
    api: 'out',
    describe: 'output folder: best.ckpt, last.ckpt + train-state.json, metrics.jsonl, steps.jsonl, curves.png',
  },
  {
    name: 'resume',
    kind: 'string',
    value: 'DIR',
    api: 'resume',
    describe:
      'continue the run saved in DIR (after a stop or a crash); alone it is enough: ' +
      "the job's settings come from DIR/train-state.json, and flags that contradict them are refused",
  },
  {
    name: 'auto-resume',
    kind: 'boolean',
    describe:
      'continue the run in --out if it holds one, ' +
      'else start a new one (containers and pods restarted with the same command)',
  },
  {
    name: 'overwrite',
    kind: 'boolean',
    describe: 'a new run into an --out that holds another run replaces its files (without it, that is refused)',
  },
  {
    name: 'tensorboard',
    kind: 'string',
    value: 'DIR',
    api: 'tensorboard',
    describe:
      'also write a TensorBoard event file in DIR: ' +
      'per-step and per-epoch loss, accuracy, images/s, all-reduce share, workers',
  },
];

/** The pack: where the coordinator listens, which backend the workers use, how faults are handled. */
export const CLUSTER_FLAGS: readonly FlagSpec[] = [
  {
    name: 'backend',
    kind: 'choice',
    choices: BACKENDS,
    default: 'auto',
    api: 'backend',
    describe:
      "the workers' TF.js backend; auto takes the first that works of tensorflow-gpu, webgpu, tensorflow, wasm, cpu",
  },
  {
    name: 'gpus',
    kind: 'string',
    value: 'LIST',
    api: 'gpus',
    describe:
      'GPU indices the local workers take in turn, e.g. 0,1,2,3 (worker k: entry k mod n, passed on as its --gpu); ' +
      'default: none chosen',
  },
  {
    name: 'host',
    kind: 'string',
    value: 'ADDR',
    default: '127.0.0.1',
    api: 'host',
    describe: 'interface the coordinator (and the dashboard) listens on; beyond loopback needs a token',
  },
  {
    name: 'port',
    kind: 'int',
    value: 'PORT',
    min: 0,
    max: 65535,
    default: 0,
    defaultText: '0, a free port (coordinator: 7070)',
    api: 'port',
    describe: "the coordinator's port",
  },
  {
    name: 'timeout',
    kind: 'seconds',
    min: 1,
    default: 30,
    api: 'timeoutMs',
    describe: 'a worker silent this long (no heartbeat, no reply) is evicted and the ring re-formed',
  },
  {
    name: 'min-workers',
    kind: 'int',
    value: 'M',
    min: 1,
    default: 1,
    api: 'minWorkers',
    describe: 'below M workers, wait for replacements before going on',
  },
  {
    name: 'rejoin-timeout',
    kind: 'seconds',
    min: 1,
    defaultText: '600 (train and demo: --timeout)',
    api: 'rejoinTimeoutMs',
    describe:
      'how long to wait for those replacements; then stop with E_WORKER, naming the --resume that continues the run',
  },
  {
    name: 'max-bad-steps',
    kind: 'int',
    value: 'K',
    min: 1,
    default: 5,
    api: 'maxBadSteps',
    describe: 'stop after K steps in a row with a non-finite loss or gradient (each is skipped on every replica)',
  },
  {
    name: 'dashboard-port',
    kind: 'int',
    value: 'PORT',
    min: 0,
    max: 65535,
    api: 'dashboardPort',
    describe: 'serve the live dashboard on this port (0: a free one; its URL is logged)',
  },
  {
    name: 'hold-file',
    kind: 'string',
    value: 'FILE',
    describe:
      'while FILE exists at a step or epoch boundary the run holds there, ' +
      'workers idle (touch FILE pauses, rm FILE resumes)',
  },
  {
    name: 'hold-at',
    kind: 'string',
    value: 'E[:S],...',
    describe:
      'with --hold-file: at the end of epoch E, or after step S of epoch E, ' +
      'the coordinator makes FILE itself and logs that it holds',
  },
  {
    name: 'hold-timeout',
    kind: 'seconds',
    min: 0.001,
    default: DEFAULT_HOLD_TIMEOUT_MS / 1000,
    api: 'holdTimeoutMs',
    describe: 'the longest one hold lasts; then a warning, and the run goes on',
  },
];

/** Every option of the job, in the order help lists them. */
export const TRAINING_FLAGS: readonly FlagSpec[] = [...JOB_FLAGS, ...OUTPUT_FLAGS, ...CLUSTER_FLAGS];
