;; The 16-bit wire's conversions (wire.ts) with WebAssembly SIMD, eight values at a time. This text is the
;; source; wire-simd-module.ts holds its assembled bytes (`npm run wasm` rewrites them, and
;; test/allreduce/wire-simd.test.ts fails when the two differ). Every function works on whole groups of
;; eight values; wire-simd.ts does the few left over with wire.ts's scalar code, which rounds the same way.
;; Addresses are byte offsets into the imported memory, which holds the ring buffer and its slots.
(module
  (import "e" "m" (memory 1))

  ;; float32 bits -> bfloat16 bits in the low half of each lane: nearest, ties to even; a NaN stays a NaN
  ;; (quiet bit set), as wire.ts's toBfloat16.
  (func $bf16_lanes (param $x v128) (result v128)
    (i32x4.shr_u
      (v128.bitselect
        (v128.or (local.get $x) (v128.const i32x4 0x00400000 0x00400000 0x00400000 0x00400000))
        (i32x4.add
          (i32x4.add (local.get $x) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff))
          (v128.and (i32x4.shr_u (local.get $x) (i32.const 16)) (v128.const i32x4 1 1 1 1)))
        (i32x4.gt_u
          (v128.and (local.get $x) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
          (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000)))
      (i32.const 16)))

  ;; float32 bits -> IEEE half bits in the low half of each lane: nearest, ties to even, subnormals,
  ;; overflow to infinity, NaN -> quiet NaN, sign kept (F. Giesen's float_to_half_fast3_rtne, branch-free).
  (func $fp16_lanes (param $x v128) (result v128)
    (local $sign v128) (local $f v128) (local $normal v128) (local $small v128) (local $big v128)
    (local.set $sign (v128.and (local.get $x) (v128.const i32x4 0x80000000 0x80000000 0x80000000 0x80000000)))
    (local.set $f (v128.xor (local.get $x) (local.get $sign)))
    ;; normal range: rebias the exponent, add the rounding bias (0xfff plus the kept mantissa's low bit)
    (local.set $normal
      (i32x4.shr_u
        (i32x4.add
          (i32x4.add (local.get $f) (v128.const i32x4 0xc8000fff 0xc8000fff 0xc8000fff 0xc8000fff))
          (v128.and (i32x4.shr_u (local.get $f) (i32.const 13)) (v128.const i32x4 1 1 1 1)))
        (i32.const 13)))
    ;; below half's smallest normal: adding 0.5 makes the float unit round the mantissa where half's ends
    (local.set $small
      (i32x4.sub
        (f32x4.add (local.get $f) (v128.const i32x4 0x3f000000 0x3f000000 0x3f000000 0x3f000000))
        (v128.const i32x4 0x3f000000 0x3f000000 0x3f000000 0x3f000000)))
    ;; 65536 and above: infinity, or a quiet NaN
    (local.set $big
      (v128.bitselect
        (v128.const i32x4 0x7e00 0x7e00 0x7e00 0x7e00)
        (v128.const i32x4 0x7c00 0x7c00 0x7c00 0x7c00)
        (i32x4.gt_u (local.get $f) (v128.const i32x4 0x7f800000 0x7f800000 0x7f800000 0x7f800000))))
    (v128.or
      (i32x4.shr_u (local.get $sign) (i32.const 16))
      (v128.bitselect
        (local.get $big)
        (v128.bitselect
          (local.get $small)
          (local.get $normal)
          (i32x4.lt_u (local.get $f) (v128.const i32x4 0x38800000 0x38800000 0x38800000 0x38800000)))
        (i32x4.ge_u (local.get $f) (v128.const i32x4 0x47800000 0x47800000 0x47800000 0x47800000)))))

  ;; IEEE half bits (low half of each lane, high half zero) -> float32 bits, exact (Giesen's half_to_float).
  (func $fp16_value (param $h v128) (result v128)
    (local $o v128) (local $exp v128)
    (local.set $o (i32x4.shl (v128.and (local.get $h) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)) (i32.const 13)))
    (local.set $exp (v128.and (local.get $o) (v128.const i32x4 0x0f800000 0x0f800000 0x0f800000 0x0f800000)))
    (local.set $o (i32x4.add (local.get $o) (v128.const i32x4 0x38000000 0x38000000 0x38000000 0x38000000)))
    (v128.or
      (i32x4.shl (v128.and (local.get $h) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16))
      (v128.bitselect
        ;; infinity or NaN: the exponent all ones
        (i32x4.add (local.get $o) (v128.const i32x4 0x38000000 0x38000000 0x38000000 0x38000000))
        (v128.bitselect
          ;; zero or subnormal: (2^-14 with the mantissa) - 2^-14, exact
          (f32x4.sub
            (i32x4.add (local.get $o) (v128.const i32x4 0x00800000 0x00800000 0x00800000 0x00800000))
            (v128.const i32x4 0x38800000 0x38800000 0x38800000 0x38800000))
          (local.get $o)
          (i32x4.eq (local.get $exp) (v128.const i32x4 0 0 0 0)))
        (i32x4.eq (local.get $exp) (v128.const i32x4 0x0f800000 0x0f800000 0x0f800000 0x0f800000)))))

  ;; dst (n8 groups of eight 16-bit words) = src (8 * n8 float32) rounded to bfloat16 / half
  (func (export "bf16_pack") (param $src i32) (param $dst i32) (param $n8 i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n8) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
        (v128.store (local.get $dst)
          (i16x8.narrow_i32x4_u
            (call $bf16_lanes (v128.load (local.get $src)))
            (call $bf16_lanes (v128.load offset=16 (local.get $src)))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next))))

  (func (export "fp16_pack") (param $src i32) (param $dst i32) (param $n8 i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $dst) (i32.shl (local.get $n8) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $dst) (local.get $end)))
        (v128.store (local.get $dst)
          (i16x8.narrow_i32x4_u
            (call $fp16_lanes (v128.load (local.get $src)))
            (call $fp16_lanes (v128.load offset=16 (local.get $src)))))
        (local.set $src (i32.add (local.get $src) (i32.const 32)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
        (br $next))))

  ;; dst (8 * n8 float32) += (or =, with $add 0) the values of src (n8 groups of eight 16-bit words)
  (func (export "bf16_unpack") (param $dst i32) (param $src i32) (param $n8 i32) (param $add i32)
    (local $end i32) (local $w v128) (local $lo v128) (local $hi v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n8) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $w (v128.load (local.get $src)))
        (local.set $lo (i32x4.shl (i32x4.extend_low_i16x8_u (local.get $w)) (i32.const 16)))
        (local.set $hi (i32x4.shl (i32x4.extend_high_i16x8_u (local.get $w)) (i32.const 16)))
        (if (local.get $add)
          (then
            (local.set $lo (f32x4.add (v128.load (local.get $dst)) (local.get $lo)))
            (local.set $hi (f32x4.add (v128.load offset=16 (local.get $dst)) (local.get $hi)))))
        (v128.store (local.get $dst) (local.get $lo))
        (v128.store offset=16 (local.get $dst) (local.get $hi))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (br $next))))

  (func (export "fp16_unpack") (param $dst i32) (param $src i32) (param $n8 i32) (param $add i32)
    (local $end i32) (local $w v128) (local $lo v128) (local $hi v128)
    (local.set $end (i32.add (local.get $src) (i32.shl (local.get $n8) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $src) (local.get $end)))
        (local.set $w (v128.load (local.get $src)))
        (local.set $lo (call $fp16_value (i32x4.extend_low_i16x8_u (local.get $w))))
        (local.set $hi (call $fp16_value (i32x4.extend_high_i16x8_u (local.get $w))))
        (if (local.get $add)
          (then
            (local.set $lo (f32x4.add (v128.load (local.get $dst)) (local.get $lo)))
            (local.set $hi (f32x4.add (v128.load offset=16 (local.get $dst)) (local.get $hi)))))
        (v128.store (local.get $dst) (local.get $lo))
        (v128.store offset=16 (local.get $dst) (local.get $hi))
        (local.set $src (i32.add (local.get $src) (i32.const 16)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
        (br $next))))

  ;; buf (4 * n4 float32) rounded in place to the values bfloat16 / half carry: what the other ranks receive
  (func (export "bf16_round") (param $buf i32) (param $n4 i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $buf) (i32.shl (local.get $n4) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $buf) (local.get $end)))
        (v128.store (local.get $buf) (i32x4.shl (call $bf16_lanes (v128.load (local.get $buf))) (i32.const 16)))
        (local.set $buf (i32.add (local.get $buf) (i32.const 16)))
        (br $next))))

  (func (export "fp16_round") (param $buf i32) (param $n4 i32)
    (local $end i32)
    (local.set $end (i32.add (local.get $buf) (i32.shl (local.get $n4) (i32.const 4))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $buf) (local.get $end)))
        (v128.store (local.get $buf) (call $fp16_value (call $fp16_lanes (v128.load (local.get $buf)))))
        (local.set $buf (i32.add (local.get $buf) (i32.const 16)))
        (br $next)))))
