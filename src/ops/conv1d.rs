//! Conv1D (stride 1, bias, optionally grouped, optionally fused with the ReLU that follows it),
//! forward and backward w.r.t. input, weight and bias.
//!
//! Groups run several networks of one architecture as one: their weights stacked along the output
//! channels, each group reading only its own input channels (PyTorch's `groups`).

use ndarray::{Array1, Array3};

use super::{expect_ranks, relu, shape_error, Epilogue, Epilogues, Op, Recorder};
use crate::error::Result;
use crate::gpu::{
    groups_1d, storage_buffer, GpuContext, Kernels, Shader, Tensor, OFFSET_ALIGN_BYTES, WORKGROUP,
};

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
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
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
    groups: u32,
    _unused: u32,
}

/// Beats per split of the register-block weight gradient: enough work per invocation for a CPU
/// core, and the reduction still never runs over a whole large batch in one invocation.
const CPU_SPLIT_BEATS: u32 = 64;
/// Positions per staged chunk and output tile edge of `backward_weight_tiled` (TR, TM, TN).
const TILE: u32 = 32;
/// At most this many splits: the finalize pass adds a split's partials serially per weight, and
/// on the H100 1,496 splits of the first layer took 0.32 ms to add where its partials took 0.08.
const MAX_SPLITS: u32 = 128;
/// Invocations the register weight gradient aims for on a GPU: enough to fill a large one.
const TARGET_INVOCATIONS: u32 = 1 << 16;
/// Workgroups the tiled weight gradient aims for: a few per streaming multiprocessor of a large
/// GPU, so the split reduction fills it even at batch 32.
const TARGET_WORKGROUPS: u32 = 2048;

/// Inputs: x `[B, groups * Cin, L]`, weight `[Cout, Cin, K]`, bias `[Cout]`; output channel `co`
/// belongs to group `co / (Cout / groups)` and reads that group's `Cin` input channels. With
/// `relu`, the output is `max(conv, 0)` and the backward pass masks the incoming gradient with it.
pub struct Conv1d {
    pub padding: Padding,
    pub relu: bool,
    pub groups: usize,
}

impl Conv1d {
    /// A plain convolution (no fused activation).
    pub fn new(padding: Padding) -> Self {
        Self {
            padding,
            relu: false,
            groups: 1,
        }
    }

    /// Convolution followed by ReLU, in one op.
    pub fn with_relu(padding: Padding) -> Self {
        Self {
            padding,
            relu: true,
            groups: 1,
        }
    }

    /// The same convolution in `groups` independent groups.
    pub fn grouped(self, groups: usize) -> Self {
        Self { groups, ..self }
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
            c_in: w[1] as u32,
            c_out: w[0] as u32,
            len_in: x[2] as u32,
            len_out: len_out as u32,
            kernel: w[2] as u32,
            pad: pad as u32,
            relu: self.relu as u32,
            splits: 1,
            split_len: x[0] as u32,
            groups: self.groups as u32,
            _unused: 0,
        })
    }
}

/// Blocks of `block` channels that cover `per_group` channels in each of the layer's groups
/// (a block never straddles two groups: `out_block` in the shader).
fn blocks(p: &Params, per_group: u32, block: u32) -> u32 {
    p.groups * per_group.div_ceil(block)
}

/// Workgroups of the register forward and input-gradient kernels: lanes over (batch, blocks of
/// `positions` of `len` positions), workgroup row z = one block of 8 channels of
/// `per_group` (output or input) channels per group.
fn register_groups(p: &Params, len: u32, per_group: u32, positions: u32) -> [u32; 3] {
    let mut groups = groups_1d(p.batch as usize * len.div_ceil(positions) as usize);
    groups[2] = blocks(p, per_group, 8);
    groups
}

/// Workgroups of the register weight-gradient kernel: lanes over (4 input channels, tap) plus
/// the bias lane, `splits` rows, 8 output channels per z.
fn register_weight_groups(p: &Params, splits: u32) -> [u32; 3] {
    [
        (p.c_in.div_ceil(4) * p.kernel + 1).div_ceil(WORKGROUP),
        splits,
        blocks(p, p.c_out / p.groups, 8),
    ]
}

