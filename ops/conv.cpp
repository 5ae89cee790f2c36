// Conv family, NCHW. conv2d is im2col into a scratch buffer + one GEMM per image; its backward redoes
// the im2col (cheaper than keeping N column buffers alive on the tape) for dW, and scatters the column
// gradient back with col2im for dx. max_pool2d keeps each window's argmax in the arena for backward.
#include "tapegrad/ops/conv.hpp"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "tapegrad/autograd/op.hpp"
#include "tapegrad/ops/blas.hpp"
#include "tapegrad/ops/kernels.hpp"

namespace tapegrad {

TAPEGRAD_OP(op_conv2d, "conv2d", "conv");
TAPEGRAD_OP(op_max_pool2d, "max_pool2d", "conv");

namespace {

using blas::gemm;

// The geometry of one conv2d.
struct Geometry {
  std::size_t n, c, h, w, f, kh, kw, stride, pad, oh, ow;
  std::size_t ckk() const { return c * kh * kw; }
  std::size_t ohw() const { return oh * ow; }
};

// Stride and padding are the op's attributes; everything else is read back from the input and output shapes.
struct ConvAttrs {
  std::size_t stride, pad;
};

Geometry load(const BackwardCtx& c) {
  const Shape &x = c.in_shape(0), &w = c.in_shape(1), &y = c.out_shape();
  Geometry g{x[0], x[1], x[2], x[3], w[0], w[2], w[3], c.attrs<ConvAttrs>().stride, c.attrs<ConvAttrs>().pad, y[2], y[3]};
  return g;
}

// col (C*KH*KW, OH*OW) from one image x (C, H, W); zero outside the padded border.
template <class T> void im2col(const Geometry& g, const T* x, T* col) {
  for (std::size_t ch = 0; ch < g.c; ++ch)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        T* row = col + ((ch * g.kh + i) * g.kw + j) * g.ohw();
        for (std::size_t oy = 0; oy < g.oh; ++oy) {
          const std::ptrdiff_t iy = std::ptrdiff_t(oy * g.stride + i) - std::ptrdiff_t(g.pad);
          T* r = row + oy * g.ow;
          if (iy < 0 || iy >= std::ptrdiff_t(g.h)) {
            std::fill_n(r, g.ow, T(0));
            continue;
          }
          const T* xr = x + (ch * g.h + std::size_t(iy)) * g.w;
          for (std::size_t ox = 0; ox < g.ow; ++ox) {
            const std::ptrdiff_t ix = std::ptrdiff_t(ox * g.stride + j) - std::ptrdiff_t(g.pad);
            r[ox] = (ix < 0 || ix >= std::ptrdiff_t(g.w)) ? T(0) : xr[ix];
          }
        }
      }
}

// The adjoint of im2col: dx (C, H, W) += the column gradient scattered back (padding dropped).
template <class T> void col2im(const Geometry& g, const T* col, T* dx) {
  for (std::size_t ch = 0; ch < g.c; ++ch)
    for (std::size_t i = 0; i < g.kh; ++i)
      for (std::size_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((ch * g.kh + i) * g.kw + j) * g.ohw();
        for (std::size_t oy = 0; oy < g.oh; ++oy) {
          const std::ptrdiff_t iy = std::ptrdiff_t(oy * g.stride + i) - std::ptrdiff_t(g.pad);
          if (iy < 0 || iy >= std::ptrdiff_t(g.h)) continue;
          const T* r = row + oy * g.ow;
          T* xr = dx + (ch * g.h + std::size_t(iy)) * g.w;
          for (std::size_t ox = 0; ox < g.ow; ++ox) {
            const std::ptrdiff_t ix = std::ptrdiff_t(ox * g.stride + j) - std::ptrdiff_t(g.pad);
            if (ix >= 0 && ix < std::ptrdiff_t(g.w)) xr[ix] += r[ox];
          }
        }
      }
}

std::string shapes_of(const Tensor& x, const Tensor& w, const Tensor& b) {
  return "x " + x.shape().str() + ", w " + w.shape().str() + (b.defined() ? ", b " + b.shape().str() : std::string());
}

}  // namespace

