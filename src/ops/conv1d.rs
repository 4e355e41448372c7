//! Conv1D (stride 1, bias, optionally fused with the ReLU that follows it), forward and backward
//! w.r.t. input, weight and bias.

use ndarray::{Array1, Array3};

use super::{expect_ranks, relu, shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{groups_1d, Kernels, Shader, Tensor, WORKGROUP};

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
    relu: u32,
    splits: u32,
    split_len: u32,
    _unused: [u32; 2],
}

/// Beats per split of the register-block weight gradient: enough work per invocation for a CPU
/// core, and the reduction still never runs over a whole large batch in one invocation.
const CPU_SPLIT_BEATS: u32 = 64;
/// Positions per staged chunk and output tile edge of `backward_weight_tiled` (TR, TM, TN).
const TILE: u32 = 32;
/// Invocations the register weight gradient aims for on a GPU: enough to fill a large one.
const TARGET_INVOCATIONS: u32 = 1 << 16;
/// Workgroups the tiled weight gradient aims for: a few per streaming multiprocessor of a large
/// GPU, so the split reduction fills it even at batch 32.
const TARGET_WORKGROUPS: u32 = 2048;

/// Inputs: x `[B, Cin, L]`, weight `[Cout, Cin, K]`, bias `[Cout]`. With `relu`, the output is
/// `max(conv, 0)` and the backward pass masks the incoming gradient with it.
pub struct Conv1d {
    pub padding: Padding,
    pub relu: bool,
}

impl Conv1d {
    /// A plain convolution (no fused activation).
    pub fn new(padding: Padding) -> Self {
        Self {
            padding,
            relu: false,
        }
    }

    /// Convolution followed by ReLU, in one op.
    pub fn with_relu(padding: Padding) -> Self {
        Self {
            padding,
            relu: true,
        }
    }

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
            relu: self.relu as u32,
            splits: 1,
            split_len: x[0] as u32,
            _unused: [0; 2],
        })
    }
}

/// Workgroups of the register weight-gradient kernel: lanes over (4 input channels, tap) plus
/// the bias lane, `splits` rows, 8 output channels per z.
fn register_weight_groups(p: &Params, splits: u32) -> [u32; 3] {
    [
        (p.c_in.div_ceil(4) * p.kernel + 1).div_ceil(WORKGROUP),
        splits,
        p.c_out.div_ceil(8),
    ]
}

/// Workgroups of a tiled implicit GEMM: `n` columns (batch x positions) in tiles of 32, folded
/// over x and y like [`groups_1d`], and `m` rows (channels) in tiles of 32 along z.
fn tile_groups(n: u32, m: u32) -> [u32; 3] {
    let tiles = n.div_ceil(TILE);
    let x = tiles.min(65_535);
    [x, tiles.div_ceil(x), m.div_ceil(TILE)]
}

