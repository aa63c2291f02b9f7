// The register plan's row kernel (included by cross_entropy.cu, inside its
// namespace): the hot path (no softcap, entropy or class weights) with each
// row's chunk held on chip as exp values, so that every logit takes one ex2
// instead of two and the chunk is never read twice.
//
// One CTA of kRegThreads per (row, chunk); a cluster of K CTAs per row where
// the row needs more than one (sm_90 and newer). Not persistent: a CTA does
// one chunk and leaves, and the next cluster takes its place.
//
// 1. Each thread loads its VT 16-byte vectors (columns tid + i * kRegThreads,
//    in vectors) straight into registers, all at once (f32: VS of them by
//    cp.async into shared memory).
// 2. Its own max m_t, then e_j = 2^((z_j - m_t) log2 e) for each of its
//    columns and their sums (without the target's term, as the other
//    kernels keep 1 - p_t apart). VS vectors' e go to shared memory, the
//    other VR vectors' stay in registers: a thread holds VR * NV floats,
//    shared memory VS * NV per thread.
// 3. Warp, then block: the partial (max, sums relative to it) of the chunk.
// 4. K > 1: each CTA's first warp pushes its partial into every CTA of the
//    cluster (st.async on the receiver's mbarrier) and waits for the K
//    partials in its own shared memory. No cluster barrier after the
//    statistics (one at the start, behind the loads, makes sure every
//    mbarrier is set), and no CTA reads another's shared memory, so none
//    waits for the others to leave.
// 5. The first warp computes the row's scalars from the K partials
//    (row_scalars, as the other kernels do), and every thread writes its
//    gradient from its e: dz_j = e_j 2^(m_t - M) ap - bw.
//
// Two CTAs of 512 threads per SM, 64 registers a thread. What each step
// costs, and the variants measured, are in docs/cuda-speed.md.

template <typename T> struct RegShape;
// Vectors per thread whose e stay in registers (VR) and go to shared memory
// (VS). More in registers spilled (the first pass holds every loaded
// vector); 3 and 5 for bf16 ran 2-3% faster than 4 and 4 (H200).
// f32: 8 in registers (a loaded f32 vector is its e's registers already;
// 5 and 5 through registers ran 1.31 times the copy at 4096 x 256000, 8 and
// 0 1.22), and 5 that go to shared memory by cp.async (ASYNC), never through
// registers, where their e then replace them: 26624 columns and 40 KB a CTA,
// so that a row takes fewer CTAs (256000: 10 instead of 16).
template <> struct RegShape<float> {
  static constexpr int VR = 8, VS = 5;
  static constexpr bool ASYNC = true;
};
// bf16 and f16: 3 and 5, 32768 columns and 80 KB per CTA, through
// registers. 3 and 6 with the 6 by cp.async (into the first half of each
// vector's e slot; 36864 columns, 96 KB) ran slower at 4096 x 256000 (1.30
// against 1.24 times the copy: K = 7 leaves 224 CTAs resident, K = 8 240).
template <> struct RegShape<__nv_bfloat16> {
  static constexpr int VR = 3, VS = 5;
  static constexpr bool ASYNC = false;
};
template <> struct RegShape<__half> {
  static constexpr int VR = 3, VS = 5;
  static constexpr bool ASYNC = false;
};

constexpr int kRegThreads = 512;
constexpr int kRegWarps = kRegThreads / 32;
constexpr int kRegMaxCluster = 16;

// Columns one CTA of the register plan holds, and its shared memory.
template <typename T> constexpr int reg_columns() {
  return kRegThreads * (RegShape<T>::VR + RegShape<T>::VS) * Vec<T>::N;
}
template <typename T> constexpr int reg_smem() { return kRegThreads * RegShape<T>::VS * Vec<T>::N * 4; }
// The shared memory a chunk of `chunk` columns uses: all of it where the
// vectors in shared memory come first, only the slots reached where the
// registers fill first (ASYNC: none for f32 chunks of 16384 columns or
// fewer).
template <typename T> constexpr int reg_smem_for(int64_t chunk) {
  using S = RegShape<T>;
  if (!S::ASYNC) return reg_smem<T>();
  const int64_t nvec = (chunk + Vec<T>::N - 1) / Vec<T>::N;
  const int64_t per_thread = (nvec + kRegThreads - 1) / kRegThreads;
  const int64_t slots = per_thread <= S::VR ? 0 : per_thread - S::VR > S::VS ? S::VS : per_thread - S::VR;
  return (int)(slots * kRegThreads * Vec<T>::N * 4);
}

