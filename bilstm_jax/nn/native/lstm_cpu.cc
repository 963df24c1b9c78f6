// The LSTM recurrence of `bilstm_jax.fused` as two XLA FFI handlers for the CPU.
//
// XLA's CPU runtime runs the thunks of a scan body one after another on one core, and an
// LSTM step at the sizes people train is a few dozen small thunks. Here each (member,
// direction, batch slice) runs its whole recurrence on one thread: rows of the batch, the
// two directions and vmapped members never interact inside a layer, so the threads (the
// caller and XLA's intra-op pool) meet only once per call. The forward step's matmul is
// [x_t | h] @ [w_ih; w_hh]: the input projection is computed inside the recurrence instead
// of being written to memory by XLA and read back every step. The matmul is a
// packed-panel kernel written with GCC vector types (16 lanes with AVX-512, 8 otherwise);
// every gate costs one exp and one division. With the `bf16` attribute the step's matmul
// operands are rounded to bfloat16 (as `BiLSTM(dtype=jnp.bfloat16)` does in XLA) and, where
// the CPU has AVX512-BF16, multiplied in pairs at twice the float32 rate.
//
// Layouts (float32, row-major; T time, B batch, I input features, D directions (1 or 2),
// H hidden, G = 4H, gate order i, f, g, o). "Step order" index s means time s for the
// forward direction and T-1-s for the backward one, as in `bilstm_jax.recurrence`.
// Per-direction buffers come as two operands; with one direction the second is empty
// (leading dimension 0). Both handlers take the attribute `bf16` (round the step's matmul
// operands to bfloat16).
//   lstm_fwd(x [T,B,I], valid pred[T,B], w_ih [D,I,G], bias [D,G], w_hh [D,H,G],
//            h0 [D,B,H], c0 [D,B,H])
//     -> hs [T,B,D*H] the layer's outputs, zero at padded steps;
//        acts0, acts1 [T,B,G] each direction's gate activations;
//        lhs0, lhs1 [I+H+1,T,B] per direction x, the state before each time step and a
//          row of ones, transposed (natural time order): the left operand of the weight
//          gradients' matmul, [x^T; h_prev^T; 1] @ d_gates = [dW_ih; dW_hh; d_bias];
//        c_prev [T,D,B,H] cell state before each step, step order;
//        tc [T,D,B,H] tanh of the new cell state, step order;
//        h_n, c_n [D,B,H].
//   lstm_bwd(acts0, acts1 (aliased to d_gates0, d_gates1), valid, d_hs [T,B,D*H], tc,
//            c_prev, w_hh, d_hn, d_cn)
//     -> d_gates0, d_gates1 [T,B,G] gradients of the gate pre-activations;
//        dh0, dc0 [D,B,H].

#include <algorithm>
#include <atomic>
#include <memory>
#include <new>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

#if defined(__AVX512F__)
constexpr int kLanes = 16;
constexpr int kRows = 8;  // 8 x 2 accumulators of 16 floats: 16 of 32 vector registers
#else
constexpr int kLanes = 8;
constexpr int kRows = 4;  // 4 x 2 accumulators of 8 floats: 8 of 16 vector registers
#endif
constexpr int kCols = 2 * kLanes;

typedef float Vec __attribute__((vector_size(kLanes * sizeof(float))));
typedef float VecU __attribute__((vector_size(kLanes * sizeof(float)), aligned(4)));
typedef int32_t IVec __attribute__((vector_size(kLanes * sizeof(int32_t))));

inline Vec load(const float* p) { return *reinterpret_cast<const VecU*>(p); }
inline void store(float* p, Vec v) { *reinterpret_cast<VecU*>(p) = v; }
// One broadcast instruction (`Vec{} + x` would add 0.0f to x first: -0.0f + 0.0f is +0.0f).
#if defined(__AVX512F__)
inline Vec splat(float x) { return (Vec)_mm512_set1_ps(x); }
#elif defined(__AVX__)
inline Vec splat(float x) { return (Vec)_mm256_set1_ps(x); }
#else
inline Vec splat(float x) { return Vec{} + x; }
#endif