// y[n] = W col(x[n]) + b.  dW += dy[n] col(x[n])^T,  dx[n] += col2im(W^T dy[n]),  db += sum over n, pixels of dy.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b, std::size_t stride, std::size_t padding) {
  if (!x.defined() || !w.defined()) throw Error(std::string("conv2d: ") + (x.defined() ? "w" : "x") + " is undefined");
  auto fail = [&](const std::string& why) { throw Error("conv2d: " + why + " (" + shapes_of(x, w, b) + ")"); };
  const Shape sx = x.shape(), sw = w.shape();
  if (sx.rank() != 4) fail("x must be (N, C, H, W), got rank " + std::to_string(sx.rank()));
  if (sw.rank() != 4) fail("w must be (F, C, KH, KW), got rank " + std::to_string(sw.rank()));
  if (sw[1] != sx[1]) fail("x has " + std::to_string(sx[1]) + " channels but w expects " + std::to_string(sw[1]));
  if (b.defined() && !(b.rank() == 1 && b.shape()[0] == sw[0]))
    fail("b must be (" + std::to_string(sw[0]) + ",), one bias per filter");
  if (stride == 0) fail("stride must be at least 1");
  if (sw[2] == 0 || sw[3] == 0) fail("the kernel is empty");
  // The padded sizes must not wrap: padding is bounded by the largest tensor size, then H + 2 padding fits.
  if (padding > Shape::max_numel) fail("padding " + std::to_string(padding) + " is larger than any tensor");
  if (sw[2] > sx[2] + 2 * padding || sw[3] > sx[3] + 2 * padding)
    fail("kernel " + std::to_string(sw[2]) + "x" + std::to_string(sw[3]) + " is larger than the padded input " +
         std::to_string(sx[2] + 2 * padding) + "x" + std::to_string(sx[3] + 2 * padding) + " (padding " +
         std::to_string(padding) + ")");
  const Geometry g{sx[0], sx[1], sx[2], sx[3], sw[0], sw[2], sw[3], stride, padding,
                   (sx[2] + 2 * padding - sw[2]) / stride + 1, (sx[3] + 2 * padding - sw[3]) / stride + 1};
  if (g.ckk() > std::size_t(INT_MAX) || g.ohw() > std::size_t(INT_MAX) || g.f > std::size_t(INT_MAX))
    fail("the im2col matrix exceeds the BLAS int range");
  Shape{g.n, g.f, g.oh, g.ow}.checked_numel("conv2d");

  OpCall call = b.defined() ? OpCall(op_conv2d, {&x, &w, &b}) : OpCall(op_conv2d, {&x, &w});
  call.attrs<ConvAttrs>() = {g.stride, g.pad};
  Tensor y = call.output(Shape{g.n, g.f, g.oh, g.ow});
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x.raw_data());
    const T* pw = static_cast<const T*>(w.raw_data());
    const T* pb = b.defined() ? static_cast<const T*>(b.raw_data()) : nullptr;
    T* py = y.data<T>();
    std::vector<T> col(g.ckk() * g.ohw());
    for (std::size_t img = 0; img < g.n; ++img) {
      T* yi = py + img * g.f * g.ohw();
      if (pb)
        for (std::size_t f = 0; f < g.f; ++f) std::fill_n(yi + f * g.ohw(), g.ohw(), pb[f]);
      if (g.ckk() == 0) {  // no channels: only the bias
        if (!pb) std::fill_n(yi, g.f * g.ohw(), T(0));
        continue;
      }
      im2col(g, px + img * g.c * g.h * g.w, col.data());
      gemm(CblasNoTrans, CblasNoTrans, g.f, g.ohw(), g.ckk(), pw, g.ckk(), col.data(), g.ohw(), pb ? T(1) : T(0), yi, g.ohw());
    }
  });
  call.record([](BackwardCtx& c) {
    const Geometry g = load(c);
    dispatch(c.dtype(), [&](auto z) {
      using T = decltype(z);
      const T *gy = c.gout<T>(), *px = c.in<T>(0), *pw = c.in<T>(1);
      if (c.num_inputs() == 3 && c.needs(2)) {
        T* db = c.grad<T>(2);
        for (std::size_t img = 0; img < g.n; ++img)
          for (std::size_t f = 0; f < g.f; ++f) {
            const T* r = gy + (img * g.f + f) * g.ohw();
            T acc = 0;
            for (std::size_t p = 0; p < g.ohw(); ++p) acc += r[p];
            db[f] += acc;
          }
      }
      if (g.ckk() == 0 || g.f == 0) return;
      const bool need_x = c.needs(0), need_w = c.needs(1);
      if (!need_x && !need_w) return;
      T* col = c.scratch<T>(g.ckk() * g.ohw());
      T* dw = need_w ? c.grad<T>(1) : nullptr;
      T* dx = need_x ? c.grad<T>(0) : nullptr;
      for (std::size_t img = 0; img < g.n; ++img) {
        const T* gi = gy + img * g.f * g.ohw();
        if (need_w) {
          im2col(g, px + img * g.c * g.h * g.w, col);
          gemm(CblasNoTrans, CblasTrans, g.f, g.ckk(), g.ohw(), gi, g.ohw(), col, g.ohw(), T(1), dw, g.ckk());
        }
        if (need_x) {
          gemm(CblasTrans, CblasNoTrans, g.ckk(), g.ohw(), g.f, pw, g.ckk(), gi, g.ohw(), T(0), col, g.ohw());
          col2im(g, col, dx + img * g.c * g.h * g.w);
        }
      }
    });
  });
  return y;
}