// What a CTA pushes to the others: its chunk's max and the sums relative to
// it (r: the exp terms without the target's; wd, ws: the smoothing sums,
// wd64 in double). 16-byte aligned, so that every slot of an array takes
// the pushed 16-byte vector.
struct __align__(16) RegPartial {
  float m, r, wd, ws;
  double wd64;
  // The kernels' Partial (row_scalars' input), without entropy's terms.
  __device__ Partial widen() const { return Partial{m, r, 0.f, wd, ws, wd64, 0.0}; }
};
constexpr unsigned kRegPartialBytes = 24;  // m, r, wd, ws, wd64: what is pushed

__device__ __forceinline__ uint4 ld_stream(const void *ptr) {
  uint4 r;
  asm volatile("ld.global.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(ptr));
  return r;
}

// A vector's 16 bytes from NV columns of which only the first nvalid exist,
// or whose address is not 16-byte aligned: the others hold pad (the logit
// whose z is -inf: e = 0, and the max is unchanged).
template <typename T> __device__ __forceinline__ uint4 ld_part(const T *src, int nvalid, float pad);
template <> __device__ __forceinline__ uint4 ld_part<float>(const float *src, int nvalid, float pad) {
  unsigned w[4];
#pragma unroll
  for (int k = 0; k < 4; k++) w[k] = __float_as_uint(k < nvalid ? src[k] : pad);
  return make_uint4(w[0], w[1], w[2], w[3]);
}
template <typename H> __device__ __forceinline__ uint4 ld_part16(const H *src, int nvalid, unsigned short padbits) {
  unsigned short h[8];
#pragma unroll
  for (int k = 0; k < 8; k++) h[k] = k < nvalid ? reinterpret_cast<const unsigned short *>(src)[k] : padbits;
  return make_uint4(h[0] | (unsigned)h[1] << 16, h[2] | (unsigned)h[3] << 16, h[4] | (unsigned)h[5] << 16,
                    h[6] | (unsigned)h[7] << 16);
}
template <> __device__ __forceinline__ uint4 ld_part<__nv_bfloat16>(const __nv_bfloat16 *src, int nvalid, float pad) {
  return ld_part16(src, nvalid, pad < 0.f ? 0xff80 : 0x7f80);
}
template <> __device__ __forceinline__ uint4 ld_part<__half>(const __half *src, int nvalid, float pad) {
  return ld_part16(src, nvalid, pad < 0.f ? 0xfc00 : 0x7c00);
}

// The largest (MAX) or smallest logit of the 16-byte vectors added, as a
// float; pad where none were. 16-bit logits are compared two at a time in
// their own format (exact; NaN is passed over, as fmaxf does), without
// converting each to f32 first.
template <typename T, bool MAX, bool WIDE = sizeof(T) == 4> struct Extreme {
  float m;
  __device__ __forceinline__ explicit Extreme(float pad) : m(pad) {}
  __device__ __forceinline__ void add(const uint4 &r) {
    const unsigned w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int k = 0; k < 4; k++) m = MAX ? fmaxf(m, __uint_as_float(w[k])) : fminf(m, __uint_as_float(w[k]));
  }
  __device__ __forceinline__ float get() const { return m; }
};
template <typename T, bool MAX> struct Extreme<T, MAX, false> {
  using T2 = typename std::conditional<std::is_same<T, __half>::value, __half2, __nv_bfloat162>::type;
  T2 a, b;
  __device__ __forceinline__ explicit Extreme(float pad) : a(T(pad), T(pad)), b(a) {}
  __device__ __forceinline__ void add(const uint4 &r) {
    const unsigned w[4] = {r.x, r.y, r.z, r.w};
    const T2 *h = reinterpret_cast<const T2 *>(w);
    a = MAX ? __hmax2(a, h[0]) : __hmin2(a, h[0]);
    b = MAX ? __hmax2(b, h[1]) : __hmin2(b, h[1]);
    a = MAX ? __hmax2(a, h[2]) : __hmin2(a, h[2]);
    b = MAX ? __hmax2(b, h[3]) : __hmin2(b, h[3]);
  }
  __device__ __forceinline__ float get() const {
    const T2 c = MAX ? __hmax2(a, b) : __hmin2(a, b);
    const float lo = (float)c.x, hi = (float)c.y;
    return MAX ? fmaxf(lo, hi) : fminf(lo, hi);
  }
};

