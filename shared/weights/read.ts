// Read a weights file of either supported format, telling them apart by content first and by the
// file's extension second, so a user can point wolfpack at any pretrained file without naming its format.
import { extname } from 'node:path';
import { WolfpackError } from '../errors.js';
import { readFileBytes } from '../fs/read-file.js';
import { parseCkpt } from './ckpt.js';
import type { TensorMap } from './host-tensor.js';
import { parseSafetensors } from './safetensors.js';

export type WeightsFormat = 'ckpt' | 'safetensors';

export interface WeightsFile {
  format: WeightsFormat;
  tensors: TensorMap;
}

export async function readWeightsFile(path: string): Promise<WeightsFile> {
  const buf = await readFileBytes(path, 'weights file');
  const format = detectWeightsFormat(buf, path);
  if (format === 'safetensors') return { format, tensors: parseSafetensors(buf, path).tensors };
  return { format, tensors: parseCkpt(buf, path) };
}

/** Which format `buf` (read from `path`) is in; throws E_WEIGHTS when it is neither. */
export function detectWeightsFormat(buf: Uint8Array, path: string): WeightsFormat {
  if (looksLikeSafetensors(buf)) return 'safetensors';
  const ext = extname(path).toLowerCase();
  // A damaged file with the right name still goes to its parser, whose error says what is wrong inside.
  if (ext === '.safetensors') return 'safetensors';
  if (ext === '.ckpt') return 'ckpt';
  if (looksLikeCkpt(buf)) return 'ckpt';
  const head = Buffer.from(buf.subarray(0, 8)).toString('hex');
  throw new WolfpackError(
    'E_WEIGHTS',
    `file ${path}: not a weights file wolfpack can read (expected a MindSpore .ckpt or a .safetensors file; ` +
      `extension '${ext}', ${buf.byteLength} bytes, starting ${head || '(empty)'})`,
    { file: path },
  );
}

/** An 8-byte little-endian length that fits the file, followed by a JSON object. */
function looksLikeSafetensors(buf: Uint8Array): boolean {
  if (buf.byteLength < 10) return false;
  const headerLength = new DataView(buf.buffer, buf.byteOffset, 8).getBigUint64(0, true);
  return headerLength >= 2n && headerLength <= BigInt(buf.byteLength - 8) && buf[8] === 0x7b; // '{'
}

/** A Checkpoint message starts with field 1 (value), length-delimited, whose first field is tag 1 too. */
function looksLikeCkpt(buf: Uint8Array): boolean {
  if (buf.byteLength < 4 || buf[0] !== 0x0a) return false;
  // Skip the varint length of the first Value; its body should start with field 1 (tag), wire type 2.
  let i = 1;
  while (i < buf.byteLength && i < 11 && buf[i]! & 0x80) i++;
  return buf[i + 1] === 0x0a;
}
