// One thread's share of the target scan that cross_entropy.cu and
// linear_cross_entropy.cu run before their main kernels: rows first,
// first + stride, ...; the lowest bad row, and D (the targets' weights) and
// the count of non-ignored rows, in double. The callers reduce the shares.
#ifndef GS_CUDA_TARGET_SCAN_CUH
#define GS_CUDA_TARGET_SCAN_CUH

#include <climits>
#include <cstdint>

struct TargetTally {
  double d, count;
  long long bad;  // LLONG_MAX when every row seen was valid
};

__device__ __forceinline__ int64_t target_value(const void *target, int tgt64, int64_t i) {
  return tgt64 ? ((const int64_t *)target)[i] : (int64_t)((const int32_t *)target)[i];
}

__device__ __forceinline__ TargetTally tally_targets(const void *target, int tgt64, int64_t ignore, int64_t n,
                                                     int64_t v, const float *weight, int64_t first, int64_t stride) {
  TargetTally s = {0.0, 0.0, LLONG_MAX};
  for (int64_t i = first; i < n; i += stride) {
    const int64_t t = target_value(target, tgt64, i);
    if (t == ignore) continue;
    if (t < 0 || t >= v) {
      if (i < s.bad) s.bad = i;
      continue;
    }
    s.d += weight ? (double)weight[t] : 1.0;
    s.count += 1.0;
  }
  return s;
}

#endif