__device__ __forceinline__ unsigned smem_addr(const void *p) { return (unsigned)__cvta_generic_to_shared(p); }

#ifdef GS_CE_CLUSTERS
__device__ __forceinline__ unsigned peer_addr(unsigned a, unsigned rank) {
  unsigned r;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
  return r;
}
// Pushes this CTA's partial into slot `slot` of CTA `rank`, counted on that CTA's mbarrier.
__device__ __forceinline__ void push_partial(RegPartial *slot, unsigned long long *bar, unsigned rank,
                                             const RegPartial &q) {
  const unsigned a = peer_addr(smem_addr(slot), rank), b = peer_addr(smem_addr(bar), rank);
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];" ::"r"(a),
               "f"(q.m), "f"(q.r), "f"(q.wd), "f"(q.ws), "r"(b)
               : "memory");
  asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.f64 [%0], %1, [%2];" ::"r"(a + 16u),
               "d"(q.wd64), "r"(b)
               : "memory");
}
#endif

template <typename T, bool CL>
__device__ __forceinline__ void ce_reg_body(const Params &p) {
  constexpr int NV = Vec<T>::N, NT = kRegThreads, NW = kRegWarps, NH = NV / 4;
  constexpr int VR = RegShape<T>::VR, VS = RegShape<T>::VS, VT = VR + VS;
  // Vector i's e: in shared memory for S0 <= i < S0 + VS (es4, slot i - S0),
  // in registers elsewhere (e[i - E0]). bf16/f16: shared memory first; f32
  // (ASYNC: those come by cp.async) registers first, so that a chunk of
  // 16384 columns or fewer stays in registers. raw[i] is a loaded vector i:
  // every one, or with ASYNC those in registers.
  constexpr bool ASYNC = RegShape<T>::ASYNC;
  constexpr int S0 = ASYNC ? VR : 0, E0 = ASYNC ? 0 : VS, NRAW = ASYNC ? VR : VT;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float4 *const es4 = reinterpret_cast<float4 *>(smem_raw);  // e of vector i: es4[((i - S0) NH + h) NT + tid]
  __shared__ float wred[4][NW];
#ifdef GS_CE_CLUSTERS
  __shared__ __align__(16) RegPartial parts[kRegMaxCluster];  // pushed by the cluster's CTAs
  __shared__ __align__(8) unsigned long long bar;              // counts their bytes
#endif
  __shared__ RowInfo info;
  __shared__ float xt_sh;
  __shared__ float gscale[2];  // grad_scales' g, gz
  __shared__ int failed_sh;
  // The first warp's register-held e, parked while it computes the row's
  // scalars, which need the registers (held across them, the e spilled to
  // local memory in every thread).
  __shared__ float4 park[VR * NH][32];

  const int K = cluster_size<CL>();
  const int rank = cluster_rank<CL>();
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  // ASYNC: vector i's logits, loaded into its first e slot, until its e replace them.
  auto raw_slot = [&](int i) { return reinterpret_cast<uint4 *>(es4) + (i - S0) * NH * NT + tid; };
  const int64_t row = blockIdx.x / K;  // one cluster per row
  const int64_t c0 = (int64_t)rank * p.chunk;
  const int clen = (int)max((int64_t)0, min(p.chunk, p.v - c0));
  const int nvec = (clen + NV - 1) / NV;
  const T *const xrow = (const T *)p.logits + row * p.lstride;
  const T *const xc = xrow + c0;
  const int gsize = p.gdtype == GS_F32 ? 4 : 2;
  char *const grow = p.grad ? (char *)p.grad + row * p.gstride * gsize : nullptr;
  const bool galigned = grow && ((((uintptr_t)grow) + c0 * gsize) & 15) == 0;
  const bool leader = rank == 0 && tid == 0;
  const bool smooth = p.op == OP_CE && p.eps > 0.f;
  const float s = p.s;

  let_dependents_start();  // the loss sum may be scheduled; it waits for this grid's end
  const int64_t t = load_target(p.target, p.tgt64, row);
  const bool skip = t == p.ignore || t < 0 || t >= p.v;
  // A bad target anywhere makes the call an error that writes nothing (see
  // ce_rows_body); every CTA of the cluster reads the same verdict.
  auto call_failed = [&] {
    prep_done_wait();
    return p.ctrl->report_row >= 0;
  };
  auto store_zeros = [&] {
    const float zero[NV] = {};
#pragma unroll
    for (int i = 0; i < VT; i++) {
      const int vi = tid + i * NT;
      if (vi < nvec) store_grad<NV, kStoreStream>(grow, p.gdtype, c0 + (int64_t)vi * NV, zero, min(NV, clen - vi * NV), galigned);
    }
  };
  if (skip) {
    if (call_failed()) return;
    if (grow) store_zeros();
    if (leader) ignored_row_outputs(p, row);
    return;  // the whole cluster: every CTA has this row
  }

  // What the first thread needs besides its columns, asked for before them
  // so that the answers do not queue behind the chunk: the target scan's
  // verdict and the mean's divisors (written by the scan), the row's
  // grad_output and the target's logit (read before any CTA of the row
  // writes its gradient, which in place overwrites it: this CTA's partial
  // goes out only after xt_sh is stored, and no CTA writes before it has
  // every partial). Consumed after the statistics.
  long long report = -1;
  double dsum = 1.0, dcount = 1.0;
  float go = 1.f, xt = 0.f;
  if (tid == 0) {
    prep_done_wait();
    report = p.ctrl->report_row;
    dsum = p.ctrl->d;
    dcount = p.ctrl->count;
    go = row_grad_output(p, row);
    xt = Vec<T>::one(xrow, t);
  }

  // 1. The chunk, straight into registers.
  const float pad = s > 0.f ? -INFINITY : INFINITY;  // z = s pad = -inf
  const bool xal = (((uintptr_t)xc) & 15) == 0;
  uint4 raw[NRAW];
  if (ASYNC) {
#pragma unroll
    for (int i = S0; i < S0 + VS; i++) {
      const int vi = tid + i * NT;
      if (vi < nvec) {
        const int nvalid = min(NV, clen - vi * NV);
        uint4 *const dst = raw_slot(i);
        if (xal && nvalid == NV) cp_async16(smem_addr(dst), xc + (int64_t)vi * NV);
        else *dst = ld_part<T>(xc + (int64_t)vi * NV, nvalid, pad);
      }
    }
    cp_async_commit();
  }
#pragma unroll
  for (int i = 0; i < NRAW; i++) {
    const int vi = tid + i * NT;
    if (vi < nvec) {
      const int nvalid = min(NV, clen - vi * NV);
      raw[i] = xal && nvalid == NV ? ld_stream(xc + (int64_t)vi * NV) : ld_part<T>(xc + (int64_t)vi * NV, nvalid, pad);
    }
  }
#ifdef GS_CE_CLUSTERS
  if (CL) {
    // The partials' mbarrier, set before any CTA of the cluster may push
    // (the cluster barrier's arrive here and its wait before the pushes).
    if (tid == 0) {
      asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_addr(&bar)) : "memory");
      asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncwarp();  // racecheck takes the init and the arrive for two lanes' accesses
    if (tid == 0) {
      asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_addr(&bar)),
                   "r"((unsigned)K * kRegPartialBytes)
                   : "memory");
    }
    // Relaxed: the fence above already publishes the init; a release here
    // made every warp wait for its chunk's loads (ncu: membar stalls).
    asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
  }
