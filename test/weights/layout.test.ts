// Layout conversions: element positions worked out by hand, round trips back to the identity, and
// a check against a naive index computation written independently of the implementation's loops.
import t from 'tap';
import { hwioToOihw, oihwToHwio, transpose2d } from '../../shared/weights/layout.js';
import { assertWolfpackError, thrownBy } from './fixtures.js';

/** Each element's value encodes its OIHW index as the digits o,i,h,w. */
function numberedOihw(O: number, I: number, H: number, W: number): Float32Array {
  const a = new Float32Array(O * I * H * W);
  let k = 0;
  for (let o = 0; o < O; o++)
    for (let i = 0; i < I; i++)
      for (let h = 0; h < H; h++) for (let w = 0; w < W; w++) a[k++] = o * 1000 + i * 100 + h * 10 + w;
  return a;
}

t.test('oihwToHwio puts each element where it belongs (hand-checked)', async (t) => {
  // O=2, I=3, H=2, W=2. HWIO strides: h -> W*I*O = 12, w -> I*O = 6, i -> O = 2, o -> 1.
  const hwio = oihwToHwio(numberedOihw(2, 3, 2, 2), [2, 3, 2, 2]);
  t.equal(hwio[0], 0, 'o0 i0 h0 w0 stays first');
  t.equal(hwio[1], 1000, 'next is o1 i0 h0 w0: O is the fastest axis');
  t.equal(hwio[2], 100, 'then o0 i1 h0 w0');
  t.equal(hwio[6], 1, 'then w advances after I*O = 6 elements: o0 i0 h0 w1');
  t.equal(hwio[12], 10, 'h advances after W*I*O = 12: o0 i0 h1 w0');
  // o=1, i=2, h=1, w=0 -> 1*12 + 0*6 + 2*2 + 1 = 17
  t.equal(hwio[17], 1210);
  t.equal(hwio[23], 1211, 'last element is o1 i2 h1 w1');
});

t.test('oihw -> hwio -> oihw is the identity, and matches a naive index formula', async (t) => {
  const [O, I, H, W] = [4, 3, 3, 5];
  const oihw = numberedOihw(O, I, H, W);
  const hwio = oihwToHwio(oihw, [O, I, H, W]);
  let mismatches = 0;
  for (let o = 0; o < O; o++)
    for (let i = 0; i < I; i++)
      for (let h = 0; h < H; h++)
        for (let w = 0; w < W; w++) {
          const inHwio = hwio[h * W * I * O + w * I * O + i * O + o];
          if (inHwio !== o * 1000 + i * 100 + h * 10 + w) mismatches++;
        }
  t.equal(mismatches, 0);
  const back = hwioToOihw(hwio, [H, W, I, O]);
  t.same(Array.from(back), Array.from(oihw));
  t.not(back, oihw, 'a new array');
  t.same(Array.from(oihwToHwio(hwioToOihw(hwio, [H, W, I, O]), [O, I, H, W])), Array.from(hwio));
});

t.test('1x1 and depth-1 kernels', async (t) => {
  // A 1x1 conv kernel [O, I, 1, 1] in HWIO is the [I, O] transpose of [O, I].
  const oi = new Float32Array([1, 2, 3, 4, 5, 6]); // O=2, I=3
  t.same(Array.from(oihwToHwio(oi, [2, 3, 1, 1])), Array.from(transpose2d(oi, [2, 3])));
  t.same(Array.from(oihwToHwio(new Float32Array(0), [0, 3, 3, 3])), []);
});

t.test('transpose2d', async (t) => {
  const m = new Float32Array([1, 2, 3, 4, 5, 6]); // [[1,2,3],[4,5,6]]
  const tr = transpose2d(m, [2, 3]);
  t.same(Array.from(tr), [1, 4, 2, 5, 3, 6]);
  t.same(Array.from(transpose2d(tr, [3, 2])), Array.from(m));
  t.same(Array.from(m), [1, 2, 3, 4, 5, 6], 'input untouched');
});

t.test('a shape that does not fit the data is an error', async (t) => {
  assertWolfpackError(
    t,
    thrownBy(() => oihwToHwio(new Float32Array(10), [2, 3, 1, 1])),
    'E_WEIGHTS',
    '[2,3,1,1]',
    '6 elements',
  );
  assertWolfpackError(
    t,
    thrownBy(() => hwioToOihw(new Float32Array(4), [1, 1, 2, 3])),
    'E_WEIGHTS',
    'hwioToOihw',
  );
  assertWolfpackError(
    t,
    thrownBy(() => transpose2d(new Float32Array(5), [2, 3])),
    'E_WEIGHTS',
    'transpose2d',
  );
});
