// bench_cross_entropy_cuda: the CUDA cross-entropy family against a float64
// CPU computation (--check), and the fused forward+backward timed against a
// device-to-device copy of the logits (default).
//
//   bench_cross_entropy_cuda --check [--no-big] [--filter TEXT]
//                                                  correctness, PASS/FAIL lines
//   bench_cross_entropy_cuda [--sweep] [--phases] [--reps N] [--filter TEXT]
//                                                  timings (--filter: "bf16 8192x32000")
//
// Self-contained: the float64 reference below follows docs/losses.md
// directly and shares no code with the kernels.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdarg>
#include <functional>
#include <tuple>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

extern "C" {
#include "cross_entropy.h"
#include "gs_device.h"
#include "gs_half.h"
}

#include "bench_cuda.h"

// Test hooks of kernels/cuda/cross_entropy.cu (not part of the contract).
extern "C" void gs_ce_cuda_tune(int mode, int chunk_bytes, int max_cluster, int threads, int grid_cap);
extern "C" const char *gs_ce_cuda_last_plan(void);
extern "C" void gs_ce_cuda_phases(int skip);

namespace {

enum { OP_CE = 0, OP_LP = 1, OP_ENT = 2 };
enum { ENTRY_FUSED = 0, ENTRY_FORWARD = 1, ENTRY_BACKWARD = 2 };


struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9e3779b97f4a7c15ull + 0x1234567ull) {}
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }
  double normal() {
    double u1 = uniform(), u2 = uniform();
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
  }
};

size_t dsize(gs_dtype d) { return d == GS_F32 ? 4 : d == GS_F64 || d == GS_I64 ? 8 : d == GS_I32 ? 4 : 2; }
const char *dname(gs_dtype d) {
  switch (d) {
    case GS_F32: return "f32";
    case GS_BF16: return "bf16";
    case GS_F16: return "f16";
    case GS_I32: return "i32";
    case GS_I64: return "i64";
    default: return "f64";
  }
}

// Rounds x to dtype d, writes it at dst[i], returns the stored value.
double put(void *dst, gs_dtype d, int64_t i, double x) {
  if (d == GS_F32) {
    float f = (float)x;
    ((float *)dst)[i] = f;
    return f;
  }
  if (d == GS_BF16) {
    uint16_t h = gs_f32_to_bf16((float)x);
    ((uint16_t *)dst)[i] = h;
    return gs_bf16_to_f32(h);
  }
  uint16_t h = gs_f32_to_f16((float)x);
  ((uint16_t *)dst)[i] = h;
  return gs_f16_to_f32(h);
}

double get(const void *src, gs_dtype d, int64_t i) {
  if (d == GS_F32) return ((const float *)src)[i];
  if (d == GS_BF16) return gs_bf16_to_f32(((const uint16_t *)src)[i]);
  return gs_f16_to_f32(((const uint16_t *)src)[i]);
}

// The float64 reference, LOSSES.md line by line.
struct RefIn {
  int op = OP_CE;
  int64_t n = 0, v = 1;
  const double *x = nullptr;  // n x v, compact
  const int64_t *t = nullptr;
  const double *w = nullptr;  // v or NULL
  double eps = 0, s = 1, c = 0, lam = 0;
  int red = GS_REDUCE_MEAN;
  int64_t ignore = -100;
  const double *go = nullptr;  // NULL, 1 value, or n values
  int64_t go_n = 0;
};

struct RefOut {
  std::vector<double> loss_rows, lse, zl, grad;
  double loss = 0;
  int64_t bad_row = -1, bad_value = 0;
};

void ref_row(const RefIn &in, int64_t i, double *loss_i, double *lse_i, double *zl_i, double *grad_row,
             double gce, double gz) {
  const int64_t v = in.v;
  const double *x = in.x + i * v;
  std::vector<double> z(v);
  bool nan = false;
  double m = -INFINITY;
  for (int64_t j = 0; j < v; j++) {
    z[j] = in.c > 0 ? in.c * tanh(in.s * x[j] / in.c) : in.s * x[j];
    if (std::isnan(z[j])) nan = true;
    else if (z[j] > m) m = z[j];
  }
  if (nan) m = NAN;
  double sum = 0;
  for (int64_t j = 0; j < v; j++) sum += exp(z[j] - m);
  const double lse = m + log(sum);
  std::vector<double> p(v);
  for (int64_t j = 0; j < v; j++) p[j] = exp(z[j] - lse);
  const int64_t t = in.op == OP_ENT ? -1 : in.t[i];
  double loss = 0, zl = 0;
  const double W = [&] {
    if (!in.w) return (double)v;
    double a = 0;
    for (int64_t j = 0; j < v; j++) a += in.w[j];
    return a;
  }();
  double spz = 0;
  if (in.op == OP_CE) {
    const double wt = in.w ? in.w[t] : 1.0;
    const double nll = -wt * (z[t] - lse);
    double smo = 0;
    if (in.eps > 0)
      for (int64_t j = 0; j < v; j++) smo += -(in.w ? in.w[j] : 1.0) * (z[j] - lse);
    zl = in.lam != 0 ? in.lam * lse * lse : 0.0;  // no z-loss term at all when lam = 0
    loss = (1 - in.eps) * nll + (in.eps > 0 ? in.eps / v * smo : 0.0) + zl;
  } else if (in.op == OP_LP) {
    loss = z[t] - lse;
  } else {
    for (int64_t j = 0; j < v; j++) spz += p[j] == 0 ? 0.0 : p[j] * z[j];  // p log p -> 0
    loss = lse - spz;
  }
  *loss_i = loss;
  *lse_i = lse;
  *zl_i = zl;
  if (!grad_row) return;
  for (int64_t j = 0; j < v; j++) {
    double dz;
    if (in.op == OP_CE) {
      const double wt = in.w ? in.w[t] : 1.0, wj = in.w ? in.w[j] : 1.0;
      dz = gce * (wt * (1 - in.eps) * (p[j] - (j == t ? 1.0 : 0.0)) + in.eps / v * (W * p[j] - wj)) +
           gz * 2 * in.lam * lse * p[j];
    } else if (in.op == OP_LP) {
      dz = gce * ((j == t ? 1.0 : 0.0) - p[j]);
    } else {
      dz = p[j] == 0 ? 0.0 : gce * p[j] * (spz - z[j]);
    }
    const double chain = in.c > 0 ? in.s * (1 - (z[j] / in.c) * (z[j] / in.c)) : in.s;
    grad_row[j] = dz * chain;
  }
}