// exp(y), y clamped to [-87, 87]: y = n ln2 + r with |r| <= ln2 / 2, a degree-7 Taylor
// polynomial for exp(r) (relative error below 1e-8 there) and 2^n built in the exponent.
inline Vec exp_vec(Vec y) {
  y = y < -87.0f ? splat(-87.0f) : y;
  y = y > 87.0f ? splat(87.0f) : y;
#if defined(__AVX512F__)
  // n rounded to nearest in one instruction; 2^n applied with scalef below.
  Vec n = (Vec)_mm512_roundscale_ps((__m512)(y * 1.44269504f), _MM_FROUND_TO_NEAREST_INT);
#else
  Vec n = __builtin_convertvector(
      __builtin_convertvector(y * 1.44269504f + (y < 0.0f ? splat(-0.5f) : splat(0.5f)), IVec),
      Vec);
#endif
  Vec r = (y - n * 0.693145752f) - n * 1.42860677e-6f;
  Vec p = splat(1.0f / 5040.0f);
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
#if defined(__AVX512F__)
  return (Vec)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
  IVec bits = (__builtin_convertvector(n, IVec) + 127) << 23;
  Vec scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
#endif
}

// k / (1 + exp(-k x)) + shift: the sigmoid with k = 1, shift = 0, and
// tanh(x) = 2 / (1 + exp(-2x)) - 1 with k = 2, shift = -1. Near 0 the tanh form has an
// absolute error of about one float32 ulp of 1 (1.2e-7), like the sigmoid.
inline Vec logistic(Vec x, Vec k, Vec shift) { return k / (1.0f + exp_vec(-k * x)) + shift; }

int round_up(int n, int to) { return (n + to - 1) / to * to; }

// Working buffers start on a cache line: malloc's 16-byte alignment made vector loads and
// stores straddle lines in some processes and not others (kernel bwd at small 0.81 or
// 1.05-1.12 ms, depending on the run).
template <typename T>
struct LineAligned {
  using value_type = T;
  LineAligned() = default;
  template <typename U>
  LineAligned(const LineAligned<U>&) {}
  T* allocate(size_t n) {
    void* p = ::operator new(n * sizeof(T), std::align_val_t(64));
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t(64)); }
  bool operator==(const LineAligned&) const { return true; }
  bool operator!=(const LineAligned&) const { return false; }
};
template <typename T>
using Buffer = std::vector<T, LineAligned<T>>;

// bfloat16 matmul operands, as XLA computes `dot(a.astype(bf16), b.astype(bf16),
// preferred_element_type=f32)`: each operand rounded to nearest even (NaN stays NaN), the
// products exact in float32, the sums float32. `Bits` is the rounded value's float32 bits.
template <typename Bits>
inline Bits bf16_bits(Bits u) {
  const Bits rounded = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  return (u & 0x7fffffffu) > 0x7f800000u ? Bits{} + 0x7fc00000u : rounded;
}

typedef uint32_t UVec __attribute__((vector_size(kLanes * sizeof(uint32_t))));
typedef uint16_t HVec __attribute__((vector_size(kLanes * sizeof(uint16_t))));

// With AVX512-BF16 the matmul multiplies bfloat16 pairs (twice the float32 rate); without
// it, the same bfloat16-rounded values are multiplied as float32 (the same numbers, slower).
#if defined(__AVX512BF16__)
constexpr bool kPairs = true;
#else
constexpr bool kPairs = false;
#endif

// c[R rows, kCols] += a[R rows, k] @ panel[k, kCols]; a and c with row strides lda, ldc.
// float32 operands: the panel is [k, kCols]. bfloat16 (uint16_t) operands: the panel is
// [k / 2, kCols, 2] (k even), each k pair of a column side by side, as vdpbf16ps reads it.
template <int R, typename T>
inline void micro(const T* a, int lda, const T* panel, int k, float* c, int ldc) {
  Vec acc[R][2];
  for (int r = 0; r < R; ++r) {
    acc[r][0] = load(c + r * ldc);
    acc[r][1] = load(c + r * ldc + kLanes);
  }
  if constexpr (std::is_same_v<T, float>) {
    for (int kk = 0; kk < k; ++kk) {
      Vec w0 = load(panel + kk * kCols);
      Vec w1 = load(panel + kk * kCols + kLanes);
      for (int r = 0; r < R; ++r) {
        Vec x = splat(a[r * lda + kk]);
        acc[r][0] += x * w0;
        acc[r][1] += x * w1;
      }
    }
  } else {
#if defined(__AVX512BF16__)
    for (int kk = 0; kk < k; kk += 2) {
      __m512bh w0 = (__m512bh)_mm512_loadu_si512(panel + kk * kCols);
      __m512bh w1 = (__m512bh)_mm512_loadu_si512(panel + kk * kCols + kCols);
      for (int r = 0; r < R; ++r) {
        int32_t pair;
        std::memcpy(&pair, a + r * lda + kk, sizeof(pair));
        __m512bh x = (__m512bh)_mm512_set1_epi32(pair);
        acc[r][0] = (Vec)_mm512_dpbf16_ps((__m512)acc[r][0], x, w0);
        acc[r][1] = (Vec)_mm512_dpbf16_ps((__m512)acc[r][1], x, w1);
      }
    }
#endif
  }
  for (int r = 0; r < R; ++r) {
    store(c + r * ldc, acc[r][0]);
    store(c + r * ldc + kLanes, acc[r][1]);
  }
}

