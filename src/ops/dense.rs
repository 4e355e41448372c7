//! Dense (fully connected): y = x W^T + b with W laid out `[out, in]` like PyTorch; and its
//! grouped form, several networks' layers side by side in one op ([`GroupedDense`]).

use ndarray::{s, Array1, Array2, Axis};

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
    c_row: u32,
    a_group: u32,
    b_group: u32,
    c_group: u32,
    _unused: u32,
}

/// A strided operand of one group: element (r, c) is at `group * g + r * row + c * col`.
#[derive(Clone, Copy)]
struct Strides {
    row: usize,
    col: usize,
    group: usize,
}

/// Records, for each of `groups` groups, `c(m, n) = A(m, k) B(k, n) (+ bias[n])` with strided A,
/// B and C (bias stacked per group).
#[allow(clippy::too_many_arguments)]
fn matmul(
    rec: &mut Recorder,
    (m, n, k, groups): (usize, usize, usize, usize),
    a: &Tensor,
    sa: Strides,
    b: &Tensor,
    sb: Strides,
    bias: Option<&Tensor>,
    c: &Tensor,
    sc: Strides,
) -> Result<()> {
    let params = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        a_row: sa.row as u32,
        a_col: sa.col as u32,
        b_row: sb.row as u32,
        b_col: sb.col as u32,
        c_row: sc.row as u32,
        a_group: sa.group as u32,
        b_group: sb.group as u32,
        c_group: sc.group as u32,
        _unused: 0,
    };
    let groups = [
        n.div_ceil(TILE) as u32,
        m.div_ceil(TILE) as u32,
        groups as u32,
    ];
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

/// `groups` Dense layers side by side: x `[B, groups * in]`, weight `[groups * out, in]`, bias
/// `[groups * out]`; output columns `g * out..` are group g's layer on input columns `g * in..`.
pub struct GroupedDense {
    pub groups: usize,
}

impl Op for Dense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        GroupedDense { groups: 1 }.output_shape(inputs)
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        GroupedDense { groups: 1 }.forward(rec, inputs, output)
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        saved: &[Tensor],
        dy: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        GroupedDense { groups: 1 }.backward(rec, inputs, saved, dy, grad_inputs)
    }
}

impl Op for GroupedDense {
    fn name(&self) -> &'static str {
        "dense"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        expect_ranks("dense", inputs, &[2, 2, 1])?;
        let (x, w, b) = (inputs[0], inputs[1], inputs[2]);
        let g = self.groups;
        if g == 0 || x[1] != g * w[1] || b[0] != w[0] || w[0] % g != 0 {
            return Err(shape_error(
                "dense",
                format!("x {x:?}, weight {w:?}, bias {b:?} do not fit {g} group(s)"),
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
        let g = self.groups;
        let (batch, d_in, d_out) = (x.shape()[0], w.shape()[1], w.shape()[0] / g);
        // y[b, g, o] = sum_i x[b, g, i] W[g, o, i]: B(k=i, n=o) = W[(g * out + o) * in + i]
        let sx = Strides {
            row: g * d_in,
            col: 1,
            group: d_in,
        };
        let swt = Strides {
            row: 1,
            col: d_in,
            group: d_out * d_in,
        };
        let sy = Strides {
            row: g * d_out,
            col: 1,
            group: d_out,
        };
        let dims = (batch, d_out, d_in, g);
        matmul(rec, dims, x, sx, w, swt, Some(b), output, sy)?;
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
        let g = self.groups;
        let (batch, d_in, d_out) = (x.shape()[0], w.shape()[1], w.shape()[0] / g);
        let sw_group = d_out * d_in;
        if let Some(dx) = grad_inputs[0] {
            // dx[b, g, i] = sum_o dy[b, g, o] W[g, o, i]
            let sdy = Strides {
                row: g * d_out,
                col: 1,
                group: d_out,
            };
            let sw = Strides {
                row: d_in,
                col: 1,
                group: sw_group,
            };
            let sdx = Strides {
                row: g * d_in,
                col: 1,
                group: d_in,
            };
            matmul(rec, (batch, d_in, d_out, g), dy, sdy, w, sw, None, dx, sdx)?;
        }
        if let Some(dw) = grad_inputs[1] {
            // dW[g, o, i] = sum_b dy[b, g, o] x[b, g, i]: A(m=o, k=b) = dy[b * g * out + o]
            let sdyt = Strides {
                row: 1,
                col: g * d_out,
                group: d_out,
            };
            let sx = Strides {
                row: g * d_in,
                col: 1,
                group: d_in,
            };
            let sdw = Strides {
                row: d_in,
                col: 1,
                group: sw_group,
            };
            matmul(rec, (d_out, d_in, batch, g), dy, sdyt, x, sx, None, dw, sdw)?;
        }
        if let Some(db) = grad_inputs[2] {
            reduce::channel_sum(rec, dy, [batch, g * d_out, 1], 1.0, db)?;
        }
        Ok(())
    }
}

pub fn reference_forward(x: &Array2<f64>, w: &Array2<f64>, b: &Array1<f64>) -> Array2<f64> {
    x.dot(&w.t()) + b
}

/// [`reference_forward`] of [`GroupedDense`]: each group's layer on its own columns, side by side.
pub fn reference_forward_grouped(
    x: &Array2<f64>,
    w: &Array2<f64>,
    b: &Array1<f64>,
    groups: usize,
) -> Array2<f64> {
    let (d_in, d_out) = (w.ncols(), w.nrows() / groups);
    let parts: Vec<Array2<f64>> = (0..groups)
        .map(|g| {
            let xg = x.slice(s![.., g * d_in..(g + 1) * d_in]);
            let rows = g * d_out..(g + 1) * d_out;
            xg.dot(&w.slice(s![rows.clone(), ..]).t()) + b.slice(s![rows])
        })
        .collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(1), &views).expect("groups of one batch")
}

/// (dx, dw, db)
pub fn reference_backward(
    x: &Array2<f64>,
    w: &Array2<f64>,
    dy: &Array2<f64>,
) -> (Array2<f64>, Array2<f64>, Array1<f64>) {
    (dy.dot(w), dy.t().dot(x), dy.sum_axis(Axis(0)))
}