void ref_compute(const RefIn &in, RefOut &out, bool want_grad) {
  const int64_t n = in.n, v = in.v;
  out.loss_rows.assign(n, 0.0);
  out.lse.assign(n, 0.0);
  out.zl.assign(n, 0.0);
  out.grad.assign(want_grad ? n * v : 0, 0.0);
  double d = 0, count = 0;
  std::vector<char> active(n, 1);
  for (int64_t i = 0; i < n && in.op != OP_ENT; i++) {
    const int64_t t = in.t[i];
    if (t == in.ignore) {
      active[i] = 0;
      continue;
    }
    if (t < 0 || t >= v) {
      if (out.bad_row < 0) {
        out.bad_row = i;
        out.bad_value = t;
      }
      active[i] = 0;
      continue;
    }
    d += in.w ? in.w[t] : 1.0;
    count += 1;
  }
  double sa = 0, sb = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!active[i]) continue;
    double go = in.go_n == 0 ? 1.0 : in.go[in.go_n == 1 ? 0 : i];
    double gce = go, gz = go;
    if (in.op == OP_CE && in.red == GS_REDUCE_MEAN) {
      gce = go / d;
      gz = go / count;
    }
    ref_row(in, i, &out.loss_rows[i], &out.lse[i], &out.zl[i], want_grad ? &out.grad[i * v] : nullptr, gce, gz);
    sa += out.loss_rows[i] - out.zl[i];
    sb += out.zl[i];
  }
  if (in.red == GS_REDUCE_MEAN) out.loss = sa / d + (in.lam != 0 ? sb / count : 0.0);
  else out.loss = sa + sb;
}

// Comparison: |out - ref| <= atol + rtol |ref| element by element, NaN and
// infinities matching exactly. Returns the worst ratio (> 1 fails).
struct Cmp {
  double worst = 0;
  int64_t where = -1;
  double got = 0, want = 0;
  bool pattern = true;
  void add(double o, double r, double rtol, double atol, int64_t i) {
    double ratio;
    if (std::isnan(r) || std::isnan(o) || std::isinf(r) || std::isinf(o)) {
      ratio = (std::isnan(r) && std::isnan(o)) || (o == r) ? 0.0 : INFINITY;
      if (ratio != 0) pattern = false;
    } else {
      ratio = fabs(o - r) / (atol + rtol * fabs(r));
    }
    if (where < 0 || ratio > worst) {
      worst = ratio;
      where = i;
      got = o;
      want = r;
    }
  }
};

double max_abs(const std::vector<double> &a) {
  double m = 0;
  for (double x : a)
    if (std::isfinite(x)) m = std::max(m, fabs(x));
  return m;
}

struct Case {
  std::string name;
  int op = OP_CE;
  int entry = ENTRY_FUSED;
  int64_t n = 37, v = 1000, lpad = 0, gpad = 0;
  gs_dtype ldt = GS_BF16, gdt = GS_BF16, tdt = GS_I64;
  bool inplace = false, weighted = false;
  double eps = 0, s = 1, c = 0, lam = 0;
  int red = GS_REDUCE_MEAN;
  int64_t ignore = -100;
  int go_mode = 0;  // 0 NULL, 1 scalar 0.7, 2 per row
  int fill = 0;     // 0 normal, 1 -inf entries, 2 a NaN row, 3 +-1e4, 4 near-certain targets
  double ignore_frac = 0.15;
  int bad = 0;      // 1: targets out of range at rows 3 and 5
  bool all_ignored = false;
};

struct Variant {
  const char *name;
  int mode, chunk, maxk, threads, cap;
};
// Every case runs through each path: small chunks force clusters of up to 8
// or 16 CTAs on small rows, and a cap of 3 clusters makes each loop over rows.
const Variant kVariants[] = {
    {"auto", 0, 0, 0, 0, 0},
    {"resident-k8", 1, 512, 8, 0, 0},
    {"resident-k16", 1, 512, 16, 64, 0},
    {"resident2-k8-cap3", 3, 512, 8, 0, 3},
    {"resident2-k1-cap3", 3, 1 << 20, 1, 0, 3},
    {"resident-k1-cap3", 1, 1 << 20, 1, 0, 3},
    {"stream-k8", 2, 512, 8, 0, 0},
    {"stream-k1-cap3", 2, 1 << 30, 1, 0, 3},
};

struct DevMem {
  void *p = nullptr;
  size_t bytes = 0;
  DevMem() = default;
  explicit DevMem(size_t b) { alloc(b); }
  void alloc(size_t b) {
    bytes = b;
    gs_error err = {};
    if (b && gs_cuda_malloc(&p, b, &err) != GS_OK) {
      fprintf(stderr, "gs_cuda_malloc(%zu): %s\n", b, err.msg);
      exit(1);
    }
  }
  ~DevMem() { gs_cuda_free(p); }
  DevMem(const DevMem &) = delete;
  DevMem &operator=(const DevMem &) = delete;
};

int g_pass = 0, g_fail = 0;

void report(bool ok, const std::string &what, const std::string &detail) {
  (ok ? g_pass : g_fail)++;
  printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what.c_str(), detail.empty() ? "" : "  ", detail.c_str());
  fflush(stdout);
}

std::string fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char *f, ...) {
  char b[512];
  va_list ap;
  va_start(ap, f);
  vsnprintf(b, sizeof b, f, ap);
  va_end(ap);
  return b;
}