template <int R, typename T>
void micro_tail(const T* a, int lda, const T* panel, int k, float* c, int ldc, int rows) {
  if constexpr (R > 0) {
    if (rows == R) return micro<R>(a, lda, panel, k, c, ldc);
    micro_tail<R - 1>(a, lda, panel, k, c, ldc, rows);
  }
}

template <typename T>
void matmul_acc(const T* a, int m, int k, int lda, const T* packed, float* c, int ldc) {
  int panels = ldc / kCols;
  for (int p = 0; p < panels; ++p) {
    const T* panel = packed + static_cast<size_t>(p) * k * kCols;
    int r = 0;
    for (; r + kRows <= m; r += kRows)
      micro<kRows>(a + r * lda, lda, panel, k, c + r * ldc + p * kCols, ldc);
    if (r < m)
      micro_tail<kRows - 1>(a + r * lda, lda, panel, k, c + r * ldc + p * kCols, ldc, m - r);
  }
}

// A direction's step weight, packed for the step's matmul c += a @ w, in float32 or
// bfloat16 operands. w is [k, n], given by value(kk, col). It is packed as panels of kCols
// columns, zero-padded, so the inner loop reads it contiguously; `col_to` places column j
// at packed column col_to(j) (the forward pads each gate to a whole number of vectors) and
// `width` is the packed width before rounding up to whole panels.
class Recurrent {
 public:
  template <typename Value, typename ColTo>
  Recurrent(Value value, int k, int n, int width, ColTo col_to, bool bf16)
      : k_(k), kp_(bf16 && kPairs ? round_up(k, 2) : k), bf16_(bf16) {
    const int panels = (width + kCols - 1) / kCols;
    const size_t size = static_cast<size_t>(panels) * kp_ * kCols;
    if (bf16_ && kPairs)
      pairs_.assign(size, 0);
    else
      f32_.assign(size, 0.0f);
    for (int kk = 0; kk < k; ++kk)
      for (int col = 0; col < n; ++col) {
        const float v = value(kk, col);
        const int to = col_to(col), p = to / kCols, j = to % kCols;
        const size_t at = static_cast<size_t>(p) * kp_ * kCols;
        if (bf16_ && kPairs)
          pairs_[at + (kk / 2 * kCols + j) * 2 + kk % 2] = bf16_bits(bits(v)) >> 16;
        else
          f32_[at + static_cast<size_t>(kk) * kCols + j] = bf16_ ? from_bits(bf16_bits(bits(v))) : v;
      }
  }

  // c[m, padded n] += a[m, k] @ w (a's row stride lda); c's row stride is a multiple of kCols.
  void acc(const float* a, int m, int lda, float* c, int ldc) {
    if (!bf16_) return matmul_acc(a, m, k_, lda, f32_.data(), c, ldc);
    if (kPairs) return rounded_acc(a, m, lda, a16_, pairs_.data(), c, ldc);
    rounded_acc(a, m, lda, a32_, f32_.data(), c, ldc);
  }

 private:
  static uint32_t bits(float v) {
    uint32_t u;
    std::memcpy(&u, &v, sizeof(u));
    return u;
  }
  static float from_bits(uint32_t u) {
    float v;
    std::memcpy(&v, &u, sizeof(v));
    return v;
  }
  // a rounded to bfloat16 once per step into `rows` (rows of kp_; a pad column, k odd,
  // stays zero from the first resize, as round_row writes only the first k_ values of a
  // row), then multiplied by the packed weight in the same representation.
  template <typename T>
  void rounded_acc(const float* a, int m, int lda, Buffer<T>& rows, const T* packed, float* c,
                   int ldc) {
    rows.resize(static_cast<size_t>(m) * kp_);
    for (int r = 0; r < m; ++r) round_row(a + static_cast<size_t>(r) * lda, rows.data() + r * kp_);
    matmul_acc(rows.data(), m, kp_, kp_, packed, c, ldc);
  }