/// How the weight gradient's reduction over (batch, position) is cut: (splits, split_len), with
/// split_len in beats for the register kernel and in positions for the tiled one.
fn weight_grad_splits(kernels: Kernels, p: &Params) -> (u32, u32) {
    match kernels {
        Kernels::Cpu => {
            let len = CPU_SPLIT_BEATS.min(p.batch);
            (p.batch.div_ceil(len), len)
        }
        Kernels::Gpu => {
            // as many splits of whole beats as it takes to fill the GPU
            let per_split = register_weight_groups(p, 1).iter().product::<u32>() * WORKGROUP;
            let wanted = TARGET_INVOCATIONS.div_ceil(per_split).clamp(1, p.batch);
            let len = p.batch.div_ceil(wanted);
            (p.batch.div_ceil(len), len)
        }
        Kernels::Tiled => {
            let total = p.batch * p.len_out;
            let tiles = p.c_out.div_ceil(TILE) * (p.c_in * p.kernel + 1).div_ceil(TILE);
            let wanted = TARGET_WORKGROUPS
                .div_ceil(tiles)
                .clamp(1, total.div_ceil(TILE));
            let len = total.div_ceil(wanted).next_multiple_of(TILE);
            (total.div_ceil(len), len)
        }
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
        let (entry, groups) = match rec.ctx.kernels {
            // lanes over (batch, 4-position blocks); workgroup row z = 8 output channels
            Kernels::Cpu | Kernels::Gpu => {
                let mut groups = groups_1d(p.batch as usize * p.len_out.div_ceil(4) as usize);
                groups[2] = p.c_out.div_ceil(8);
                ("forward", groups)
            }
            // 32 positions x 32 channels per workgroup
            Kernels::Tiled => ("forward_tiled", tile_groups(p.batch * p.len_out, p.c_out)),
        };
        rec.push(
            &SHADER,
            entry,
            &p,
            &[
                (1, x.binding()),
                (2, w.binding()),
                (3, b.binding()),
                (4, output.binding()),
            ],
            groups,
        )?;
        // the output is the ReLU mask of the backward pass
        Ok(if self.relu {
            vec![output.clone()]
        } else {
            vec![]
        })
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        saved: &[Tensor],
        dy: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        let (x, w) = (inputs[0], inputs[1]);
        let mut p = self.params(x.shape(), w.shape())?;
        // Behind a fused ReLU the backward kernels read the mask where they load dy (MASKED
        // specialises them), except on a CPU: there the mask loads inside the register kernels'
        // inner loops cost more than one element-wise pass that masks dy first.
        let masked;
        let mut dy = dy;
        if self.relu && rec.ctx.kernels == Kernels::Cpu {
            masked = rec.scratch(dy.shape());
            relu::mask_gradient(rec, &saved[0], dy, &masked)?;
            dy = &masked;
        }
        let mask_in_place = self.relu && rec.ctx.kernels != Kernels::Cpu;
        let constants: &[(&'static str, f64)] = &[("MASKED", f64::from(u8::from(mask_in_place)))];
        // without a mask in place the mask binding is never read: dy stands in for it
        let mask = if mask_in_place { &saved[0] } else { dy };
        if let Some(dx) = grad_inputs[0] {
            let (entry, groups) = match rec.ctx.kernels {
                Kernels::Cpu | Kernels::Gpu => {
                    let mut groups = groups_1d(p.batch as usize * p.len_in.div_ceil(4) as usize);
                    groups[2] = p.c_in.div_ceil(8);
                    ("backward_input", groups)
                }
                Kernels::Tiled => (
                    "backward_input_tiled",
                    tile_groups(p.batch * p.len_in, p.c_in),
                ),
            };
            let bindings = [
                (2, w.binding()),
                (5, dy.binding()),
                (6, dx.binding()),
                (8, mask.binding()),
            ];
            rec.push_with(&SHADER, entry, constants, &p, &bindings, groups)?;
        }
        let (dw, db) = (grad_inputs[1], grad_inputs[2]);
        if dw.is_none() && db.is_none() {
            return Ok(());
        }
        // Weight and bias gradients in one split reduction: partial sums per split, then a
        // finalize pass that adds them in split order.
        let (splits, split_len) = weight_grad_splits(rec.ctx.kernels, &p);
        p.splits = splits;
        p.split_len = split_len;
        let cols = p.c_in * p.kernel + 1;
        let partial = rec.scratch(&[splits as usize, p.c_out as usize, cols as usize]);
        let (entry, groups) = match rec.ctx.kernels {
            Kernels::Cpu | Kernels::Gpu => ("backward_weight", register_weight_groups(&p, splits)),
            Kernels::Tiled => (
                "backward_weight_tiled",
                [cols.div_ceil(TILE), p.c_out.div_ceil(TILE), splits],
            ),
        };
        let bindings = [
            (1, x.binding()),
            (5, dy.binding()),
            (7, partial.binding()),
            (8, mask.binding()),
        ];
        rec.push_with(&SHADER, entry, constants, &p, &bindings, groups)?;
        // a gradient nobody asked for still needs somewhere to go
        let spare_w;
        let spare_b;
        let dw = match dw {
            Some(t) => t,
            None => {
                spare_w = rec.scratch(w.shape());
                &spare_w
            }
        };
        let db = match db {
            Some(t) => t,
            None => {
                spare_b = rec.scratch(&[p.c_out as usize]);
                &spare_b
            }
        };
        rec.push(
            &SHADER,
            "weight_grad_finalize",
            &p,
            &[
                (7, partial.binding()),
                (9, dw.binding()),
                (10, db.binding()),
            ],
            groups_1d((p.c_out * cols) as usize),
        )
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
