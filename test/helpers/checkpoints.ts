// Reading a checkpoint the way tests compare them: every tensor as float32, by name
// (shared/weights/compare.ts, which `wolfpack bench chaos` uses too).
export { readCkptFloats } from '../../shared/weights/compare.js';