  // One row of k values rounded to bfloat16: as uint16_t, or as float32 values.
  template <typename T>
  void round_row(const float* src, T* dst) const {
    int j = 0;
    for (; j + kLanes <= k_; j += kLanes) {
      UVec u;
      Vec v = load(src + j);
      std::memcpy(&u, &v, sizeof(u));
      u = bf16_bits(u);
      if constexpr (std::is_same_v<T, float>) {
        std::memcpy(dst + j, &u, sizeof(u));
      } else {
        HVec h = __builtin_convertvector(u >> 16, HVec);
        std::memcpy(dst + j, &h, sizeof(h));
      }
    }
    for (; j < k_; ++j) {
      if constexpr (std::is_same_v<T, float>)
        dst[j] = from_bits(bf16_bits(bits(src[j])));
      else
        dst[j] = bf16_bits(bits(src[j])) >> 16;
    }
  }

  int k_, kp_;
  bool bf16_;
  Buffer<float> f32_, a32_;
  Buffer<uint16_t> pairs_, a16_;
};

// dst[0:n] = src[0:n] for the per-step results, which are read again only after the whole
// recurrence (by the backward or by XLA), long after they would have left the caches:
// streaming stores when dst is vector-aligned skip reading each line in before writing it.
// Callers finish with `fence()` before another thread may read the results.
inline void copy_out(float* dst, const float* src, int n) {
#if defined(__AVX512F__) || defined(__AVX__)
  if (reinterpret_cast<uintptr_t>(dst) % (kLanes * sizeof(float)) == 0) {
    int j = 0;
    for (; j + kLanes <= n; j += kLanes)
#if defined(__AVX512F__)
      _mm512_stream_ps(dst + j, (__m512)load(src + j));
#else
      _mm256_stream_ps(dst + j, (__m256)load(src + j));
#endif
    std::memcpy(dst + j, src + j, (n - j) * sizeof(float));
    return;
  }
#endif
  std::memcpy(dst, src, n * sizeof(float));
}

