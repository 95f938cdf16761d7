//! Array operations. Each builds a lazy graph node and returns a new array;
//! failures carry MLX's message (shape mismatches are caught at build time).

use crate::array::{Array, Dtype};
use crate::error::Result;
use crate::ffi::bridge::{self as ffi, BinaryOp, ReduceOp, UnaryOp};
use crate::list::{from_list, to_list};

macro_rules! unary_ops {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(
            pub fn $name(&self) -> Result<Array> {
                Array::wrap(stringify!($name), ffi::unary(self.inner(), UnaryOp::$op))
            }
        )*
    };
}

macro_rules! binary_ops {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(
            pub fn $name(&self, other: &Array) -> Result<Array> {
                Array::wrap(stringify!($name), ffi::binary(self.inner(), other.inner(), BinaryOp::$op))
            }
        )*
    };
}

macro_rules! reduce_ops {
    ($($name:ident => $op:ident),* $(,)?) => {
        $(
            /// Reduces over `axes` (all axes when empty).
            pub fn $name(&self, axes: &[i32], keepdims: bool) -> Result<Array> {
                let all: Vec<i32>;
                let axes = if axes.is_empty() {
                    all = (0..self.ndim() as i32).collect();
                    &all
                } else {
                    axes
                };
                Array::wrap(stringify!($name), ffi::reduce(self.inner(), axes, keepdims, ReduceOp::$op))
            }
        )*
    };
}

impl Array {
    unary_ops! {
        neg => Neg, exp => Exp, log => Log, sqrt => Sqrt, rsqrt => Rsqrt, sin => Sin, cos => Cos,
        tanh => Tanh, sigmoid => Sigmoid, abs => Abs, square => Square, erf => Erf, floor => Floor,
        ceil => Ceil, round => Round, reciprocal => Reciprocal, logical_not => LogicalNot,
        log1p => Log1p, sign => Sign, isnan => IsNan,
    }

    binary_ops! {
        add => Add, sub => Sub, mul => Mul, div => Div, maximum => Maximum, minimum => Minimum,
        power => Power, eq => Equal, ne => NotEqual, lt => Less, le => LessEqual, gt => Greater,
        ge => GreaterEqual, logical_and => LogicalAnd, logical_or => LogicalOr, remainder => Remainder,
    }

    reduce_ops! {
        sum => Sum, mean => Mean, max => Max, min => Min, prod => Prod, logsumexp => LogSumExp,
        all => All, any => Any,
    }

    /// `self + v`, with `v` in this array's dtype (no promotion).
    pub fn add_scalar(&self, v: f32) -> Result<Array> {
        self.add(&Array::scalar(v, self.dtype())?)
    }

    /// `self * v`, with `v` in this array's dtype (no promotion).
    pub fn mul_scalar(&self, v: f32) -> Result<Array> {
        self.mul(&Array::scalar(v, self.dtype())?)
    }

    /// `self / v`, with `v` in this array's dtype (no promotion).
    pub fn div_scalar(&self, v: f32) -> Result<Array> {
        self.div(&Array::scalar(v, self.dtype())?)
    }

    /// Elementwise choice: `cond ? a : b`.
    pub fn where_(cond: &Array, a: &Array, b: &Array) -> Result<Array> {
        Array::wrap("where", ffi::where_(cond.inner(), a.inner(), b.inner()))
    }

    pub fn astype(&self, dtype: Dtype) -> Result<Array> {
        Array::wrap("astype", ffi::astype(self.inner(), dtype))
    }

    /// Reinterprets the bytes as `dtype` (the last axis is rescaled).
    pub fn view_as(&self, dtype: Dtype) -> Result<Array> {
        Array::wrap("view", ffi::view_as(self.inner(), dtype))
    }

    pub fn clip(&self, lo: &Array, hi: &Array) -> Result<Array> {
        Array::wrap("clip", ffi::clip(self.inner(), lo.inner(), hi.inner()))
    }

    pub fn argmax(&self, axis: i32, keepdims: bool) -> Result<Array> {
        Array::wrap(
            "argmax",
            ffi::arg_reduce(self.inner(), axis, keepdims, true),
        )
    }

    pub fn argmin(&self, axis: i32, keepdims: bool) -> Result<Array> {
        Array::wrap(
            "argmin",
            ffi::arg_reduce(self.inner(), axis, keepdims, false),
        )
    }

    /// Softmax over `axes`; `precise` accumulates in f32 for half inputs.
    pub fn softmax(&self, axes: &[i32], precise: bool) -> Result<Array> {
        Array::wrap("softmax", ffi::softmax(self.inner(), axes, precise))
    }

    pub fn cumsum(&self, axis: i32, reverse: bool, inclusive: bool) -> Result<Array> {
        Array::wrap(
            "cumsum",
            ffi::cumsum(self.inner(), axis, reverse, inclusive),
        )
    }

    pub fn sort(&self, axis: i32) -> Result<Array> {
        Array::wrap("sort", ffi::sort(self.inner(), axis))
    }

    pub fn argsort(&self, axis: i32) -> Result<Array> {
        Array::wrap("argsort", ffi::argsort(self.inner(), axis))
    }

    pub fn argpartition(&self, kth: i32, axis: i32) -> Result<Array> {
        Array::wrap("argpartition", ffi::argpartition(self.inner(), kth, axis))
    }

    /// The `k` largest values along `axis` (unordered).
    pub fn topk(&self, k: i32, axis: i32) -> Result<Array> {
        Array::wrap("topk", ffi::topk(self.inner(), k, axis))
    }

    pub fn matmul(&self, other: &Array) -> Result<Array> {
        Array::wrap("matmul", ffi::matmul(self.inner(), other.inner()))
    }

