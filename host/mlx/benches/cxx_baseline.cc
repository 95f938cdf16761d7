// The same loops as binding_overhead.rs, calling MLX's C++ API directly, so
// the difference is the cost of our binding. Built and run by that benchmark.
#include <chrono>
#include <cstdio>

#include "mlx/mlx.h"

namespace mx = mlx::core;

int main() {
  auto x = mx::ones({16, 16}, mx::float32);
  auto one = mx::array(1.0f);
  mx::eval(x);
  const int n_build = 200000, n_eval = 20000;
  for (int i = 0; i < 1000; ++i) mx::eval(mx::add(x, one));

  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n_build; ++i) {
    auto y = mx::add(x, one);
    (void)y;
  }
  auto t1 = std::chrono::steady_clock::now();
  for (int i = 0; i < n_eval; ++i) {
    auto y = mx::add(x, one);
    mx::eval(y);
  }
  auto t2 = std::chrono::steady_clock::now();
  double build_ns = std::chrono::duration<double, std::nano>(t1 - t0).count() / n_build;
  double eval_ns = std::chrono::duration<double, std::nano>(t2 - t1).count() / n_eval;
  std::printf("%.1f %.1f\n", build_ns, eval_ns);
  return 0;
}