#if defined(__AVX512F__)
// out[j] = column j of the 16 x 16 tile in[0..15] (rows), for j < 16.
inline void transpose16(const __m512 in[16], __m512 out[16]) {
  __m512 b[16], c[16];
  for (int i = 0; i < 16; i += 2) {  // within 128-bit lanes: pairs of rows interleaved
    b[i] = _mm512_unpacklo_ps(in[i], in[i + 1]);
    b[i + 1] = _mm512_unpackhi_ps(in[i], in[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {  // lane L of c[i + k]: column 4L + k of rows i..i+3
    c[i] = (__m512)_mm512_unpacklo_pd((__m512d)b[i], (__m512d)b[i + 2]);
    c[i + 1] = (__m512)_mm512_unpackhi_pd((__m512d)b[i], (__m512d)b[i + 2]);
    c[i + 2] = (__m512)_mm512_unpacklo_pd((__m512d)b[i + 1], (__m512d)b[i + 3]);
    c[i + 3] = (__m512)_mm512_unpackhi_pd((__m512d)b[i + 1], (__m512d)b[i + 3]);
  }
  for (int k = 0; k < 4; ++k) {  // 4 x 4 transpose of 128-bit lanes
    const __m512 d0 = _mm512_shuffle_f32x4(c[k], c[4 + k], 0x44);
    const __m512 d1 = _mm512_shuffle_f32x4(c[k], c[4 + k], 0xEE);
    const __m512 d2 = _mm512_shuffle_f32x4(c[8 + k], c[12 + k], 0x44);
    const __m512 d3 = _mm512_shuffle_f32x4(c[8 + k], c[12 + k], 0xEE);
    out[k] = _mm512_shuffle_f32x4(d0, d2, 0x88);
    out[4 + k] = _mm512_shuffle_f32x4(d0, d2, 0xDD);
    out[8 + k] = _mm512_shuffle_f32x4(d1, d3, 0x88);
    out[12 + k] = _mm512_shuffle_f32x4(d1, d3, 0xDD);
  }
}
#endif

// dst[j * ld_dst + r] = src[r * ld_src + j] for r < rows, j < cols: rows written as
// columns. With AVX-512, 16 x 16 tiles are transposed in registers and stored streaming
// (the destination is read again only after the whole recurrence); src rows must then be
// readable up to the next multiple of 16 columns.
inline void transpose_out(float* dst, size_t ld_dst, const float* src, int ld_src, int rows,
                          int cols) {
  int r0 = 0;
#if defined(__AVX512F__)
  const bool aligned = reinterpret_cast<uintptr_t>(dst) % 64 == 0 && ld_dst % 16 == 0;
  for (; r0 + kLanes <= rows; r0 += kLanes)
    for (int c0 = 0; c0 < cols; c0 += kLanes) {
      __m512 in[16], out[16];
      for (int i = 0; i < 16; ++i)
        in[i] = _mm512_loadu_ps(src + static_cast<size_t>(r0 + i) * ld_src + c0);
      transpose16(in, out);
      for (int j = 0; j < std::min(kLanes, cols - c0); ++j) {
        float* to = dst + (c0 + j) * ld_dst + r0;
        if (aligned)
          _mm512_stream_ps(to, out[j]);
        else
          _mm512_storeu_ps(to, out[j]);
      }
    }
#endif
  for (int j = 0; j < cols; ++j)
    for (int r = r0; r < rows; ++r) dst[j * ld_dst + r] = src[static_cast<size_t>(r) * ld_src + j];
}

inline void fence() {
#if defined(__AVX512F__) || defined(__AVX__)
  _mm_sfence();
#endif
}

// One thread's share: member e (of a vmapped ensemble; 0 otherwise), direction d, batch
// rows [b0, b1).
struct Slice {
  int e, d, b0, b1;
};

// Splits (direction, batch) into at most `threads` slices; a direction's rows are split
// only when there are more threads than directions.
std::vector<Slice> slices(int members, int dirs, int batch) {
  const int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int per_dir = std::max(1, threads / (members * dirs));
  int chunk = round_up((batch + per_dir - 1) / per_dir, std::max(1, std::min(kRows, batch)));
  std::vector<Slice> out;
  for (int e = 0; e < members; ++e)
    for (int d = 0; d < dirs; ++d)
      for (int b = 0; b < batch; b += chunk) out.push_back({e, d, b, std::min(batch, b + chunk)});
  return out;
}

// Below this many matmul flops of work per helper (about 50 us on one core), handing slices
// to the pool costs more than it saves: at the seed size (0.16 MFLOP a call) a helper made
// fwd+bwd 0.11 or 0.18 ms depending on the process, against 0.09-0.10 on the caller alone.
constexpr double kFlopsPerHelper = 4e6;

// Runs fn on every slice: on the calling thread and on XLA's intra-op thread pool (the
// threads that would otherwise spin idle beside us). Every participant takes the next
// unclaimed slice, so the caller finishes the work alone if the pool never gets to it; a
// late pool task finds nothing left and touches only the shared counters. `flops` is the
// call's matmul work, which caps the number of helpers.
template <typename Fn>
void run_slices(ffi::ThreadPool& pool, const std::vector<Slice>& work, double flops, Fn& fn) {
  struct State {
    size_t n;
    std::atomic<size_t> next{0}, done{0};
  };
  if (work.empty()) return;
  auto state = std::make_shared<State>();
  state->n = work.size();
  auto worker = [state, &work, &fn] {
    for (size_t i; (i = state->next.fetch_add(1)) < state->n;) {
      fn(work[i]);
      state->done.fetch_add(1, std::memory_order_release);
    }
  };
  const int64_t helpers = std::min<int64_t>(
      {pool.num_threads(), static_cast<int64_t>(work.size()) - 1,
       static_cast<int64_t>(flops / kFlopsPerHelper)});
  for (int64_t i = 0; i < helpers; ++i)
    pool.Schedule([state, worker] {
      if (state->next.load() < state->n) worker();
    });
  worker();
  while (state->done.load(std::memory_order_acquire) < state->n) std::this_thread::yield();
}

// E counts the members of a vmapped call (`vmap_method='broadcast_all'` gives every operand
// the same leading batch dimensions); each member's operands follow one another.
struct Dims {
  int64_t E, T, B, D, H;
};

Dims dims_of(const ffi::Buffer<ffi::F32>& w_hh, const ffi::Buffer<ffi::PRED>& valid) {
  auto w = w_hh.dimensions();
  auto v = valid.dimensions();
  const size_t vr = v.size(), wr = w.size();
  const int64_t T = v[vr - 2], B = v[vr - 1];
  int64_t E = 1;
  for (size_t i = 0; i + 2 < vr; ++i) E *= v[i];
  return {E, T, B, w[wr - 3], w[wr - 2]};
}

// Runs a handler's body on every slice of a call whose step matmul is [rows, k] @ [k, 4H]
// (forward) or [rows, 4H] @ [4H, H] (backward, k = H): 8 H k flops per member, direction,
// time step and batch row.
template <typename Fn>
void run_call(ffi::ThreadPool& pool, const Dims& z, int k, Fn& body) {
  run_slices(pool, slices(z.E, z.D, z.B), 8.0 * z.E * z.D * z.T * z.B * z.H * k, body);
}

// Member e's part of a buffer whose members each hold `per_member` floats (or bools).
template <typename T>
T* member(T* base, int e, size_t per_member) {
  return base + static_cast<size_t>(e) * per_member;
}

}  // namespace

static ffi::Error LstmFwdImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x,
                              ffi::Buffer<ffi::PRED> valid, ffi::Buffer<ffi::F32> w_ih,
                              ffi::Buffer<ffi::F32> bias, ffi::Buffer<ffi::F32> w_hh,
                              ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> c0,
                              ffi::ResultBuffer<ffi::F32> hs, ffi::ResultBuffer<ffi::F32> acts0,
                              ffi::ResultBuffer<ffi::F32> acts1, ffi::ResultBuffer<ffi::F32> lhs0,
                              ffi::ResultBuffer<ffi::F32> lhs1, ffi::ResultBuffer<ffi::F32> c_prev,
                              ffi::ResultBuffer<ffi::F32> tc, ffi::ResultBuffer<ffi::F32> h_n,
                              ffi::ResultBuffer<ffi::F32> c_n, bool bf16) {
  const Dims z = dims_of(w_hh, valid);
  const int T = z.T, B = z.B, D = z.D, H = z.H, G = 4 * H;
  const int I = static_cast<int>(x.dimensions().back());
  const size_t TB = static_cast<size_t>(T) * B, DBH = static_cast<size_t>(D) * B * H;
  const size_t L = static_cast<size_t>(I + H + 1) * TB;  // one direction's lhs

  // Inside, each gate is padded to Hq (a whole number of vectors): [i | f | g | o] rows of
  // width Gp >= 4 Hq. Padded lanes hold bounded garbage that is never copied out.
  const int Hq = round_up(H, kLanes), Gp = round_up(4 * Hq, kCols);
  auto padded = [H, Hq](int col) { return col / H * Hq + col % H; };
  // The step's matmul operand is a row [x_t (I) | zeros (to Ip) | h (Hq)] per batch row,
  // against [w_ih; zeros; w_hh]: the input projection and the recurrent product in one.
  const int Ip = round_up(I, kLanes), ldx = Ip + Hq;
  // logistic() constants per lane: tanh on the cell gate g, sigmoid on i, f, o.
  Buffer<float> kk(Gp, 1.0f), shift(Gp, 0.0f);
  for (int j = 2 * Hq; j < 3 * Hq; ++j) kk[j] = 2.0f, shift[j] = -1.0f;

  auto body = [&](Slice sl) {
    const int e = sl.e, d = sl.d, rows = sl.b1 - sl.b0;
    const float* xs = member(x.typed_data(), e, TB * I);
    float* const acts[2] = {member(acts0->typed_data(), e, TB * G),
                            member(acts1->typed_data(), e, D == 2 ? TB * G : 0)};
    float* out = member(hs->typed_data(), e, TB * D * H);
    const bool* ok = member(valid.typed_data(), e, TB);
    float* const lhs = d ? member(lhs1->typed_data(), e, L) : member(lhs0->typed_data(), e, L);
    float* cp_out = member(c_prev->typed_data(), e, TB * D * H);
    float* tc_out = member(tc->typed_data(), e, TB * D * H);
    const float* wi = member(w_ih.typed_data(), e, static_cast<size_t>(D) * I * G) +
                      static_cast<size_t>(d) * I * G;
    const float* wh = member(w_hh.typed_data(), e, static_cast<size_t>(D) * H * G) +
                      static_cast<size_t>(d) * H * G;
    auto weight = [=](int k, int col) {
      if (k < I) return wi[static_cast<size_t>(k) * G + col];
      return k < Ip ? 0.0f : wh[static_cast<size_t>(k - Ip) * G + col];
    };
    Recurrent w_rec(weight, Ip + H, G, 4 * Hq, padded, bf16);
    Buffer<float> xh(static_cast<size_t>(rows) * ldx, 0.0f), c(static_cast<size_t>(rows) * Hq);
    Buffer<float> tcv(c.size()), gates(static_cast<size_t>(rows) * Gp, 0.0f), b(Gp, 0.0f);
    const float* bd = member(bias.typed_data(), e, static_cast<size_t>(D) * G) + d * G;
    for (int j = 0; j < G; ++j) b[padded(j)] = bd[j];
    const size_t state0 = e * DBH + (static_cast<size_t>(d) * B + sl.b0) * H;
    for (int r = 0; r < rows; ++r) {
      std::memcpy(xh.data() + r * ldx + Ip, h0.typed_data() + state0 + r * H, H * sizeof(float));
      std::memcpy(c.data() + r * Hq, c0.typed_data() + state0 + r * H, H * sizeof(float));
    }
    for (int s = 0; s < T; ++s) {
      const int t = d ? T - 1 - s : s;
      const size_t tb = static_cast<size_t>(t) * B + sl.b0;  // (time, first row) of the slice
      const size_t srow = ((static_cast<size_t>(s) * D + d) * B + sl.b0) * H;
      float* orow = out + tb * D * H + d * H;
      for (int r = 0; r < rows; ++r) {
        std::memcpy(xh.data() + r * ldx, xs + (tb + r) * I, I * sizeof(float));
        std::memcpy(gates.data() + r * Gp, b.data(), Gp * sizeof(float));
        copy_out(cp_out + srow + r * H, c.data() + r * Hq, H);
      }
      // The weight gradients' left operand: x and h before the step, transposed, and ones.
      transpose_out(lhs + tb, TB, xh.data(), ldx, rows, I);
      transpose_out(lhs + I * TB + tb, TB, xh.data() + Ip, ldx, rows, H);
      std::fill(lhs + (I + H) * TB + tb, lhs + (I + H) * TB + tb + rows, 1.0f);
      w_rec.acc(xh.data(), rows, ldx, gates.data(), Gp);
      for (int r = 0; r < rows; ++r) {
        float* g = gates.data() + r * Gp;
        for (int j = 0; j < Gp; j += kLanes)
          store(g + j, logistic(load(g + j), load(kk.data() + j), load(shift.data() + j)));
        float* a = acts[d] + (tb + r) * G;
        for (int q = 0; q < 4; ++q) copy_out(a + q * H, g + q * Hq, H);
        const bool m = ok[tb + r];
        float* cr = c.data() + r * Hq;
        float* hr = xh.data() + r * ldx + Ip;
        float* tr = tcv.data() + r * Hq;
        for (int j = 0; j < Hq; j += kLanes) {
          Vec c_new = load(g + Hq + j) * load(cr + j) + load(g + j) * load(g + 2 * Hq + j);
          Vec tanh_c = logistic(c_new, splat(2.0f), splat(-1.0f));
          store(tr + j, tanh_c);
          if (m) {
            store(cr + j, c_new);
            store(hr + j, load(g + 3 * Hq + j) * tanh_c);
          }
        }
        copy_out(tc_out + srow + r * H, tr, H);
        float* o = orow + static_cast<size_t>(r) * D * H;
        if (m)
          copy_out(o, hr, H);
        else
          std::fill(o, o + H, 0.0f);
      }
    }
    for (int r = 0; r < rows; ++r) {
      std::memcpy(h_n->typed_data() + state0 + r * H, xh.data() + r * ldx + Ip, H * sizeof(float));
      std::memcpy(c_n->typed_data() + state0 + r * H, c.data() + r * Hq, H * sizeof(float));
    }
    fence();
  };
  run_call(pool, z, Ip + H, body);
  return ffi::Error::Success();
}

static ffi::Error LstmBwdImpl(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> acts0,
                              ffi::Buffer<ffi::F32> acts1, ffi::Buffer<ffi::PRED> valid,
                              ffi::Buffer<ffi::F32> d_hs, ffi::Buffer<ffi::F32> tc,
                              ffi::Buffer<ffi::F32> c_prev, ffi::Buffer<ffi::F32> w_hh,
                              ffi::Buffer<ffi::F32> d_hn, ffi::Buffer<ffi::F32> d_cn,
                              ffi::ResultBuffer<ffi::F32> d_gates0,
                              ffi::ResultBuffer<ffi::F32> d_gates1, ffi::ResultBuffer<ffi::F32> dh0,
                              ffi::ResultBuffer<ffi::F32> dc0, bool bf16) {
  const Dims z = dims_of(w_hh, valid);
  const int T = z.T, B = z.B, D = z.D, H = z.H, G = 4 * H, Hp = round_up(H, kCols);
  const size_t TB = static_cast<size_t>(T) * B, DBH = static_cast<size_t>(D) * B * H;

  auto body = [&](Slice sl) {
    const int e = sl.e, d = sl.d, rows = sl.b1 - sl.b0;
    const float* const acts[2] = {member(acts0.typed_data(), e, TB * G),
                                  member(acts1.typed_data(), e, D == 2 ? TB * G : 0)};
    float* const outs[2] = {member(d_gates0->typed_data(), e, TB * G),
                            member(d_gates1->typed_data(), e, D == 2 ? TB * G : 0)};
    const bool* ok = member(valid.typed_data(), e, TB);
    const float* tc_in = member(tc.typed_data(), e, TB * D * H);
    const float* cp_in = member(c_prev.typed_data(), e, TB * D * H);
    const float* dhs_in = member(d_hs.typed_data(), e, TB * D * H);
    const float* w = member(w_hh.typed_data(), e, static_cast<size_t>(D) * H * G);
    // The recurrent gradient is d_gates [rows, G] @ w_hh[d]^T [G, H].
    const float* wd = w + static_cast<size_t>(d) * H * G;
    Recurrent w_rec([=](int k, int col) { return wd[static_cast<size_t>(col) * G + k]; }, G, H, H,
                    [](int j) { return j; }, bf16);
    Buffer<float> dh(static_cast<size_t>(rows) * H), dc(dh.size());
    Buffer<float> dh_rec(static_cast<size_t>(rows) * Hp);
    const size_t state0 = e * DBH + (static_cast<size_t>(d) * B + sl.b0) * H;
    std::memcpy(dh.data(), d_hn.typed_data() + state0, dh.size() * sizeof(float));
    std::memcpy(dc.data(), d_cn.typed_data() + state0, dc.size() * sizeof(float));
    for (int s = T - 1; s >= 0; --s) {
      const int t = d ? T - 1 - s : s;
      const size_t grow = (static_cast<size_t>(t) * B + sl.b0) * G;
      const size_t srow = ((static_cast<size_t>(s) * D + d) * B + sl.b0) * H;
      std::fill(dh_rec.begin(), dh_rec.end(), 0.0f);
      for (int r = 0; r < rows; ++r) {
        const bool m = ok[static_cast<size_t>(t) * B + sl.b0 + r];
        // The gate gradients overwrite the activations in place (d_gates aliases acts):
        // each position is written only after it has been read.
        const float* a = acts[d] + grow + r * G;
        const float* __restrict__ tcr = tc_in + srow + r * H;
        const float* __restrict__ cp = cp_in + srow + r * H;
        const float* __restrict__ dout = dhs_in + (static_cast<size_t>(t) * B + sl.b0 + r) * D * H + d * H;
        float* dgr = outs[d] + grow + r * G;
        float* __restrict__ dhr = dh.data() + r * H;
        float* __restrict__ dcr = dc.data() + r * H;
        if (!m) {  // a padded step: zero gate gradients, dh and dc carried unchanged
          std::fill(dgr, dgr + G, 0.0f);
          continue;
        }
        // Vectors, then a scalar tail (GCC leaves this loop scalar if written plainly).
        auto grads = [&](int j, auto ld, auto st) {
          const auto i = ld(a + j), f = ld(a + H + j), g = ld(a + 2 * H + j), o = ld(a + 3 * H + j);
          const auto tcj = ld(tcr + j);
          const auto dh_new = ld(dhr + j) + ld(dout + j);
          const auto dc_new = ld(dcr + j) + dh_new * o * (1.0f - tcj * tcj);
          st(dgr + j, dc_new * g * (i * (1.0f - i)));
          st(dgr + H + j, dc_new * ld(cp + j) * (f * (1.0f - f)));
          st(dgr + 2 * H + j, dc_new * i * (1.0f - g * g));
          st(dgr + 3 * H + j, dh_new * tcj * (o * (1.0f - o)));
          st(dcr + j, dc_new * f);
        };
        int j = 0;
        for (; j + kLanes <= H; j += kLanes)
          grads(j, [](const float* p) { return load(p); }, [](float* p, Vec v) { store(p, v); });
        for (; j < H; ++j)
          grads(j, [](const float* p) { return *p; }, [](float* p, float v) { *p = v; });
      }
      w_rec.acc(outs[d] + grow, rows, G, dh_rec.data(), Hp);
      for (int r = 0; r < rows; ++r)
        if (ok[static_cast<size_t>(t) * B + sl.b0 + r])
          std::memcpy(dh.data() + r * H, dh_rec.data() + r * Hp, H * sizeof(float));
    }
    std::memcpy(dh0->typed_data() + state0, dh.data(), dh.size() * sizeof(float));
    std::memcpy(dc0->typed_data() + state0, dc.data(), dc.size() * sizeof(float));
  };
  run_call(pool, z, H, body);
  return ffi::Error::Success();
}

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmFwd, LstmFwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("bf16"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmBwd, LstmBwdImpl,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<bool>("bf16"));