    /// `beta * c + alpha * (a @ b)`.
    pub fn addmm(c: &Array, a: &Array, b: &Array, alpha: f32, beta: f32) -> Result<Array> {
        Array::wrap(
            "addmm",
            ffi::addmm(c.inner(), a.inner(), b.inner(), alpha, beta),
        )
    }

    pub fn reshape(&self, shape: &[i32]) -> Result<Array> {
        Array::wrap("reshape", ffi::reshape(self.inner(), shape))
    }

    pub fn transpose(&self, axes: &[i32]) -> Result<Array> {
        Array::wrap("transpose", ffi::transpose(self.inner(), axes))
    }

    /// Swaps the last two axes.
    pub fn t(&self) -> Result<Array> {
        let n = self.ndim() as i32;
        let mut axes: Vec<i32> = (0..n).collect();
        if n >= 2 {
            axes.swap(n as usize - 1, n as usize - 2);
        }
        self.transpose(&axes)
    }

    pub fn expand_dims(&self, axis: i32) -> Result<Array> {
        Array::wrap("expand_dims", ffi::expand_dims(self.inner(), axis))
    }

    pub fn squeeze(&self, axis: i32) -> Result<Array> {
        Array::wrap("squeeze", ffi::squeeze(self.inner(), axis))
    }

    pub fn broadcast_to(&self, shape: &[i32]) -> Result<Array> {
        Array::wrap("broadcast_to", ffi::broadcast_to(self.inner(), shape))
    }

    pub fn repeat(&self, repeats: i32, axis: i32) -> Result<Array> {
        Array::wrap("repeat", ffi::repeat(self.inner(), repeats, axis))
    }

    /// A row-major copy when the array is a strided view.
    pub fn contiguous(&self) -> Result<Array> {
        Array::wrap("contiguous", ffi::contiguous(self.inner()))
    }

    /// `self[start:stop]` on every axis, stride 1.
    pub fn slice(&self, start: &[i32], stop: &[i32]) -> Result<Array> {
        let strides = vec![1; start.len()];
        Array::wrap("slice", ffi::slice(self.inner(), start, stop, &strides))
    }

    pub fn slice_strided(&self, start: &[i32], stop: &[i32], strides: &[i32]) -> Result<Array> {
        Array::wrap("slice", ffi::slice(self.inner(), start, stop, strides))
    }

    /// `self[a:b]` along one axis.
    pub fn slice_axis(&self, axis: i32, start: i32, stop: i32) -> Result<Array> {
        let shape = self.shape();
        let axis = if axis < 0 {
            shape.len() as i32 + axis
        } else {
            axis
        } as usize;
        let mut lo = vec![0; shape.len()];
        let mut hi = shape.clone();
        lo[axis] = start;
        hi[axis] = stop;
        self.slice(&lo, &hi)
    }

    /// A slice whose start is an array (no graph rebuild as the offset moves).
    pub fn slice_dynamic(&self, start: &Array, axes: &[i32], sizes: &[i32]) -> Result<Array> {
        Array::wrap(
            "slice_dynamic",
            ffi::slice_dynamic(self.inner(), start.inner(), axes, sizes),
        )
    }

    /// A copy of `self` with `self[start:stop] = update`.
    pub fn slice_update(&self, update: &Array, start: &[i32], stop: &[i32]) -> Result<Array> {
        let strides = vec![1; start.len()];
        Array::wrap(
            "slice_update",
            ffi::slice_update(self.inner(), update.inner(), start, stop, &strides),
        )
    }

    pub fn slice_update_dynamic(
        &self,
        update: &Array,
        start: &Array,
        axes: &[i32],
    ) -> Result<Array> {
        Array::wrap(
            "slice_update_dynamic",
            ffi::slice_update_dynamic(self.inner(), update.inner(), start.inner(), axes),
        )
    }

    pub fn concatenate(arrays: &[&Array], axis: i32) -> Result<Array> {
        Array::wrap("concatenate", ffi::concatenate(&to_list(arrays), axis))
    }

    pub fn stack(arrays: &[&Array], axis: i32) -> Result<Array> {
        Array::wrap("stack", ffi::stack(&to_list(arrays), axis))
    }

    /// Splits at the given indices along `axis`.
    pub fn split_at(&self, indices: &[i32], axis: i32) -> Result<Vec<Array>> {
        from_list("split", ffi::split_sections(self.inner(), indices, axis))
    }

    /// Rows (or slices along `axis`) at `indices`.
    pub fn take(&self, indices: &Array, axis: i32) -> Result<Array> {
        Array::wrap("take", ffi::take(self.inner(), indices.inner(), axis))
    }

    pub fn take_along_axis(&self, indices: &Array, axis: i32) -> Result<Array> {
        Array::wrap(
            "take_along_axis",
            ffi::take_along_axis(self.inner(), indices.inner(), axis),
        )
    }

    pub fn put_along_axis(&self, indices: &Array, values: &Array, axis: i32) -> Result<Array> {
        Array::wrap(
            "put_along_axis",
            ffi::put_along_axis(self.inner(), indices.inner(), values.inner(), axis),
        )
    }

    pub fn zeros(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Array::wrap("zeros", ffi::zeros(shape, dtype))
    }

    pub fn ones(shape: &[i32], dtype: Dtype) -> Result<Array> {
        Array::wrap("ones", ffi::ones(shape, dtype))
    }

    pub fn full(shape: &[i32], value: f32, dtype: Dtype) -> Result<Array> {
        Array::wrap("full", ffi::full(shape, value, dtype))
    }

    pub fn arange(start: f64, stop: f64, step: f64, dtype: Dtype) -> Result<Array> {
        Array::wrap("arange", ffi::arange(start, stop, step, dtype))
    }
}