void run_case(const Case &cs) {
  Rng rng(std::hash<std::string>()(cs.name));
  const int64_t n = cs.n, v = cs.v;
  const int64_t ls = v + cs.lpad;
  const gs_dtype gdt = cs.inplace ? cs.ldt : cs.gdt;
  const int64_t gs = cs.inplace ? ls : v + cs.gpad;
  const size_t le = dsize(cs.ldt), ge = dsize(gdt);
  const bool want_grad = cs.entry != ENTRY_FORWARD;
  const bool want_loss = cs.entry != ENTRY_BACKWARD;

  // Host data: logits in their dtype (padding columns random too), exact values in double.
  std::vector<unsigned char> xh(std::max<int64_t>(n * ls, 1) * le);
  std::vector<double> x(std::max<int64_t>(n * v, 1));
  std::vector<int64_t> t(std::max<int64_t>(n, 1));
  for (int64_t i = 0; i < n; i++) {
    t[i] = (int64_t)(rng.next() % (uint64_t)v);
    if (cs.all_ignored || rng.uniform() < cs.ignore_frac) t[i] = cs.ignore;
    if (cs.op != OP_ENT && cs.ignore >= 0 && cs.ignore < v && t[i] == cs.ignore && !cs.all_ignored &&
        rng.uniform() < 0.5)
      t[i] = (cs.ignore + 1) % v;
  }
  if (cs.bad && n > 5) {
    t[3] = v;
    t[5] = -7;
  }
  for (int64_t i = 0; i < n; i++) {
    for (int64_t j = 0; j < ls; j++) {
      double val;
      switch (cs.fill) {
        case 1: val = rng.uniform() < 0.05 ? -INFINITY : 2.0 * rng.normal(); break;
        case 3: val = (rng.uniform() * 2 - 1) * 1e4; break;
        case 4: val = rng.normal(); break;
        default: val = 2.0 * rng.normal(); break;
      }
      if (cs.fill == 2 && i == 1 && j == v / 2) val = NAN;
      if (cs.fill == 4 && t[i] >= 0 && t[i] < v && j == t[i]) val = 30.0;
      double stored = put(xh.data(), cs.ldt, i * ls + j, val);
      if (j < v) x[i * v + j] = stored;
    }
  }
  std::vector<double> w;
  std::vector<float> wf;
  if (cs.weighted) {
    for (int64_t j = 0; j < v; j++) {
      wf.push_back((float)(0.2 + 1.8 * rng.uniform()));
      w.push_back(wf.back());
    }
  }
  std::vector<float> gof;
  std::vector<double> go;
  if (cs.go_mode == 1) gof.push_back(0.7f);
  if (cs.go_mode == 2)
    for (int64_t i = 0; i < n; i++) gof.push_back((float)(rng.uniform() * 3 - 1));
  for (float f : gof) go.push_back(f);

  RefIn in;
  in.op = cs.op;
  in.n = n;
  in.v = v;
  in.x = x.data();
  in.t = t.data();
  in.w = cs.weighted ? w.data() : nullptr;
  in.eps = cs.eps;
  in.s = cs.s;
  in.c = cs.c;
  in.lam = cs.lam;
  in.red = cs.op == OP_CE ? cs.red : GS_REDUCE_NONE;
  in.ignore = cs.ignore;
  in.go = go.data();
  in.go_n = (int64_t)go.size();
  RefOut ref;
  ref_compute(in, ref, want_grad);
  const bool expect_bad = ref.bad_row >= 0;
  const bool per_row_loss = cs.op != OP_CE || cs.red == GS_REDUCE_NONE;

  // Device buffers.
  DevMem dx(std::max<int64_t>(n * ls, 1) * le);
  DevMem dg(cs.inplace || !want_grad ? 0 : std::max<int64_t>(n * gs, 1) * ge);
  DevMem dt(std::max<int64_t>(n, 1) * dsize(cs.tdt));
  DevMem dloss(std::max<int64_t>(n, 1) * 4), dlse(std::max<int64_t>(n, 1) * 4), dzl(std::max<int64_t>(n, 1) * 4);
  DevMem dw(cs.weighted ? v * 4 : 0), dgo(gof.size() * 4);
  gs_error err = {};
  std::vector<unsigned char> th(std::max<int64_t>(n, 1) * dsize(cs.tdt));
  for (int64_t i = 0; i < n; i++) {
    if (cs.tdt == GS_I64) ((int64_t *)th.data())[i] = t[i];
    else ((int32_t *)th.data())[i] = (int32_t)t[i];
  }
  gs_cuda_memcpy(dt.p, th.data(), th.size(), 0, &err);
  if (cs.weighted) gs_cuda_memcpy(dw.p, wf.data(), v * 4, 0, &err);
  if (!gof.empty()) gs_cuda_memcpy(dgo.p, gof.data(), gof.size() * 4, 0, &err);

  std::string variants_failed, worst_line;
  double worst_all = 0;
  std::vector<float> first_loss;
  std::vector<unsigned char> first_grad;
  for (const Variant &var : kVariants) {
    gs_ce_cuda_tune(var.mode, var.chunk, var.maxk, var.threads, var.cap);
    gs_cuda_memcpy(dx.p, xh.data(), n * ls * le, 0, &err);
    if (dg.p) gs_cuda_memset(dg.p, 0xff, dg.bytes, &err);  // poison: every written element must change it
    gs_cuda_memset(dloss.p, 0xff, dloss.bytes, &err);
    gs_cuda_memset(dlse.p, 0xff, dlse.bytes, &err);
    gs_cuda_memset(dzl.p, 0xff, dzl.bytes, &err);

    gs_ce_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.v = v;
    a.logits = dx.p;
    a.logits_dtype = cs.ldt;
    a.logits_stride = ls;
    a.target = cs.op == OP_ENT ? nullptr : dt.p;
    a.target_dtype = cs.tdt;
    a.ignore_index = cs.ignore;
    a.weight = cs.weighted ? (const float *)dw.p : nullptr;
    a.label_smoothing = cs.eps;
    a.logit_scale = cs.s;
    a.softcap = cs.c;
    a.lse_square_scale = cs.lam;
    a.reduction = (gs_reduction)cs.red;
    if (want_loss) {
      a.loss = dloss.p;
      a.lse = dlse.p;
      a.z_loss = cs.op == OP_CE ? dzl.p : nullptr;
    }
    if (want_grad) {
      a.grad = cs.inplace ? dx.p : dg.p;
      a.grad_dtype = gdt;
      a.grad_stride = gs;
      a.grad_output = gof.empty() ? nullptr : dgo.p;
      a.grad_output_n = (int64_t)gof.size();
    }
    memset(&err, 0, sizeof err);
    gs_status st;
    if (cs.op == OP_CE) st = cs.entry == ENTRY_BACKWARD ? gs_ce_backward_cuda(&a, &err) : gs_ce_forward_cuda(&a, &err);
    else if (cs.op == OP_LP)
      st = cs.entry == ENTRY_BACKWARD ? gs_log_probs_backward_cuda(&a, &err) : gs_log_probs_forward_cuda(&a, &err);
    else st = cs.entry == ENTRY_BACKWARD ? gs_entropy_backward_cuda(&a, &err) : gs_entropy_forward_cuda(&a, &err);

    std::string why;
    double worst = 0;
    if (expect_bad) {
      if (st != GS_ERR_TARGET || err.row != ref.bad_row || err.value != ref.bad_value)
        why = fmt("expected target error row %lld value %lld, got status %d row %lld value %lld (%s)",
                  (long long)ref.bad_row, (long long)ref.bad_value, (int)st, (long long)err.row,
                  (long long)err.value, err.msg);
    } else if (st != GS_OK) {
      why = fmt("status %d: %s", (int)st, err.msg);
    } else {
      std::vector<float> loss(std::max<int64_t>(n, 1)), lse(loss.size()), zl(loss.size());
      gs_cuda_memcpy(loss.data(), dloss.p, loss.size() * 4, 1, &err);
      gs_cuda_memcpy(lse.data(), dlse.p, lse.size() * 4, 1, &err);
      gs_cuda_memcpy(zl.data(), dzl.p, zl.size() * 4, 1, &err);
      const double rtol = cs.fill == 4 ? 1e-3 : 3e-5;
      if (want_loss) {
        Cmp c1, c2, c3;
        if (per_row_loss) {
          const double at = cs.fill == 4 ? 0.0 : 1e-6 * (1 + max_abs(ref.loss_rows));
          for (int64_t i = 0; i < n; i++) c1.add(loss[i], ref.loss_rows[i], rtol, at, i);
        } else {
          const double at = cs.fill == 4 ? 0.0 : 1e-7;
          c1.add(loss[0], ref.loss, rtol, at, 0);
        }
        for (int64_t i = 0; i < n; i++) c2.add(lse[i], ref.lse[i], 3e-5, 1e-6 * (1 + max_abs(ref.lse)), i);
        if (cs.op == OP_CE)
          for (int64_t i = 0; i < n; i++) c3.add(zl[i], ref.zl[i], 1e-4, 1e-6 * (1 + max_abs(ref.zl)), i);
        if (c1.worst > 1) why += fmt("loss[%lld] %.9g want %.9g; ", (long long)c1.where, c1.got, c1.want);
        if (c2.worst > 1) why += fmt("lse[%lld] %.9g want %.9g; ", (long long)c2.where, c2.got, c2.want);
        if (c3.worst > 1) why += fmt("z_loss[%lld] %.9g want %.9g; ", (long long)c3.where, c3.got, c3.want);
        worst = std::max({worst, c1.worst, c2.worst, c3.worst});
        if (per_row_loss || cs.red != GS_REDUCE_NONE) first_loss.assign(loss.begin(), loss.end());
      }
      if (want_grad && n > 0) {
        std::vector<unsigned char> gh(n * gs * ge);
        gs_cuda_memcpy(gh.data(), cs.inplace ? dx.p : dg.p, gh.size(), 1, &err);
        const double grt = gdt == GS_F32 ? 1e-4 : gdt == GS_BF16 ? 5e-3 : 1.2e-3;
        const double gmax = max_abs(ref.grad);
        const double gat = std::max(1e-6 * gmax, gdt == GS_F16 ? 6e-8 : 1e-30);
        Cmp cg, ct;
        int64_t pad_bad = -1;
        for (int64_t i = 0; i < n; i++) {
          for (int64_t j = 0; j < v; j++) {
            const double o = get(gh.data(), gdt, i * gs + j), r = ref.grad[i * v + j];
            cg.add(o, r, grt, gat, i * v + j);
            if (cs.fill == 4 && cs.op != OP_ENT && j == t[i]) ct.add(o, r, gdt == GS_F32 ? 1e-3 : 8e-3, 0.0, i);
          }
          for (int64_t j = v; j < gs; j++) {
            const unsigned char *pb = gh.data() + (i * gs + j) * ge;
            const unsigned char *want = cs.inplace ? xh.data() + (i * ls + j) * le : nullptr;
            for (size_t b = 0; b < ge; b++)
              if (want ? pb[b] != want[b] : pb[b] != 0xff) pad_bad = i * gs + j;
          }
        }
        if (cg.worst > 1)
          why += fmt("grad[%lld,%lld] %.9g want %.9g; ", (long long)(cg.where / v), (long long)(cg.where % v), cg.got,
                     cg.want);
        if (ct.worst > 1) why += fmt("target grad row %lld %.9g want %.9g; ", (long long)ct.where, ct.got, ct.want);
        if (pad_bad >= 0) why += fmt("padding element %lld was written; ", (long long)pad_bad);
        worst = std::max({worst, cg.worst, ct.worst});
        // Same inputs, same plan family: the auto variant runs twice to check determinism.
        if (&var == &kVariants[0]) first_grad = gh;
      }
    }
    if (!why.empty()) variants_failed += fmt("[%s: %s plan %s] ", var.name, why.c_str(), gs_ce_cuda_last_plan());
    worst_all = std::max(worst_all, worst);
  }
  // Determinism: the default plan again, bit for bit.
  if (variants_failed.empty() && !expect_bad && n > 0 && want_grad && !cs.inplace) {
    gs_ce_cuda_tune(0, 0, 0, 0, 0);
    gs_cuda_memcpy(dx.p, xh.data(), n * ls * le, 0, &err);
    gs_ce_args a;
    memset(&a, 0, sizeof a);
    a.n = n; a.v = v; a.logits = dx.p; a.logits_dtype = cs.ldt; a.logits_stride = ls;
    a.target = cs.op == OP_ENT ? nullptr : dt.p; a.target_dtype = cs.tdt; a.ignore_index = cs.ignore;
    a.weight = cs.weighted ? (const float *)dw.p : nullptr; a.label_smoothing = cs.eps; a.logit_scale = cs.s;
    a.softcap = cs.c; a.lse_square_scale = cs.lam; a.reduction = (gs_reduction)cs.red;
    a.grad = dg.p; a.grad_dtype = gdt; a.grad_stride = gs;
    a.grad_output = gof.empty() ? nullptr : dgo.p; a.grad_output_n = (int64_t)gof.size();
    if (cs.op == OP_CE) gs_ce_backward_cuda(&a, &err);
    else if (cs.op == OP_LP) gs_log_probs_backward_cuda(&a, &err);
    else gs_entropy_backward_cuda(&a, &err);
    std::vector<unsigned char> gh(n * gs * ge);
    gs_cuda_memcpy(gh.data(), dg.p, gh.size(), 1, &err);
    // Backward and fused must agree bit for bit only when the first run was the fused one.
    if (cs.entry != ENTRY_FORWARD && gh != first_grad) variants_failed += "[not deterministic: grad bits differ] ";
  }
  gs_ce_cuda_tune(0, 0, 0, 0, 0);
  report(variants_failed.empty(), cs.name, variants_failed.empty() ? fmt("(worst %.3g of tolerance)", worst_all)
                                                                    : variants_failed);
}