namespace {
struct PoolAttrs {
  std::uint32_t* argmax;  // of each output, as an offset within its (H, W) plane
};
}  // namespace

// y = max over each window; dx[argmax] += dy (the first maximum of the window; a NaN propagates).
Tensor max_pool2d(const Tensor& x, std::size_t kernel, std::size_t stride) {
  if (!x.defined()) throw Error("max_pool2d: x is undefined");
  const Shape sx = x.shape();
  auto fail = [&](const std::string& why) {
    throw Error("max_pool2d: " + why + " (x " + sx.str() + ", kernel " + std::to_string(kernel) + ", stride " +
                std::to_string(stride) + ")");
  };
  if (sx.rank() != 4) fail("x must be (N, C, H, W), got rank " + std::to_string(sx.rank()));
  if (kernel == 0) fail("kernel must be at least 1");
  if (stride == 0) fail("stride must be at least 1");
  if (kernel > sx[2] || kernel > sx[3]) fail("kernel is larger than the input");
  if (sx[2] * sx[3] > std::size_t(UINT32_MAX)) fail("a plane exceeds 2^32 elements");
  const std::size_t planes = sx[0] * sx[1], h = sx[2], w = sx[3];
  const std::size_t oh = (h - kernel) / stride + 1, ow = (w - kernel) / stride + 1;

  OpCall call(op_max_pool2d, {&x});
  Tensor y = call.output(Shape{sx[0], sx[1], oh, ow});
  std::uint32_t* arg = call.attrs<PoolAttrs>().argmax = call.save<std::uint32_t>(planes * oh * ow);
  dispatch(call.dtype(), [&](auto z) {
    using T = decltype(z);
    const T* px = static_cast<const T*>(x.raw_data());
    T* py = y.data<T>();
    for (std::size_t p = 0; p < planes; ++p) {
      const T* plane = px + p * h * w;
      for (std::size_t oy = 0; oy < oh; ++oy)
        for (std::size_t ox = 0; ox < ow; ++ox) {
          std::size_t best = oy * stride * w + ox * stride;
          for (std::size_t i = 0; i < kernel; ++i)
            for (std::size_t j = 0; j < kernel; ++j) {
              const std::size_t at = (oy * stride + i) * w + ox * stride + j;
              // Larger wins, the first on ties; a NaN wins and stays (it propagates, as in PyTorch).
              if (!std::isnan(plane[best]) && !(plane[at] <= plane[best])) best = at;
            }
          const std::size_t o = (p * oh + oy) * ow + ox;
          py[o] = plane[best];
          arg[o] = static_cast<std::uint32_t>(best);
        }
    }
  });
  call.record([](BackwardCtx& c) {
    const Shape &sx = c.in_shape(0), &sy = c.out_shape();
    const std::size_t hw = sx[2] * sx[3], ohw = sy[2] * sy[3], planes = sx[0] * sx[1];
    const std::uint32_t* arg = c.attrs<PoolAttrs>().argmax;
    kernels::grad_pass(c, [&](auto* gx, auto* gy) {
      for (std::size_t p = 0; p < planes; ++p)
        for (std::size_t o = 0; o < ohw; ++o) gx[p * hw + arg[p * ohw + o]] += gy[p * ohw + o];
    });
  });
  return y;
}

}  // namespace tapegrad
