//! Dense (fully connected): y = x W^T + b with W laid out `[out, in]` like PyTorch.

use ndarray::{Array1, Array2, Axis};

use super::{expect_ranks, reduce, shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "dense",
    source: include_str!("../../shaders/dense.wgsl"),
};

const TILE: usize = 16;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    _unused: u32,
}

/// A strided operand: element (r, c) is at `r * row + c * col`.
#[derive(Clone, Copy)]
struct Strides {
    row: usize,
    col: usize,
}

/// Records `c[m, n] = A(m, k) B(k, n) (+ bias[n])` with strided A and B.
#[allow(clippy::too_many_arguments)]
fn matmul(
    rec: &mut Recorder,
    (m, n, k): (usize, usize, usize),
    a: &Tensor,
    sa: Strides,
    b: &Tensor,
    sb: Strides,
    bias: Option<&Tensor>,
    c: &Tensor,
) -> Result<()> {
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        a_row: sa.row as u32,
        a_col: sa.col as u32,
        b_row: sb.row as u32,
        b_col: sb.col as u32,
        _unused: 0,
    };
    let groups = [n.div_ceil(TILE) as u32, m.div_ceil(TILE) as u32, 1];
    let mut bindings = vec![(1, a.binding()), (2, b.binding()), (3, c.binding())];
    let entry = match bias {
        Some(bias) => {
            bindings.push((4, bias.binding()));
            "matmul_bias"
        }
        None => "matmul",
    };
    rec.push(&SHADER, entry, &params, &bindings, groups)
}

/// Inputs: x `[B, in]`, weight `[out, in]`, bias `[out]`.
pub struct Dense;

impl Op for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        expect_ranks("dense", inputs, &[2, 2, 1])?;
        let (x, w, b) = (inputs[0], inputs[1], inputs[2]);
        if x[1] != w[1] || b[0] != w[0] {
            return Err(shape_error(
                "dense",
                format!("x {x:?}, weight {w:?}, bias {b:?} do not fit"),
            ));
        }
        Ok(vec![x[0], w[0]])
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let (x, w, b) = (inputs[0], inputs[1], inputs[2]);
        let (batch, d_in, d_out) = (x.shape()[0], x.shape()[1], w.shape()[0]);
        // y[b, o] = sum_i x[b, i] W[o, i]: B(k=i, n=o) = W[o * in + i]
        let sx = Strides { row: d_in, col: 1 };
        let swt = Strides { row: 1, col: d_in };
        matmul(rec, (batch, d_out, d_in), x, sx, w, swt, Some(b), output)?;
        Ok(vec![])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        _saved: &[Tensor],
        dy: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        let (x, w) = (inputs[0], inputs[1]);
        let (batch, d_in, d_out) = (x.shape()[0], x.shape()[1], w.shape()[0]);
        if let Some(dx) = grad_inputs[0] {
            // dx[b, i] = sum_o dy[b, o] W[o, i]
            let sdy = Strides { row: d_out, col: 1 };
            let sw = Strides { row: d_in, col: 1 };
            matmul(rec, (batch, d_in, d_out), dy, sdy, w, sw, None, dx)?;
        }
        if let Some(dw) = grad_inputs[1] {
            // dW[o, i] = sum_b dy[b, o] x[b, i]: A(m=o, k=b) = dy[b * out + o]
            let sdyt = Strides { row: 1, col: d_out };
            let sx = Strides { row: d_in, col: 1 };
            matmul(rec, (d_out, d_in, batch), dy, sdyt, x, sx, None, dw)?;
        }
        if let Some(db) = grad_inputs[2] {
            reduce::channel_sum(rec, dy, [batch, d_out, 1], 1.0, db)?;
        }
        Ok(())
    }
}

pub fn reference_forward(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    x.dot(&w.t()) + b
}

/// (dx, dw, db)
pub fn reference_backward(
    x: &Array2<f64>,
    w: &Array2<f64>,
    dy: &Array2<f64>,
) -> (Array2<f64>, Array2<f64>, Array1<f64>) {
    (dy.dot(w), dy.t().dot(x), dy.sum_axis(Axis(0)))
}