std::vector<Case> make_cases() {
  std::vector<Case> cs;
  auto add = [&](const std::string &name, Case c) {
    c.name = name;
    cs.push_back(c);
  };
  const gs_dtype dts[3] = {GS_F32, GS_BF16, GS_F16};
  // Shapes and dtypes, fused forward, mean.
  for (int64_t v : {1, 7, 33, 1000, 4099, 40000})
    for (gs_dtype d : dts) {
      Case c;
      c.v = v;
      c.ldt = c.gdt = d;
      add(fmt("ce fused mean V=%lld %s", (long long)v, dname(d)), c);
    }
  {
    Case c;
    c.n = 300; c.v = 129; c.ldt = GS_BF16; c.gdt = GS_BF16;
    add("ce fused mean N=300 V=129 bf16 (rows past one wave of small CTAs)", c);
  }
  // Entry points and reductions.
  for (gs_dtype d : {GS_F32, GS_BF16}) {
    Case c;
    c.ldt = c.gdt = d;
    c.entry = ENTRY_FORWARD;
    add(fmt("ce forward only mean %s", dname(d)), c);
    c.entry = ENTRY_BACKWARD;
    add(fmt("ce backward mean %s", dname(d)), c);
    c.entry = ENTRY_BACKWARD;
    c.go_mode = 1;
    add(fmt("ce backward mean grad_output=0.7 %s", dname(d)), c);
  }
  for (int red : {GS_REDUCE_NONE, GS_REDUCE_SUM, GS_REDUCE_MEAN})
    for (int gm : {0, 1, 2}) {
      if (gm == 2 && red != GS_REDUCE_NONE) continue;
      Case c;
      c.red = red;
      c.go_mode = gm;
      c.v = 257;
      add(fmt("ce fused reduction=%s grad_output=%s", red == 0 ? "none" : red == 1 ? "sum" : "mean",
              gm == 0 ? "NULL" : gm == 1 ? "scalar" : "per-row"),
          c);
    }
  for (int red : {GS_REDUCE_NONE, GS_REDUCE_SUM, GS_REDUCE_MEAN})
    for (int entry : {ENTRY_FUSED, ENTRY_FORWARD, ENTRY_BACKWARD}) {
      Case c;
      c.n = 0;
      c.red = red;
      c.entry = entry;
      add(fmt("ce N=0 reduction=%d entry=%d", red, entry), c);
    }
  // Strides, alignment, dtype mixes, in place.
  for (gs_dtype d : {GS_F32, GS_BF16})
    for (int64_t v : {1000, 4099}) {
      Case c;
      c.ldt = c.gdt = d;
      c.v = v;
      c.lpad = 3; c.gpad = 5;
      add(fmt("ce strided unaligned V=%lld %s", (long long)v, dname(d)), c);
      c.lpad = 8; c.gpad = 8;
      add(fmt("ce strided aligned V=%lld %s", (long long)v, dname(d)), c);
    }
  {
    Case c;
    c.ldt = GS_BF16; c.gdt = GS_F32; c.v = 40000;
    add("ce bf16 logits f32 grad V=40000", c);
    c.ldt = GS_F32; c.gdt = GS_BF16; c.v = 1000;
    add("ce f32 logits bf16 grad", c);
    c.ldt = GS_F16; c.gdt = GS_F32; c.v = 4099;
    add("ce f16 logits f32 grad V=4099", c);
    c.ldt = GS_F32; c.gdt = GS_F16; c.v = 33;
    add("ce f32 logits f16 grad V=33", c);
  }
  for (auto [d, v, pad] : {std::tuple<gs_dtype, int64_t, int64_t>{GS_BF16, 1000, 0}, {GS_BF16, 4099, 3},
                           {GS_F32, 40000, 0}, {GS_F16, 7, 1}}) {
    Case c;
    c.ldt = c.gdt = d;
    c.v = v;
    c.lpad = pad;
    c.inplace = true;
    add(fmt("ce in place V=%lld pad=%lld %s", (long long)v, (long long)pad, dname(d)), c);
  }
  // Options one at a time, then together.
  for (gs_dtype d : {GS_F32, GS_BF16})
    for (int64_t v : {33, 1000}) {
      Case b;
      b.ldt = b.gdt = d;
      b.v = v;
      Case c = b; c.weighted = true; add(fmt("ce weight V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.eps = 0.1; add(fmt("ce label_smoothing=0.1 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.eps = 1.0; add(fmt("ce label_smoothing=1 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.s = 0.5; add(fmt("ce logit_scale=0.5 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.s = -1.3; add(fmt("ce logit_scale=-1.3 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.c = 5; add(fmt("ce softcap=5 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.c = 30; c.s = 2; add(fmt("ce softcap=30 scale=2 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.lam = 1e-2; add(fmt("ce z-loss 1e-2 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.lam = 1e-2; c.red = GS_REDUCE_SUM; add(fmt("ce z-loss sum V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.ignore = 5; c.ignore_frac = 0.3; add(fmt("ce ignore_index=5 V=%lld %s", (long long)v, dname(d)), c);
      c = b; c.tdt = GS_I32; add(fmt("ce i32 targets V=%lld %s", (long long)v, dname(d)), c);
    }
  {
    Case c;
    c.weighted = true; c.eps = 0.1; c.s = 0.8; c.c = 20; c.lam = 1e-3;
    for (int red : {GS_REDUCE_NONE, GS_REDUCE_SUM, GS_REDUCE_MEAN})
      for (auto [ld, gd, v] : {std::tuple<gs_dtype, gs_dtype, int64_t>{GS_F32, GS_F32, 1000}, {GS_BF16, GS_F32, 40000},
                               {GS_F16, GS_BF16, 4099}, {GS_BF16, GS_BF16, 7}}) {
        Case e = c;
        e.red = red; e.ldt = ld; e.gdt = gd; e.v = v;
        e.go_mode = red == GS_REDUCE_NONE ? 2 : 1;
        e.lpad = v == 4099 ? 3 : 0;
        add(fmt("ce all options red=%d V=%lld %s->%s", red, (long long)v, dname(ld), dname(gd)), e);
      }
    Case e = c;
    e.entry = ENTRY_BACKWARD; e.v = 4099; e.ldt = GS_BF16; e.gdt = GS_BF16;
    add("ce all options backward V=4099 bf16", e);
    e.entry = ENTRY_FORWARD;
    add("ce all options forward only V=4099 bf16", e);
  }
  // Nasty values.
  for (gs_dtype d : dts) {
    Case c;
    c.ldt = c.gdt = d;
    c.fill = 1; c.eps = 0.1; add(fmt("ce -inf logits with smoothing %s", dname(d)), c);
    c.eps = 0; c.c = 10; add(fmt("ce -inf logits with softcap %s", dname(d)), c);
    c = Case(); c.ldt = c.gdt = d;
    c.fill = 2; c.red = GS_REDUCE_NONE; add(fmt("ce NaN row propagates %s", dname(d)), c);
    c.fill = 3; c.red = GS_REDUCE_MEAN; add(fmt("ce logits +-1e4 %s", dname(d)), c);
    c.s = 0.7; add(fmt("ce logits +-1e4 scale 0.7 %s", dname(d)), c);
  }
  for (gs_dtype g : {GS_F32, GS_BF16}) {
    Case c;
    c.ldt = GS_F32; c.gdt = g; c.fill = 4; c.red = GS_REDUCE_NONE;
    add(fmt("ce near-certain targets (loss ~1e-10, target grad exact) grad %s", dname(g)), c);
    c.ldt = GS_BF16; c.v = 40000;
    add(fmt("ce near-certain targets V=40000 bf16 grad %s", dname(g)), c);
  }
  // Bad targets and all-ignored rows.
  for (gs_dtype td : {GS_I64, GS_I32})
    for (int entry : {ENTRY_FUSED, ENTRY_FORWARD, ENTRY_BACKWARD}) {
      Case c;
      c.bad = 1; c.tdt = td; c.entry = entry; c.ignore_frac = 0;
      add(fmt("ce bad target reported (%s, entry %d)", dname(td), entry), c);
    }
  {
    Case c;
    c.bad = 1; c.op = OP_LP; c.ignore_frac = 0;
    add("log_probs bad target reported", c);
    c = Case(); c.all_ignored = true;
    add("ce all rows ignored: mean is NaN, grad zero", c);
    c.red = GS_REDUCE_SUM;
    add("ce all rows ignored: sum is 0", c);
    c.red = GS_REDUCE_MEAN; c.lam = 0.1;
    add("ce all rows ignored with z-loss: NaN", c);
  }
  // log_probs and entropy.
  for (int op : {OP_LP, OP_ENT})
    for (int64_t v : {1, 7, 1000, 40000})
      for (gs_dtype d : {GS_F32, GS_BF16}) {
        const char *on = op == OP_LP ? "log_probs" : "entropy";
        Case c;
        c.op = op; c.v = v; c.ldt = c.gdt = d; c.go_mode = 2;
        add(fmt("%s fused V=%lld %s", on, (long long)v, dname(d)), c);
        if (v != 1000) continue;
        c.entry = ENTRY_FORWARD; add(fmt("%s forward V=%lld %s", on, (long long)v, dname(d)), c);
        c.entry = ENTRY_BACKWARD; c.go_mode = 1; add(fmt("%s backward V=%lld %s", on, (long long)v, dname(d)), c);
        c.entry = ENTRY_FUSED; c.c = 15; c.s = 1.5; add(fmt("%s softcap+scale V=%lld %s", on, (long long)v, dname(d)), c);
        c = Case(); c.op = op; c.ldt = c.gdt = d; c.fill = 1; add(fmt("%s -inf logits %s", on, dname(d)), c);
        c.fill = 2; add(fmt("%s NaN row %s", on, dname(d)), c);
        c.fill = 0; c.inplace = true; c.lpad = 3; add(fmt("%s in place strided %s", on, dname(d)), c);
      }
  {
    Case c;
    c.op = OP_ENT; c.n = 0;
    add("entropy N=0", c);
  }
  return cs;
}

// Device-side generators for the large buffers: a hash of the element index.
__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void fill_logits(T *x, int64_t count, uint64_t seed, float scale) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x) {
    const uint64_t h = mix(seed + (uint64_t)i * 0x9e3779b97f4a7c15ull);
    // Sum of four uniforms: roughly normal, cheap, bounded.
    float u = 0.f;
    for (int k = 0; k < 4; k++) u += (float)((h >> (16 * k)) & 0xffff) * (1.f / 65536.f);
    const float val = (u - 2.f) * scale;
    if constexpr (sizeof(T) == 4) x[i] = val;
    else x[i] = __float2bfloat16_rn(val);
  }
}

__global__ void fill_targets(int64_t *t, int64_t n, int64_t v, uint64_t seed) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const uint64_t h = mix(seed ^ ((uint64_t)i * 0xd1b54a32d192ed03ull));
    t[i] = (h >> 8) % 7 == 0 ? -100 : (int64_t)((h >> 24) % (uint64_t)v);
  }
}

void fill_device(void *x, gs_dtype d, int64_t count, uint64_t seed, float scale) {
  if (d == GS_F32) fill_logits<float><<<4096, 256>>>((float *)x, count, seed, scale);
  else fill_logits<__nv_bfloat16><<<4096, 256>>>((__nv_bfloat16 *)x, count, seed, scale);
  CK(cudaGetLastError());
  CK(cudaDeviceSynchronize());
}

// Float64 loss for full rows of host logits, on all cores.
struct RowRef {
  double loss, lse;
};

RowRef ref_row_plain(const void *xh, gs_dtype d, int64_t v, int64_t t, std::vector<double> *grad) {
  double m = -INFINITY;
  for (int64_t j = 0; j < v; j++) m = std::max(m, get(xh, d, j));
  double s = 0;
  for (int64_t j = 0; j < v; j++) s += exp(get(xh, d, j) - m);
  const double lse = m + log(s);
  if (grad) {
    grad->resize(v);
    for (int64_t j = 0; j < v; j++) (*grad)[j] = exp(get(xh, d, j) - lse) - (j == t ? 1.0 : 0.0);
  }
  return {t >= 0 ? lse - get(xh, d, t) : 0.0, lse};
}

double ref_mean_loss(const std::vector<unsigned char> &xh, gs_dtype d, int64_t n, int64_t v,
                     const std::vector<int64_t> &t) {
  unsigned nt = std::max(1u, std::thread::hardware_concurrency());
  std::vector<double> sums(nt, 0.0), cnts(nt, 0.0);
  std::vector<std::thread> th;
  for (unsigned k = 0; k < nt; k++)
    th.emplace_back([&, k] {
      for (int64_t i = k; i < n; i += nt) {
        if (t[i] == -100) continue;
        sums[k] += ref_row_plain(xh.data() + (size_t)i * v * dsize(d), d, v, t[i], nullptr).loss;
        cnts[k] += 1;
      }
    });
  for (auto &x : th) x.join();
  double s = 0, c = 0;
  for (unsigned k = 0; k < nt; k++) {
    s += sums[k];
    c += cnts[k];
  }
  return s / c;
}

// 16384 x 262144 bf16: 2^32 elements, so row offsets pass 2^31 halfway down.
void big_check() {
  const int64_t n = 16384, v = 262144;
  const size_t bytes = (size_t)n * v * 2;
  size_t free_b = 0, total_b = 0;
  CK(cudaMemGetInfo(&free_b, &total_b));
  if (free_b < 2 * bytes + (1u << 30)) {
    report(false, "big offsets 16384x262144 bf16", fmt("not enough device memory (%.1f GiB free)", free_b / 1073741824.0));
    return;
  }
  DevMem dx(bytes), dg(bytes), dt(n * 8), dloss(n * 4), dlse(n * 4), dmean(4);
  fill_device(dx.p, GS_BF16, n * v, 77, 2.0f);
  fill_targets<<<64, 256>>>((int64_t *)dt.p, n, v, 78);
  CK(cudaDeviceSynchronize());
  std::vector<int64_t> t(n);
  gs_error err = {};
  gs_cuda_memcpy(t.data(), dt.p, n * 8, 1, &err);
  std::vector<int64_t> rows = {0, 1, 2, 8191, 8192, 8193, 12345, 16381, 16382, 16383};
  Rng rng(99);
  while (rows.size() < 40) rows.push_back((int64_t)(rng.next() % n));
  for (int path = 0; path < 3; path++) {
    gs_ce_cuda_tune(path == 0 ? 0 : path == 1 ? 2 : 1, 0, 0, 0, 0);
    gs_ce_args a;
    memset(&a, 0, sizeof a);
    a.n = n; a.v = v; a.logits = dx.p; a.logits_dtype = GS_BF16; a.logits_stride = v;
    a.target = dt.p; a.target_dtype = GS_I64; a.ignore_index = -100;
    a.logit_scale = 1; a.reduction = GS_REDUCE_NONE;
    a.loss = dloss.p; a.lse = dlse.p;
    a.grad = dg.p; a.grad_dtype = GS_BF16; a.grad_stride = v;
    gs_cuda_memset(dg.p, 0xff, bytes, &err);
    gs_status st = gs_ce_forward_cuda(&a, &err);
    const std::string plan = gs_ce_cuda_last_plan();
    std::string why;
    if (st != GS_OK) why = fmt("status %d: %s", (int)st, err.msg);
    std::vector<float> loss(n), lse(n);
    gs_cuda_memcpy(loss.data(), dloss.p, n * 4, 1, &err);
    gs_cuda_memcpy(lse.data(), dlse.p, n * 4, 1, &err);
    Cmp cl, cs, cg;
    std::vector<uint16_t> xr(v), gr(v);
    std::vector<double> gref;
    for (int64_t r : rows) {
      gs_cuda_memcpy(xr.data(), (char *)dx.p + (size_t)r * v * 2, v * 2, 1, &err);
      gs_cuda_memcpy(gr.data(), (char *)dg.p + (size_t)r * v * 2, v * 2, 1, &err);
      const bool ign = t[r] == -100;
      RowRef rr = ref_row_plain(xr.data(), GS_BF16, v, ign ? -1 : t[r], &gref);
      // mean over the non-ignored rows: the gradient is scaled by 1/D later;
      // here reduction "none" with grad_output NULL gives the plain softmax - onehot.
      cl.add(loss[r], ign ? 0.0 : rr.loss, 3e-5, 1e-6, r);
      cs.add(lse[r], ign ? 0.0 : rr.lse, 3e-5, 1e-6, r);
      for (int64_t j = 0; j < v; j++) cg.add(gs_bf16_to_f32(gr[j]), ign ? 0.0 : gref[j], 5e-3, 1e-9, r * v + j);
    }
    if (cl.worst > 1) why += fmt("loss[%lld] %.9g want %.9g; ", (long long)cl.where, cl.got, cl.want);
    if (cs.worst > 1) why += fmt("lse[%lld] %.9g want %.9g; ", (long long)cs.where, cs.got, cs.want);
    if (cg.worst > 1)
      why += fmt("grad[%lld,%lld] %.9g want %.9g; ", (long long)(cg.where / v), (long long)(cg.where % v), cg.got, cg.want);
    report(why.empty(), fmt("big offsets 16384x262144 bf16 fused, %d sampled rows (%s)", (int)rows.size(), plan.c_str()),
           why.empty() ? fmt("(worst %.3g of tolerance)", std::max({cl.worst, cs.worst, cg.worst})) : why);
    if (path == 0) {
      // "mean" over every row must equal the per-row losses summed on the host.
      a.reduction = GS_REDUCE_MEAN;
      a.loss = dmean.p;
      a.lse = nullptr;
      st = gs_ce_forward_cuda(&a, &err);
      float mean = 0;
      gs_cuda_memcpy(&mean, dmean.p, 4, 1, &err);
      double s = 0, c = 0;
      for (int64_t i = 0; i < n; i++)
        if (t[i] != -100) {
          s += loss[i];
          c += 1;
        }
      const double want = s / c;
      const bool ok = st == GS_OK && fabs(mean - want) <= 2e-6 * fabs(want);
      report(ok, "big offsets mean reduction = sum of per-row losses / D",
             fmt("(%.9g vs %.9g, status %d)", mean, want, (int)st));
    }
  }
  gs_ce_cuda_tune(0, 0, 0, 0, 0);
}

int run_check(bool big, const char *filter) {
  std::vector<Case> cases = make_cases();
  if (filter)
    cases.erase(std::remove_if(cases.begin(), cases.end(),
                               [&](const Case &c) { return c.name.find(filter) == std::string::npos; }),
                cases.end());
  printf("check: %zu cases x %zu path variants against float64\n", cases.size(),
         sizeof kVariants / sizeof kVariants[0]);
  for (const Case &c : cases) run_case(c);
  if (big) big_check();
  // No memory left behind by the kernels' scratch.
  report(gs_cuda_bytes_in_use() < 4096, "device memory returned after the checks",
         fmt("(%zu bytes in use)", gs_cuda_bytes_in_use()));
  printf("check: %d passed, %d failed\n", g_pass, g_fail);
  return g_fail ? 1 : 0;
}

// Benchmark.
struct BenchCfg {
  gs_dtype d;
  int64_t n, v;
  double public_ms, goal_ms;  // 0: none given
};

float median(std::vector<float> x) {
  std::sort(x.begin(), x.end());
  return x[x.size() / 2];
}

int run_bench(bool sweep, bool phases, int reps, const char *filter) {
  const BenchCfg cfgs[] = {
      {GS_BF16, 8192, 32000, 1.02, 0.6},   {GS_BF16, 8192, 128256, 2.55, 2.3}, {GS_BF16, 4096, 256000, 2.90, 2.4},
      {GS_F32, 8192, 32000, 0, 0},         {GS_F32, 8192, 128256, 4.97, 4.6},  {GS_F32, 4096, 256000, 0, 0},
  };
  struct Var {
    const char *name;
    int mode, chunk, maxk, threads, cap;
  };
  // "shared": the shared-memory resident plans alone (the automatic choice
  // before the register plan), timed in the same run for comparison.
  std::vector<Var> vars = {{"auto", 0, 0, 0, 0, 0}, {"shared", 1, 0, 0, 0, 0}};
  if (sweep) {
    const Var more[] = {
        {"r1:32K/t128", 1, 32 << 10, 0, 128, 0}, {"r1:32K/t256", 1, 32 << 10, 0, 256, 0},
        {"r1:48K", 1, 48 << 10, 0, 0, 0},        {"r1:80K", 1, 80 << 10, 0, 0, 0},
        {"r1:96K", 1, 96 << 10, 0, 0, 0},        {"r1:64K/k8", 1, 64 << 10, 8, 0, 0},
        {"r2:32K/t256", 3, 32 << 10, 0, 256, 0}, {"r2:64K/k16", 3, 64 << 10, 16, 0, 0},
        {"r1:64K", 1, 64 << 10, 0, 0, 0},       {"stream", 2, 0, 0, 0, 0},
        {"persist", 0, 0, 0, 0, -1},
    };
    vars.insert(vars.end(), std::begin(more), std::end(more));
    // The register plan at a given K (at least the K that holds the row).
    static const char *const reg_k[] = {"reg:K=4",  "reg:K=5",  "reg:K=6",  "reg:K=7",  "reg:K=8",  "reg:K=9",  "reg:K=10",
                                        "reg:K=11", "reg:K=12", "reg:K=13", "reg:K=14", "reg:K=15", "reg:K=16"};
    for (int k = 4; k <= 16; k++) vars.push_back({reg_k[k - 4], 4, 0, k, 0, 0});
  }
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  std::vector<std::string> table;
  for (const BenchCfg &c : cfgs) {
    char shape[64];
    snprintf(shape, sizeof shape, "%s %lldx%lld", dname(c.d), (long long)c.n, (long long)c.v);
    if (filter && !strstr(shape, filter)) continue;
    const size_t es = dsize(c.d), bytes = (size_t)c.n * c.v * es;
    DevMem dx(bytes), dg(bytes), dt(c.n * 8), dloss(4);
    fill_device(dx.p, c.d, c.n * c.v, 1234 + c.v, 2.0f);
    fill_targets<<<64, 256>>>((int64_t *)dt.p, c.n, c.v, 99 + c.v);
    CK(cudaDeviceSynchronize());
    // The copy the fused op is compared with: logits -> another buffer, device to device.
    std::vector<float> tc;
    for (int r = 0; r < reps + 3; r++) {
      CK(cudaEventRecord(e0));
      CK(cudaMemcpyAsync(dg.p, dx.p, bytes, cudaMemcpyDeviceToDevice));
      CK(cudaEventRecord(e1));
      CK(cudaEventSynchronize(e1));
      float ms;
      CK(cudaEventElapsedTime(&ms, e0, e1));
      if (r >= 3) tc.push_back(ms);
    }
    const float copy_ms = median(tc);
    gs_ce_args a;
    memset(&a, 0, sizeof a);
    a.n = c.n; a.v = c.v; a.logits = dx.p; a.logits_dtype = c.d; a.logits_stride = c.v;
    a.target = dt.p; a.target_dtype = GS_I64; a.ignore_index = -100;
    a.logit_scale = 1; a.reduction = GS_REDUCE_MEAN; a.loss = dloss.p;
    a.grad = dg.p; a.grad_dtype = c.d; a.grad_stride = c.v;
    gs_error err = {};
    // One timed line: median of reps calls after 3 warm-ups. In place, the
    // logits are restored from dx before every call (outside the events).
    auto timed = [&](const char *name, const gs_ce_args &args, bool inplace, bool in_table) {
      std::vector<float> tk;
      for (int r = 0; r < reps + 3; r++) {
        if (inplace) CK(cudaMemcpyAsync(dg.p, dx.p, bytes, cudaMemcpyDeviceToDevice));
        CK(cudaEventRecord(e0));
        gs_status st = gs_ce_forward_cuda(&args, &err);
        CK(cudaEventRecord(e1));
        CK(cudaEventSynchronize(e1));
        if (st != GS_OK) {
          printf("%s %s: status %d: %s\n", shape, name, (int)st, err.msg);
          return;
        }
        float ms;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 3) tk.push_back(ms);
      }
      const float ms = median(tk);
      std::sort(tk.begin(), tk.end());
      const std::string plan = gs_ce_cuda_last_plan();
      // Extra device memory: the peak during one call over what was in use before it.
      if (inplace) CK(cudaMemcpyAsync(dg.p, dx.p, bytes, cudaMemcpyDeviceToDevice));
      const size_t before = gs_cuda_bytes_in_use();
      gs_cuda_reset_peak();
      gs_ce_forward_cuda(&args, &err);
      const size_t extra = gs_cuda_peak_bytes() - before;
      const double gbs = 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
      char line[512];
      snprintf(line, sizeof line, "%-4s %5lldx%-6lld %-11s %7.3f %7.3f %7.3f %7.0f %5.2f %7.3f %6.2f %9zu %5.2f  %-5s %s",
               dname(c.d), (long long)c.n, (long long)c.v, name, ms, tk.front(), tk.back(), gbs, copy_ms / ms,
               copy_ms, ms / copy_ms, extra, (double)extra / c.n,
               c.goal_ms > 0 && !strcmp(name, "auto") ? (ms <= c.goal_ms ? "yes" : "NO") : "-", plan.c_str());
      printf("%s\n", line);
      fflush(stdout);
      if (in_table) table.push_back(line);
    };
    for (const Var &var : vars) {
      gs_ce_cuda_tune(var.mode, var.chunk, var.maxk, var.threads, var.cap);
      timed(var.name, a, false, &var - &vars[0] < 2);
    }
    gs_ce_cuda_tune(0, 0, 0, 0, 0);
    gs_ce_args ip = a;
    ip.logits = dg.p;
    timed("in-place", ip, true, true);
    if (phases) {
      // Where the time goes: each line leaves phases out (kernels/cuda/
      // cross_entropy.cu, kSkip*); differences between lines are the
      // phases' costs where they do not overlap.
      gs_ce_args fw = a;
      fw.grad = nullptr;
      timed("-grad", fw, false, true);
      gs_ce_cuda_phases(1);
      timed("-stats", a, false, true);
      timed("-stats-grad", fw, false, true);
      gs_ce_cuda_phases(3);
      timed("load+store", a, false, true);
      gs_ce_cuda_phases(4);
      timed("two-pass", a, false, true);
      gs_ce_cuda_phases(0);
    }
    gs_ce_cuda_tune(0, 0, 0, 0, 0);
    // Accuracy of the timed op's loss against float64 on the same data.
    gs_ce_forward_cuda(&a, &err);
    float loss = 0;
    gs_cuda_memcpy(&loss, dloss.p, 4, 1, &err);
    std::vector<unsigned char> xh(bytes);
    std::vector<int64_t> t(c.n);
    gs_cuda_memcpy(xh.data(), dx.p, bytes, 1, &err);
    gs_cuda_memcpy(t.data(), dt.p, c.n * 8, 1, &err);
    const double ref = ref_mean_loss(xh, c.d, c.n, c.v, t);
    // Gradient rows against float64 too (mean: scaled by 1/D).
    double dcount = 0;
    for (int64_t i = 0; i < c.n; i++) dcount += t[i] != -100;
    double gworst = 0;
    std::vector<unsigned char> gr(c.v * es);
    std::vector<double> gref;
    for (int64_t r : {(int64_t)0, c.n / 2 + 1, c.n - 1}) {
      gs_cuda_memcpy(gr.data(), (char *)dg.p + (size_t)r * c.v * es, c.v * es, 1, &err);
      const bool ign = t[r] == -100;
      ref_row_plain(xh.data() + (size_t)r * c.v * es, c.d, c.v, ign ? -1 : t[r], &gref);
      double num = 0, den = 0;
      for (int64_t j = 0; j < c.v; j++) {
        const double want = ign ? 0.0 : gref[j] / dcount, got = get(gr.data(), c.d, j);
        num += (got - want) * (got - want);
        den += want * want;
      }
      gworst = std::max(gworst, ign ? sqrt(num) : sqrt(num / den));
    }
    char acc[256];
    snprintf(acc, sizeof acc, "%-4s %5lldx%-6lld loss %.9g  f64 %.9g  rel.err %.2e  grad rows rel.err %.2e", dname(c.d),
             (long long)c.n, (long long)c.v, loss, ref, fabs(loss - ref) / fabs(ref), gworst);
    printf("%s\n", acc);
    table.push_back(std::string("  ") + acc);
    if (c.public_ms > 0) {
      snprintf(acc, sizeof acc, "  goal: <= %.2f ms (best public kernel %.2f ms)", c.goal_ms, c.public_ms);
      table.push_back(acc);
    }
  }
  printf("\nfused forward+backward, mean, ~1/7 rows ignored, separate grad buffer; median of %d after 3 warm-up calls\n",
         reps);
  printf("GB/s = 2 x N x V x bytes / time (the logits read once, the gradient written once: the fewest bytes);\n"
         "x_copy = time / time of one device-to-device cudaMemcpy of the logits (1 read + 1 write) in the same run,\n"
         "goal <= 1.25; bw = its inverse, the fraction of the copy's bandwidth achieved; extra = peak device bytes\n"
         "during a call over bytes in use before it (B and B/row). in-place: grad == logits.%s\n",
         phases ? "\nPhases left out (kernels/cuda/cross_entropy.cu, kSkip*): -grad = forward only (no gradient pass);\n"
                  "-stats = no max/sum passes; -stats-grad = load only; load+store = load, zeros stored, no arithmetic;\n"
                  "two-pass = the max and the sums in two passes over the chunk (the kernel before the one-pass stats)"
                : "");
  printf("%-4s %-12s %-11s %7s %7s %7s %7s %5s %7s %6s %9s %5s  %-5s %s\n", "dt", "NxV", "variant", "ms", "min", "max",
         "GB/s", "bw", "copy_ms", "x_copy", "extra_B", "B/row", "goal", "plan");
  for (auto &l : table) printf("%s\n", l.c_str());
  return 0;
}

}  // namespace

int main(int argc, char **argv) {
  bool check = false, big = true, sweep = false, phases = false;
  const char *filter = nullptr;
  int reps = 20;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--check")) check = true;
    else if (!strcmp(argv[i], "--no-big")) big = false;
    else if (!strcmp(argv[i], "--sweep")) sweep = true;
    else if (!strcmp(argv[i], "--phases")) phases = true;
    else if (!strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, atoi(argv[++i]));
    else {
      fprintf(stderr, "usage: %s [--check [--no-big] [--filter TEXT]] [--sweep] [--phases] [--reps N] [--filter TEXT]\n", argv[0]);
      return 2;
    }
  }
  gs_error err = {};
  if (gs_cuda_device_count(&err) == 0) {
    printf("SKIP %s\n", err.msg);
    return 77;
  }
  char desc[256];
  if (gs_cuda_describe(desc, sizeof desc, &err) == GS_OK) printf("device: %s\n", desc);
  return check ? run_check(big, filter) : run_bench(sweep, phases, reps, filter);
}
