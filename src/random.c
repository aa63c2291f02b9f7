/* Counter-based generator: value k of a stream is a hash of (seed, k), so
 * results do not depend on how the tensor is traversed or on the machine. */
#include <math.h>

#include "gs_api.h"

/* splitmix64's finaliser: a strong 64-bit mix, cheap enough per element. */
static uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static uint64_t draw(uint64_t seed, uint64_t k, uint64_t lane) {
  return mix64(mix64(seed ^ 0x9e3779b97f4a7c15ULL) + 2 * k + lane);
}

/* Uniform in [0, 1) with 53 random bits. */
static double unit(uint64_t bits) { return (double)(bits >> 11) * 0x1.0p-53; }

static double sample(int dist, uint64_t seed, uint64_t k, double a, double b) {
  double u = unit(draw(seed, k, 0));
  switch (dist) {
    case 1: {
      /* Box-Muller; 1 - u keeps log() away from 0. */
      double v = unit(draw(seed, k, 1));
      return a + b * sqrt(-2.0 * log(1.0 - u)) * cos(6.283185307179586 * v);
    }
    case 2: {
      double span = floor(b) - ceil(a);
      if (span < 1) return ceil(a);
      return ceil(a) + (double)(draw(seed, k, 0) % (uint64_t)span);
    }
    default: return a + (b - a) * u;
  }
}

void gs_fill_random(void *dst, gs_dtype d, int64_t rows, int64_t cols, int64_t stride, int dist,
                    uint64_t seed, double a, double b) {
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++)
      gs_store(dst, d, r * stride + c, sample(dist, seed, (uint64_t)(r * cols + c), a, b));
}
