// The small part of the WebGPU API and of TF.js's WebGPUBackend internals that wolfpack's webgpu
// code uses, typed here so that the project type-checks without @webgpu/types (an optional
// dependency's dependency). Constants are the WebGPU specification's.
import type { tf } from '../tf.js';
import { WolfpackError } from '../../errors.js';

export const BufferUsage = {
  MAP_READ: 0x1,
  MAP_WRITE: 0x2,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
export const MapMode = { READ: 0x1, WRITE: 0x2 } as const;

/** A byte range [begin, end) of a buffer. */
export interface ByteRange {
  begin: number;
  end: number;
}

export interface GpuBuffer {
  readonly size: number;
  readonly usage: number;
  readonly mapState: 'unmapped' | 'pending' | 'mapped';
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
  destroy(): void;
}
export interface GpuComputePass {
  setPipeline(p: GpuPipeline): void;
  setBindGroup(i: number, g: unknown): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
export interface GpuCommandEncoder {
  beginComputePass(d?: Record<string, unknown>): GpuComputePass;
  copyBufferToBuffer(src: GpuBuffer, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): void;
  finish(): unknown;
}
/** TF.js's buffer pool (buffer_manager.ts): free buffers by `${size}_${usage}`, and those handed out. */
export interface GpuBufferPool {
  acquireBuffer(size: number, usage: number, mappedAtCreation?: boolean, reuse?: boolean): GpuBuffer;
  releaseBuffer(b: GpuBuffer, reuse?: boolean): void;
  freeBuffers: Map<string, GpuBuffer[]>;
  usedBuffers: Map<string, GpuBuffer[]>;
  numFreeBuffers: number;
  numUsedBuffers: number;
  numBytesUsed: number;
}
export interface GpuPipeline {
  getBindGroupLayout(i: number): unknown;
}
export interface GpuDevice {
  readonly limits: Record<string, number>;
  readonly features: { has(f: string): boolean };
  readonly queue: {
    writeBuffer(
      b: GpuBuffer,
      offset: number,
      data: ArrayBufferView | ArrayBuffer,
      dataOffset?: number,
      size?: number,
    ): void;
    submit(c: unknown[]): void;
    onSubmittedWorkDone(): Promise<void>;
  };
  createShaderModule(d: { code: string; label?: string }): unknown;
  createComputePipeline(d: {
    layout: 'auto';
    compute: { module: unknown; entryPoint: string };
    label?: string;
  }): GpuPipeline;
  createBindGroup(d: {
    layout: unknown;
    entries: { binding: number; resource: { buffer: GpuBuffer; offset?: number; size?: number } }[];
  }): unknown;
  createBuffer(d: { size: number; usage: number; mappedAtCreation?: boolean }): GpuBuffer;
  createCommandEncoder(): GpuCommandEncoder;
  pushErrorScope(f: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<{ message: string } | null>;
}

export interface TensorData {
  values?: tf.backend_util.BackendValues | null;
  dtype: tf.DataType;
  shape: number[];
  refCount: number;
  resource?: unknown;
}

/** TF.js 4.22's WebGPUBackend, the members wolfpack touches (they are public in its .d.ts). */
export interface WebGpuBackend extends tf.KernelBackend {
  device: GpuDevice;
  tensorMap: { get(dataId: object): TensorData | undefined; has(dataId: object): boolean };
  bufferManager: GpuBufferPool;
  /** The device's queue (TF.js keeps its own reference; the same object as device.queue). */
  queue: GpuDevice['queue'];
  commandEncoder: GpuCommandEncoder | null;
  computePassEncoder: GpuComputePass | null;
  commandQueueOwnedIds: WeakSet<object>;
  dispatchCountInPass: number;
  activeTimers?: { name: string; query: Promise<number> }[] | null;
  supportTimestampQuery: boolean;
  querySet: unknown;
  querySetCount: number;
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
  uploadToGPU(dataId: object): void;
  convertAndCacheOnCPU(dataId: object, data: tf.backend_util.BackendValues): tf.backend_util.BackendValues;
  readSync(dataId: object): tf.backend_util.BackendValues;
  read(dataId: object): Promise<tf.backend_util.BackendValues>;
  recordAndSubmit(program: { constructor: { name: string } }, ...rest: unknown[]): void;
  runWebGPUProgram(
    program: unknown,
    inputs: tf.TensorInfo[],
    dtype: tf.DataType,
    uniforms?: unknown,
    output?: tf.TensorInfo,
  ): tf.TensorInfo;
}

/** True for a Dawn GPUBuffer (the class is a global once the `webgpu` package's globals are set). */
export function isGpuBuffer(x: unknown): x is GpuBuffer {
  const cls = (globalThis as { GPUBuffer?: new () => unknown }).GPUBuffer;
  return cls !== undefined && x instanceof cls;
}

/** The active backend as a WebGpuBackend; throws if webgpu is not active. */
export function webGpuBackend(backend: tf.KernelBackend): WebGpuBackend {
  const b = backend as WebGpuBackend;
  if (!b || typeof b.runWebGPUProgram !== 'function' || !b.device)
    throw new WolfpackError('E_BACKEND', 'the active TF.js backend is not webgpu');
  return b;
}
