//! Conv1D (stride 1, bias), forward and backward w.r.t. input, weight and bias.

use ndarray::{Array1, Array3};

use super::{expect_ranks, reduce, shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "conv1d",
    source: include_str!("../../shaders/conv1d.wgsl"),
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Padding {
    /// Output as long as the input: (k - 1) / 2 zeros on the left, the rest on the right.
    Same,
    /// No padding: output length L - k + 1.
    Valid,
}

impl Padding {
    /// (left padding, output length) for an input of `len` and a kernel of `k`.
    pub fn geometry(self, len: usize, k: usize) -> Option<(usize, usize)> {
        match self {
            Padding::Same => Some(((k - 1) / 2, len)),
            Padding::Valid => (len >= k).then(|| (0, len - k + 1)),
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    batch: u32,
    c_in: u32,
    c_out: u32,
    len_in: u32,
    len_out: u32,
    kernel: u32,
    pad: u32,
    _unused: u32,
}

/// Inputs: x `[B, Cin, L]`, weight `[Cout, Cin, K]`, bias `[Cout]`.
pub struct Conv1d {
    pub padding: Padding,
}

impl Conv1d {
    fn params(&self, x: &[usize], w: &[usize]) -> Result<Params> {
        let (pad, len_out) = self.padding.geometry(x[2], w[2]).ok_or_else(|| {
            shape_error(
                "conv1d",
                format!("input length {} shorter than kernel {}", x[2], w[2]),
            )
        })?;
        Ok(Params {
            batch: x[0] as u32,
            c_in: x[1] as u32,
            c_out: w[0] as u32,
            len_in: x[2] as u32,
            len_out: len_out as u32,
            kernel: w[2] as u32,
            pad: pad as u32,
            _unused: 0,
        })
    }
}

impl Op for Conv1d {
    fn name(&self) -> &'static str {
        "conv1d"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        expect_ranks("conv1d", inputs, &[3, 3, 1])?;
        let (x, w, b) = (inputs[0], inputs[1], inputs[2]);
        if w[1] != x[1] {
            return Err(shape_error(
                "conv1d",
                format!(
                    "input has {} channels, weight {:?} expects {}",
                    x[1], w, w[1]
                ),
            ));
        }
        if b[0] != w[0] {
            return Err(shape_error(
                "conv1d",
                format!("bias {:?} does not match weight {:?}", b, w),
            ));
        }
        let p = self.params(x, w)?;
        Ok(vec![x[0], w[0], p.len_out as usize])
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let (x, w, b) = (inputs[0], inputs[1], inputs[2]);
        let p = self.params(x.shape(), w.shape())?;
        // lanes over (batch, 4-position blocks); workgroup row z = 8 output channels
        let mut groups = groups_1d(p.batch as usize * p.len_out.div_ceil(4) as usize);
        groups[2] = p.c_out.div_ceil(8);
        rec.push(
            &SHADER,
            "forward",
            &p,
            &[
                (1, x.binding()),
                (2, w.binding()),
                (3, b.binding()),
                (4, output.binding()),
            ],
            groups,
        )?;
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
        let p = self.params(x.shape(), w.shape())?;
        if let Some(dx) = grad_inputs[0] {
            let mut groups = groups_1d(p.batch as usize * p.len_in.div_ceil(4) as usize);
            groups[2] = p.c_in.div_ceil(8);
            rec.push(
                &SHADER,
                "backward_input",
                &p,
                &[(2, w.binding()), (5, dy.binding()), (6, dx.binding())],
                groups,
            )?;
        }
        if let Some(dw) = grad_inputs[1] {
            let mut groups = groups_1d((p.c_in.div_ceil(4) * p.kernel) as usize);
            groups[2] = p.c_out.div_ceil(8);
            rec.push(
                &SHADER,
                "backward_weight",
                &p,
                &[(1, x.binding()), (5, dy.binding()), (7, dw.binding())],
                groups,
            )?;
        }
        if let Some(db) = grad_inputs[2] {
            let dims = [p.batch as usize, p.c_out as usize, p.len_out as usize];
            reduce::channel_sum(rec, dy, dims, 1.0, db)?;
        }
        Ok(())
    }
}

/// CPU reference: `y[b, co, l] = bias[co] + sum_{ci,k} w[co, ci, k] x[b, ci, l + k - pad]`.
pub fn reference_forward(
    x: &Array3<f64>,
    w: &Array3<f64>,
    bias: &Array1<f64>,
    padding: Padding,
) -> Array3<f64> {
    let (batch, c_in, len) = x.dim();
    let (c_out, _, k) = w.dim();
    let (pad, len_out) = padding.geometry(len, k).expect("input shorter than kernel");
    let mut y = Array3::zeros((batch, c_out, len_out));
    for b in 0..batch {
        for co in 0..c_out {
            for l in 0..len_out {
                let mut acc = bias[co];
                for ci in 0..c_in {
                    for t in 0..k {
                        let src = l as isize + t as isize - pad as isize;
                        if src >= 0 && (src as usize) < len {
                            acc += w[[co, ci, t]] * x[[b, ci, src as usize]];
                        }
                    }
                }
                y[[b, co, l]] = acc;
            }
        }
    }
    y
}

/// CPU reference of the three gradients: (dx, dw, dbias).
pub fn reference_backward(
    x: &Array3<f64>,
    w: &Array3<f64>,
    dy: &Array3<f64>,
    padding: Padding,
) -> (Array3<f64>, Array3<f64>, Array1<f64>) {
    let (batch, c_in, len) = x.dim();
    let (c_out, _, k) = w.dim();
    let (pad, len_out) = padding.geometry(len, k).expect("input shorter than kernel");
    let mut dx = Array3::zeros(x.dim());
    let mut dw = Array3::zeros(w.dim());
    let mut db = Array1::zeros(c_out);
    for b in 0..batch {
        for co in 0..c_out {
            for l in 0..len_out {
                let g = dy[[b, co, l]];
                db[co] += g;
                for ci in 0..c_in {
                    for t in 0..k {
                        let src = l as isize + t as isize - pad as isize;
                        if src >= 0 && (src as usize) < len {
                            dx[[b, ci, src as usize]] += g * w[[co, ci, t]];
                            dw[[co, ci, t]] += g * x[[b, ci, src as usize]];
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}
