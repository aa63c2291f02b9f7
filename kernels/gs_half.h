/* bf16 and f16 <-> f32 conversions for host C code. Round to nearest even,
 * NaN stays NaN (quiet), infinities and signed zeros survive. */
#ifndef GS_HALF_H
#define GS_HALF_H

#include <stdint.h>
#include <string.h>

static inline uint32_t gs_f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float gs_bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

static inline float gs_bf16_to_f32(uint16_t h) { return gs_bits_f32((uint32_t)h << 16); }

static inline uint16_t gs_f32_to_bf16(float f) {
  uint32_t u = gs_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);  /* round half to even */
  return (uint16_t)(u >> 16);
}

static inline float gs_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1f) return gs_bits_f32(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    /* subnormal: man * 2^-24, exact in f32 */
    float f = (float)man * 5.9604644775390625e-8f;
    return sign ? -f : f;
  }
  return gs_bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}

static inline uint16_t gs_f32_to_f16(float f) {
  uint32_t u = gs_f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds to >= 65520: inf */
  if (a < 0x38800000u) {
    /* f16 subnormal or zero: scale to units of 2^-24 and round half to even */
    float m = gs_bits_f32(a) * 16777216.0f;
    uint32_t r = (uint32_t)m;
    float frac = m - (float)r;
    if (frac > 0.5f || (frac == 0.5f && (r & 1u))) r++;
    return (uint16_t)(sign | r);
  }
  uint32_t r = a - 0x38000000u;  /* rebias exponent 127 -> 15 */
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

#endif