/// Workgroups of a tiled implicit GEMM: `n` columns (batch x positions) in tiles of 32, folded
/// over x and y like [`groups_1d`], and `m_tiles` tiles of 32 rows (channels) along z.
fn tile_groups(n: u32, m_tiles: u32) -> [u32; 3] {
    let tiles = n.div_ceil(TILE);
    let x = tiles.min(65_535);
    [x, tiles.div_ceil(x), m_tiles]
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
            let wanted = TARGET_INVOCATIONS
                .div_ceil(per_split)
                .clamp(1, p.batch.min(MAX_SPLITS));
            let len = p.batch.div_ceil(wanted);
            (p.batch.div_ceil(len), len)
        }
        Kernels::Tiled => {
            let total = p.batch * p.len_out;
            let tiles =
                blocks(p, p.c_out / p.groups, TILE) * (p.c_in * p.kernel + 1).div_ceil(TILE);
            let wanted = TARGET_WORKGROUPS
                .div_ceil(tiles)
                .clamp(1, total.div_ceil(TILE).min(MAX_SPLITS));
            let len = total.div_ceil(wanted).next_multiple_of(TILE);
            (total.div_ceil(len), len)
        }
    }
}

/// Every kernel choice of one layer, made once, from the adapter's kernel variant and the layer's
/// shape: the forward pass, the backward passes, and how the weight gradient's reduction is
/// split. Forward, backward and [`Op::reserve`] all read this one plan.
struct Plan {
    forward: (&'static str, [u32; 3]),
    backward_input: (&'static str, [u32; 3]),
    backward_weight: (&'static str, [u32; 3]),
    /// (splits, split_len) of the weight gradient's reduction ([`weight_grad_splits`]).
    splits: (u32, u32),
    /// Behind a fused ReLU, the backward kernels read the mask where they load dy, except on a
    /// CPU: there the mask loads inside the register kernels' inner loops cost more than one
    /// element-wise pass that masks dy first.
    mask_in_place: bool,
}

impl Plan {
    fn new(kernels: Kernels, p: &Params, relu: bool) -> Self {
        let splits = weight_grad_splits(kernels, p);
        let cols = p.c_in * p.kernel + 1;
        let per_group = p.c_out / p.groups;
        let tiled_input = (
            "backward_input_tiled",
            tile_groups(p.batch * p.len_in, blocks(p, p.c_in, TILE)),
        );
        match kernels {
            // register blocks with few, long invocations: what software Vulkan runs fastest
            Kernels::Cpu => Self {
                forward: ("forward_wide", register_groups(p, p.len_out, per_group, 8)),
                backward_input: ("backward_input", register_groups(p, p.len_in, p.c_in, 4)),
                backward_weight: ("backward_weight", register_weight_groups(p, splits.0)),
                splits,
                mask_in_place: false,
            },
            // the tiled input gradient measured faster on an H100 at every batch size, the
            // register forward and weight gradient did not (benchmarks/gpu/*-77bfbed.log)
            Kernels::Gpu => Self {
                forward: ("forward", register_groups(p, p.len_out, per_group, 4)),
                backward_input: tiled_input,
                backward_weight: ("backward_weight", register_weight_groups(p, splits.0)),
                splits,
                mask_in_place: relu,
            },
            // 32 positions x 32 channels per workgroup throughout
            Kernels::Tiled => Self {
                forward: (
                    "forward_tiled",
                    tile_groups(p.batch * p.len_out, blocks(p, per_group, TILE)),
                ),
                backward_input: tiled_input,
                backward_weight: (
                    "backward_weight_tiled",
                    [cols.div_ceil(TILE), blocks(p, per_group, TILE), splits.0],
                ),
                splits,
                mask_in_place: relu,
            },
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
        let g = self.groups;
        if g == 0 || w[0] % g != 0 {
            return Err(shape_error(
                "conv1d",
                format!("{g} groups do not divide the weight {w:?}'s output channels"),
            ));
        }
        if w[1] * g != x[1] {
            return Err(shape_error(
                "conv1d",
                format!(
                    "input has {} channels, weight {:?} in {g} groups expects {}",
                    x[1],
                    w,
                    w[1] * g
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

    fn reserve(&self, ctx: &GpuContext, inputs: &[&[usize]], epilogues: &mut Epilogues) {
        if let Ok(p) = self.params(inputs[0], inputs[1]) {
            let (splits, _) = Plan::new(ctx.kernels, &p, self.relu).splits;
            epilogues.get_or_default::<DeferredFinalize>().capacity +=
                partials_len(&p, splits).next_multiple_of(ALIGN_ELEMS);
        }
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let (x, w, b) = (inputs[0], inputs[1], inputs[2]);
        let p = self.params(x.shape(), w.shape())?;
        let (entry, groups) = Plan::new(rec.ctx.kernels, &p, self.relu).forward;
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
        let plan = Plan::new(rec.ctx.kernels, &p, self.relu);
        // behind a fused ReLU: the mask read in place (MASKED specialises the kernels), or a
        // pass that masks dy first
        let mask_in_place = plan.mask_in_place;
        let masked;
        let mut dy = dy;
        if self.relu && !mask_in_place {
            masked = rec.scratch(dy.shape());
            relu::mask_gradient(rec, &saved[0], dy, &masked)?;
            dy = &masked;
        }
        let constants: &[(&'static str, f64)] = &[("MASKED", f64::from(u8::from(mask_in_place)))];
        // without a mask in place the mask binding is never read: dy stands in for it
        let mask = if mask_in_place { &saved[0] } else { dy };
        if let Some(dx) = grad_inputs[0] {
            let (entry, groups) = plan.backward_input;
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
        let (splits, split_len) = plan.splits;
        p.splits = splits;
        p.split_len = split_len;
        let cols = p.c_in * p.kernel + 1;
        let shape = [splits as usize, p.c_out as usize, cols as usize];
        // into the graph's shared arena (one finalize for all layers) when both gradients go
        // to their own destinations, else into scratch with a finalize of its own
        let ctx = rec.ctx;
        let arena = rec
            .epilogues
            .as_deref_mut()
            .and_then(|e| e.get_mut::<DeferredFinalize>());
        let deferred = dw.zip(db).filter(|_| arena.is_some());
        let partial = match (arena, deferred) {
            (Some(arena), Some(_)) => arena.alloc(ctx, &shape),
            _ => rec.scratch(&shape),
        };
        let (entry, groups) = plan.backward_weight;
        let bindings = [
            (1, x.binding()),
            (5, dy.binding()),
            (7, partial.binding()),
            (8, mask.binding()),
        ];
        rec.push_with(&SHADER, entry, constants, &p, &bindings, groups)?;
        let arena = rec
            .epilogues
            .as_deref_mut()
            .and_then(|e| e.get_mut::<DeferredFinalize>());
        if let (Some(arena), Some((dw, db))) = (arena, deferred) {
            arena.push(p, partial, dw.clone(), db.clone());
            return Ok(());
        }
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
        finalize(rec, &p, &partial, dw, db)
    }
}

/// Records the pass that adds one layer's partial sums into dw and db.
fn finalize(
    rec: &mut Recorder,
    p: &Params,
    partial: &Tensor,
    dw: &Tensor,
    db: &Tensor,
) -> Result<()> {
    let cols = p.c_in * p.kernel + 1;
    rec.push(
        &SHADER,
        "weight_grad_finalize",
        p,
        &[
            (7, partial.binding()),
            (9, dw.binding()),
            (10, db.binding()),
        ],
        groups_1d((p.c_out * cols) as usize),
    )
}

/// Elements of one layer's partial sums: splits x c_out x (c_in K + 1).
fn partials_len(p: &Params, splits: u32) -> usize {
    (splits * p.c_out * (p.c_in * p.kernel + 1)) as usize
}

/// Storage-buffer views must start on 256-byte boundaries: 64 f32.
const ALIGN_ELEMS: usize = (OFFSET_ALIGN_BYTES / 4) as usize;

/// The weight-gradient partial sums of a whole backward pass in one buffer, so that one
/// finalize dispatch after the last layer adds them all (instead of one per layer): conv1d's
/// [`Epilogue`]. Each layer reserves its share ([`Op::reserve`]); its backward takes a slice with
/// `alloc` and registers it with `push`; the graph records the finalize after the backward pass.
#[derive(Default)]
pub struct DeferredFinalize {
    /// Created at the first `alloc`, once every layer has reserved its share.
    partials: Option<std::sync::Arc<wgpu::Buffer>>,
    capacity: usize,
    used: usize,
    segments: Vec<(Params, Tensor, Tensor, Tensor)>,
}

/// One layer in the finalize table (`Segment` in shaders/conv1d.wgsl), offsets in f32 elements.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Segment {
    partial: u32,
    outputs: u32,
    cols: u32,
    splits: u32,
    dw: u32,
    db: u32,
    first: u32,
    _unused: u32,
}

impl DeferredFinalize {
    /// A zero-filled slice of `shape` for one layer's partial sums.
    fn alloc(&mut self, ctx: &GpuContext, shape: &[usize]) -> Tensor {
        let n: usize = shape.iter().product();
        assert!(
            self.used + n <= self.capacity,
            "reserve undercounted the partial sums"
        );
        let capacity = self.capacity;
        let partials = self.partials.get_or_insert_with(|| {
            std::sync::Arc::new(storage_buffer(ctx, capacity as u64 * 4, "partials"))
        });
        let t = Tensor::view(partials.clone(), self.used as u64 * 4, shape);
        self.used += n.next_multiple_of(ALIGN_ELEMS);
        t
    }

    fn push(&mut self, p: Params, partial: Tensor, dw: Tensor, db: Tensor) {
        self.segments.push((p, partial, dw, db));
    }
}

impl Epilogue for DeferredFinalize {
    /// Records the finalize: one dispatch when every dw and db lives in one buffer (a model's
    /// flat gradient buffer), else one per layer.
    fn record(self: Box<Self>, rec: &mut Recorder) -> Result<()> {
        let (Some((_, _, first_dw, _)), Some(all_partials)) =
            (self.segments.first(), self.partials.clone())
        else {
            return Ok(());
        };
        let shared = self
            .segments
            .iter()
            .all(|(_, _, dw, db)| dw.same_buffer(first_dw) && db.same_buffer(first_dw));
        if !shared {
            for (p, partial, dw, db) in &self.segments {
                finalize(rec, p, partial, dw, db)?;
            }
            return Ok(());
        }
        let mut table = Vec::with_capacity(self.segments.len());
        let mut total = 0u32;
        for (p, partial, dw, db) in &self.segments {
            let cols = p.c_in * p.kernel + 1;
            table.push(Segment {
                partial: (partial.offset() / 4) as u32,
                outputs: p.c_out * cols,
                cols,
                splits: p.splits,
                dw: (dw.offset() / 4) as u32,
                db: (db.offset() / 4) as u32,
                first: total,
                _unused: 0,
            });
            total += p.c_out * cols;
        }
        let table_t = Tensor::zeros(rec.ctx, &[table.len() * 8]);
        table_t.write::<u32>(rec.ctx, bytemuck::cast_slice(&table))?;
        let buffer = first_dw.buffer();
        let grads = Tensor::whole(
            std::sync::Arc::new(buffer.clone()),
            &[(buffer.size() / 4) as usize],
        );
        let partials = Tensor::whole(all_partials, &[self.capacity]);
        let params = Params {
            splits: table.len() as u32,
            split_len: total,
            ..self.segments[0].0
        };
        rec.push(
            &SHADER,
            "weight_grad_finalize_all",
            &params,
            &[
                (7, partials.binding()),
                (11, table_t.binding()),
                (12, grads.binding()),
            ],
            groups_1d(total as usize),
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
    reference_forward_grouped(x, w, bias, padding, 1)
}

/// [`reference_forward`] in `groups` groups: output channel `co` of group `g` reads input
/// channels `g * Cin + ci` (`Cin` the weight's dim 1).
pub fn reference_forward_grouped(
    x: &Array3<f64>,
    w: &Array3<f64>,
    bias: &Array1<f64>,
    padding: Padding,
    groups: usize,
) -> Array3<f64> {
    let (batch, _, len) = x.dim();
    let (c_out, c_in, k) = w.dim();
    let per = c_out / groups;
    let (pad, len_out) = padding.geometry(len, k).expect("input shorter than kernel");
    let mut y = Array3::zeros((batch, c_out, len_out));
    for b in 0..batch {
        for co in 0..c_out {
            for l in 0..len_out {
                let mut acc = bias[co];
                for ci in 0..c_in {
                    let xc = co / per * c_in + ci;
                    for t in 0..k {
                        let src = l as isize + t as isize - pad as isize;
                        if src >= 0 && (src as usize) < len {
                            acc += w[[co, ci, t]] * x[[b, xc, src as usize]];
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
    reference_backward_grouped(x, w, dy, padding, 1)
}

/// [`reference_backward`] of [`reference_forward_grouped`].
pub fn reference_backward_grouped(
    x: &Array3<f64>,
    w: &Array3<f64>,
    dy: &Array3<f64>,
    padding: Padding,
    groups: usize,
) -> (Array3<f64>, Array3<f64>, Array1<f64>) {
    let (batch, _, len) = x.dim();
    let (c_out, c_in, k) = w.dim();
    let per = c_out / groups;
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
                    let xc = co / per * c_in + ci;
                    for t in 0..k {
                        let src = l as isize + t as isize - pad as isize;
                        if src >= 0 && (src as usize) < len {
                            dx[[b, xc, src as usize]] += g * w[[co, ci, t]];
                            dw[[co, ci, t]] += g * x[[b, xc, src as usize]];
                        }
                    }
                }
            }
        }
    }
    (dx, dw, db)
}