#endif
  const int tloc = (t >= c0 && t < c0 + clen) ? (int)(t - c0) : -1;

  // 2. This thread's max, its e and sums. Without softcap max(s x) is
  // s max(x) for s > 0 and s min(x) for s < 0.
  //
  // e = 2^(x s log2 e - c) in one FMA, c = x_ext sl2e rounded (x_ext: the
  // extreme logit), instead of 2^((x s - m_t) log2 e) in two: c's rounding
  // (up to half an ulp of |m_t| log2 e, 8e-6 at m_t = 100) and m_t's are the
  // same for every e of the thread, so its sums and its gradient factor take
  // them back exactly, as corr = 2^((x_ext s - m_t) log2 e - (x_ext sl2e -
  // c)), both residuals exact by FMA. What stays is sl2e's rounding, a
  // relative 6e-8 on every z - m, as the two-step form has in log2 e's.
  // Label smoothing needs z - m itself and keeps the two steps, as does a
  // thread whose |c| reaches 2^22: c's rounding is then an ulp of 1 or more
  // (at -1e30, 2^77), which corr's 2^-eps would not take back.
  const bool skip_stats = p.phases & kSkipStats;
  const float sl2e = s * kLog2e;
  float e[VR][NV];
  float mt = -INFINITY, corr = 1.f, acc[3] = {0.f, 0.f, 0.f};  // r, wd, ws
  auto stats = [&](auto positive, auto with_smooth) {
    constexpr bool POS = decltype(positive)::value;
    constexpr bool SM = decltype(with_smooth)::value;
    Extreme<T, POS> ext(pad);
#pragma unroll
    for (int i = 0; i < NRAW; i++)
      if (tid + i * NT < nvec) ext.add(raw[i]);
    if (ASYNC) {
#pragma unroll
      for (int i = S0; i < S0 + VS; i++)
        if (tid + i * NT < nvec) ext.add(*raw_slot(i));
    }
    const float xext = ext.get();
    mt = xext * s;  // -inf where there are no columns (x_ext = pad) or every z is -inf
    const float msafe = mt == -INFINITY ? 0.f : mt;
    const float c = mt == -INFINITY ? 0.f : xext * sl2e;
    const bool one_fma = !SM && (fabsf(c) < 0x1p22f || !isfinite(mt));
    if (one_fma && isfinite(mt)) corr = ex2(fmaf(fmaf(xext, s, -mt), kLog2e, -fmaf(xext, sl2e, -c)));
    float s0 = 0.f, s1 = 0.f;
    auto pass = [&](auto fma_form) {
      constexpr bool ONE = decltype(fma_form)::value;
#pragma unroll
      for (int i = 0; i < VT; i++) {
        const int vi = tid + i * NT;
        float ev[NV];
        if (vi < nvec) {
          const int j0 = vi * NV;
          float x[NV];
          Vec<T>::cvt(ASYNC && i >= S0 ? *raw_slot(i) : raw[i < NRAW ? i : 0], x);
#pragma unroll
          for (int k = 0; k < NV; k++) {
            if (ONE) {
              ev[k] = ex2(fmaf(x[k], sl2e, -c));
            } else {
              const float d = fmaf(x[k], s, -msafe);
              ev[k] = ex2(d * kLog2e);
              if (SM && j0 + k < clen) {
                acc[1] += d;
                acc[2] += 1.f;
              }
            }
          }
          if ((unsigned)(tloc - j0) < (unsigned)NV) {  // the target's vector: its term stays out of r
            float rest = 0.f;
#pragma unroll
            for (int k = 0; k < NV; k++)
              if (j0 + k != tloc) rest += ev[k];
            s0 += rest;
          } else {
#pragma unroll
            for (int k = 0; k < NV; k += 2) {
              s0 += ev[k];
              s1 += ev[k + 1];
            }
          }
        } else {
#pragma unroll
          for (int k = 0; k < NV; k++) ev[k] = 0.f;
        }
        if (i >= S0 && i < S0 + VS) {
          if (vi < nvec) {
#pragma unroll
            for (int h = 0; h < NH; h++)
              es4[((i - S0) * NH + h) * NT + tid] = make_float4(ev[4 * h], ev[4 * h + 1], ev[4 * h + 2], ev[4 * h + 3]);
          }
        } else {
#pragma unroll
          for (int k = 0; k < NV; k++) e[i - E0][k] = ev[k];
        }
      }
    };
    if (one_fma) pass(std::true_type());
    else pass(std::false_type());
    acc[0] = (s0 + s1) * corr;
  };
  if (ASYNC) cp_async_wait<0>();  // this thread's vectors in es4 (each reads only its own)
  if (skip_stats) {
    // Benchmark phase: no max, exp or sums (m = 0, r = 1 for the first
    // thread of the chunk, e = 0).
    mt = 0.f;
    acc[0] = tid == 0 ? 1.f : 0.f;
#pragma unroll
    for (int i = 0; i < VR; i++)
#pragma unroll
      for (int k = 0; k < NV; k++) e[i][k] = 0.f;
#pragma unroll
    for (int i = S0; i < S0 + VS; i++)
      if (tid + i * NT < nvec)
#pragma unroll
        for (int h = 0; h < NH; h++) es4[((i - S0) * NH + h) * NT + tid] = make_float4(0.f, 0.f, 0.f, 0.f);
  } else if (smooth) {
    if (s > 0.f) stats(std::true_type(), std::true_type());
    else stats(std::false_type(), std::true_type());
  } else {
    if (s > 0.f) stats(std::true_type(), std::false_type());
    else stats(std::false_type(), std::false_type());
  }

  // 3. Warp, then block: sums moved to the larger max (the wd terms
  // (z - m) by (m_old - m_new) per column counted in ws).
  auto rescale = [&](float m, float mnew, float *a) {
    if (m == -INFINITY) {  // nothing but -inf (or nothing): sums of 0, -inf or NaN stay
      return;
    }
    const float msafe = mnew == -INFINITY ? 0.f : mnew;
    const float delta = m - msafe;
    a[0] *= ex2(delta * kLog2e);
    if (smooth) a[1] = fmaf(delta, a[2], a[1]);
  };
  {
    const float mw = warp_max(mt);
    rescale(mt, mw, acc);
    const float r = warp_sum(acc[0]);
    const float wd = smooth ? warp_sum(acc[1]) : 0.f;
    const float ws = smooth ? warp_sum(acc[2]) : 0.f;
    if (lane == 0) {
      wred[0][warp] = mw;
      wred[1][warp] = r;
      wred[2][warp] = wd;
      wred[3][warp] = ws;
    }
  }
  if (tid == 0) {
    failed_sh = report >= 0;
    grad_scales(p, go, dsum, dcount, &gscale[0], &gscale[1]);
    xt_sh = xt;
  }
  __syncthreads();  // also orders xt_sh before the pushes
  // A bad target anywhere: every CTA of every row leaves before writing
  // (the cluster's CTAs read the same verdict, and none has pushed yet).
  if (failed_sh) return;
  if (warp == 0) {
    float mw = lane < NW ? wred[0][lane] : -INFINITY;
    float a[3] = {lane < NW ? wred[1][lane] : 0.f, lane < NW ? wred[2][lane] : 0.f, lane < NW ? wred[3][lane] : 0.f};
    const float mc = warp_max(mw);
    rescale(mw, mc, a);
    RegPartial part;
    part.m = mc;
    part.r = warp_sum(a[0]);
    part.wd = smooth ? warp_sum(a[1]) : 0.f;
    part.ws = smooth ? warp_sum(a[2]) : 0.f;
    part.wd64 = part.wd;
    // Logits near FLT_MAX: the smoothing sum, or a term of it, overflowed
    // f32; redone in double, as in ce_rows_body (whole warp; rare).
    if (smooth && !isfinite(part.wd)) {
      const double msafe = mc == -INFINITY ? 0.0 : (double)mc;
      double sum64 = 0.0;
      for (int j = lane; j < clen; j += 32) sum64 += fma((double)Vec<T>::one(xc, j), (double)s, -msafe);
      part.wd64 = warp_sum_d(sum64);
    }
    Partial q = {-INFINITY, 0.f, 0.f, 0.f, 0.f, 0.0, 0.0};
    if (K > 1) {
#ifdef GS_CE_CLUSTERS
      asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");  // every mbarrier of the cluster is set
      if (lane < K) push_partial(&parts[rank], &bar, (unsigned)lane, part);
      asm volatile(
          "{\n\t.reg .pred done;\n\tW%=:\n\t"
          "mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 done, [%0], 0;\n\t"
          "@!done bra W%=;\n\t}" ::"r"(smem_addr(&bar))
          : "memory");
      if (lane < K) q = parts[lane].widen();
#endif
    } else if (lane == 0) {
      q = part.widen();
    }
    // 5. The row's scalars.
#pragma unroll
    for (int i = 0; i < VR; i++)
#pragma unroll
      for (int h = 0; h < NH; h++)
        park[i * NH + h][lane] = make_float4(e[i][4 * h], e[i][4 * h + 1], e[i][4 * h + 2], e[i][4 * h + 3]);
    row_scalars<false>(p, row, K, lane, q, -INFINITY, xt_sh, 1.f, gscale[0], gscale[1], leader, &info, nullptr);
#pragma unroll
    for (int i = 0; i < VR; i++)
#pragma unroll
      for (int h = 0; h < NH; h++) {
        const float4 v = park[i * NH + h][lane];
        e[i][4 * h] = v.x;
        e[i][4 * h + 1] = v.y;
        e[i][4 * h + 2] = v.z;
        e[i][4 * h + 3] = v.w;
      }
  } else if (CL && K > 1) {
#ifdef GS_CE_CLUSTERS
    asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory");  // pairs with this thread's arrive
#endif
  }
  __syncthreads();
  if (!grow) return;

  // The gradient: dz_j = e_j 2^(m_t - ms) ap s - bw s, the target's column
  // apart; in double where the row's constants overflow f32 (RowInfo::wide).
  const RowInfo ri = info;
  const float f = mt == -INFINITY ? 0.f : ex2((mt - ri.ms) * kLog2e) * corr;
  auto grad_pass = [&](auto wide) {
    constexpr bool WIDE = decltype(wide)::value;
    const float fa = f * (ri.ap * s), bws = ri.bw * s;
    const double fa64 = (double)f * ri.ap64 * (double)s, bws64 = ri.bw64 * (double)s;
#pragma unroll
    for (int i = 0; i < VT; i++) {
      const int vi = tid + i * NT;
      if (vi < nvec) {
        const int j0 = vi * NV;
        float ev[NV], gv[NV];
        if (i >= S0 && i < S0 + VS) {
#pragma unroll
          for (int h = 0; h < NH; h++) {
            const float4 q = es4[((i - S0) * NH + h) * NT + tid];
            ev[4 * h] = q.x;
            ev[4 * h + 1] = q.y;
            ev[4 * h + 2] = q.z;
            ev[4 * h + 3] = q.w;
          }
        } else {
#pragma unroll
          for (int k = 0; k < NV; k++) ev[k] = e[i - E0][k];
        }
#pragma unroll
        for (int k = 0; k < NV; k++) gv[k] = WIDE ? (float)((double)ev[k] * fa64 - bws64) : fmaf(ev[k], fa, -bws);
        if ((unsigned)(tloc - j0) < (unsigned)NV) {
#pragma unroll
          for (int k = 0; k < NV; k++)
            if (j0 + k == tloc) gv[k] = ri.dxt;
        }
        store_grad<NV, kStoreStream>(grow, p.gdtype, c0 + j0, gv, min(NV, clen - j0), galigned);
      }
    }
  };
  if (p.phases & kSkipGradMath) store_zeros();
  else if (ri.wide) grad_pass(std::true_type());
  else grad_pass(std::false_type());
}

template <typename T, bool CL>
__global__ void __launch_bounds__(kRegThreads, 2) ce_rows_reg(Params p) {
#if defined(__CUDA_ARCH__) && !defined(GS_CE_CLUSTERS)
  // Below sm_90 a cluster kernel is never launched; it is not compiled either.
  if constexpr (CL) {
    __trap();
  } else
#endif
  {
    ce_reg_body<T, CL>(p);
  }
}
