//! Joining and slicing along the feature axis of `[batch, features]` matrices: how the
//! dual-stream network (`paper-rr`) joins the rhythm features to the flattened beat-shape
//! features before Dense_1, and how it takes the beat and the rhythm apart from one input row.
//!
//! Both are column copies (`shaders/columns.wgsl`): Concat's backward is Columns' forward on the
//! output gradient, and Columns' backward is Concat's forward with zeros around.

use ndarray::{s, Array2, ArrayD, Axis, Ix2};

use super::{expect_ranks, shape_error, Op, Recorder};
use crate::error::Result;
use crate::gpu::{groups_1d, Shader, Tensor};

pub static SHADER: Shader = Shader {
    name: "columns",
    source: include_str!("../../shaders/columns.wgsl"),
};

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    width: u32,
    src_cols: u32,
    src_off: u32,
    dst_cols: u32,
    dst_off: u32,
    src_group: u32,
    dst_group: u32,
}

/// Columns of a row-major `[rows, *]` matrix: group g's block starts at column
/// `offset + g * step`.
type Block<'a> = (&'a Tensor, usize, usize);

/// Records `dst[:, dst_off..dst_off + width] = src[:, src_off..src_off + width]` for
/// row-major `[rows, *]` matrices.
fn copy_columns(
    rec: &mut Recorder,
    (src, src_off): (&Tensor, usize),
    (dst, dst_off): (&Tensor, usize),
    width: usize,
) -> Result<()> {
    columns(
        rec,
        "copy_columns",
        (src, src_off, 0),
        (dst, dst_off, 0),
        width,
        1,
    )
}

/// [`copy_columns`] that adds into `dst` instead of overwriting it.
fn add_columns(
    rec: &mut Recorder,
    (src, src_off): (&Tensor, usize),
    (dst, dst_off): (&Tensor, usize),
    width: usize,
) -> Result<()> {
    columns(
        rec,
        "add_columns",
        (src, src_off, 0),
        (dst, dst_off, 0),
        width,
        1,
    )
}

/// Records `entry` over `groups` blocks of `width` columns in one dispatch.
fn columns(
    rec: &mut Recorder,
    entry: &'static str,
    (src, src_off, src_group): Block,
    (dst, dst_off, dst_group): Block,
    width: usize,
    groups: usize,
) -> Result<()> {
    let rows = dst.shape()[0];
    let params = Params {
        rows: rows as u32,
        width: width as u32,
        src_cols: (src.numel() / rows) as u32,
        src_off: src_off as u32,
        dst_cols: (dst.numel() / rows) as u32,
        dst_off: dst_off as u32,
        src_group: src_group as u32,
        dst_group: dst_group as u32,
    };
    let mut workgroups = groups_1d(rows * width);
    workgroups[2] = groups as u32;
    rec.push(
        &SHADER,
        entry,
        &params,
        &[(1, src.binding()), (2, dst.binding())],
        workgroups,
    )
}

/// `[B, Fa]` and `[B, Fb]` → `[B, Fa + Fb]`: the first input's features, then the second's.
pub struct Concat;

impl Op for Concat {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        GroupedConcat { groups: 1 }.output_shape(inputs)
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        GroupedConcat { groups: 1 }.forward(rec, inputs, output)
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        saved: &[Tensor],
        grad_output: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        GroupedConcat { groups: 1 }.backward(rec, inputs, saved, grad_output, grad_inputs)
    }
}

/// [`Concat`] for a grouped network (several networks run as one): `[B, groups * Fa]` and a
/// shared `[B, Fb]` → `[B, groups * (Fa + Fb)]`, each group's features then the shared ones, so
/// that each group's Dense_1 ([`super::dense::GroupedDense`]) sees the row its network would.
/// The shared input's gradient is the sum over the groups.
pub struct GroupedConcat {
    pub groups: usize,
}

impl Op for GroupedConcat {
    fn name(&self) -> &'static str {
        "concat"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        expect_ranks("concat", inputs, &[2, 2])?;
        let (a, b, g) = (inputs[0], inputs[1], self.groups);
        if a[0] != b[0] || g == 0 || a[1] % g != 0 {
            return Err(shape_error(
                "concat",
                format!("{a:?} in {g} groups and {b:?} do not fit"),
            ));
        }
        Ok(vec![a[0], a[1] + g * b[1]])
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let (fa, fb, g) = (
            inputs[0].shape()[1] / self.groups,
            inputs[1].shape()[1],
            self.groups,
        );
        // every group's own features, then the shared ones into every group's row
        let (a, b) = ((inputs[0], 0, fa), (inputs[1], 0, 0));
        columns(rec, "copy_columns", a, (output, 0, fa + fb), fa, g)?;
        columns(rec, "copy_columns", b, (output, fa, fa + fb), fb, g)?;
        Ok(vec![])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        _saved: &[Tensor],
        grad_output: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        let (fa, fb, g) = (
            inputs[0].shape()[1] / self.groups,
            inputs[1].shape()[1],
            self.groups,
        );
        if let Some(da) = grad_inputs[0] {
            columns(
                rec,
                "copy_columns",
                (grad_output, 0, fa + fb),
                (da, 0, fa),
                fa,
                g,
            )?;
        }
        // the shared input's gradient: the groups' columns added one group at a time, in order
        if let Some(db) = grad_inputs[1] {
            for g in 0..g {
                let at = g * (fa + fb) + fa;
                match g {
                    0 => copy_columns(rec, (grad_output, at), (db, 0), fb)?,
                    _ => add_columns(rec, (grad_output, at), (db, 0), fb)?,
                }
            }
        }
        Ok(())
    }
}

/// CPU reference of [`GroupedConcat`].
pub fn reference_grouped_concat(a: &ArrayD<f64>, b: &ArrayD<f64>, groups: usize) -> ArrayD<f64> {
    let a = a.view().into_dimensionality::<Ix2>().expect("rank 2");
    let fa = a.ncols() / groups;
    let parts: Vec<ArrayD<f64>> = (0..groups)
        .map(|g| {
            let ag = a.slice(s![.., g * fa..(g + 1) * fa]).to_owned().into_dyn();
            reference_concat(&ag, b)
        })
        .collect();
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(1), &views).expect("one batch")
}

/// `[B, F]` → `[B, width]`: features `start..start + width` of every row.
pub struct Columns {
    pub start: usize,
    pub width: usize,
}

impl Op for Columns {
    fn name(&self) -> &'static str {
        "columns"
    }

    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        expect_ranks("columns", inputs, &[2])?;
        let x = inputs[0];
        if self.width == 0 || self.start + self.width > x[1] {
            return Err(shape_error(
                "columns",
                format!(
                    "columns {}..{} of {x:?}",
                    self.start,
                    self.start + self.width
                ),
            ));
        }
        Ok(vec![x[0], self.width])
    }

    fn forward(
        &self,
        rec: &mut Recorder,
        inputs: &[&Tensor],
        output: &Tensor,
    ) -> Result<Vec<Tensor>> {
        copy_columns(rec, (inputs[0], self.start), (output, 0), self.width)?;
        Ok(vec![])
    }

    fn backward(
        &self,
        rec: &mut Recorder,
        _inputs: &[&Tensor],
        _saved: &[Tensor],
        grad_output: &Tensor,
        grad_inputs: &[Option<&Tensor>],
    ) -> Result<()> {
        let Some(dx) = grad_inputs[0] else {
            return Ok(());
        };
        let rows = dx.shape()[0];
        let params = Params {
            rows: rows as u32,
            width: 0,
            src_cols: 0,
            src_off: 0,
            dst_cols: (dx.numel() / rows) as u32,
            dst_off: 0,
            src_group: 0,
            dst_group: 0,
        };
        rec.push(
            &SHADER,
            "zero",
            &params,
            &[(2, dx.binding())],
            groups_1d(dx.numel()),
        )?;
        copy_columns(rec, (grad_output, 0), (dx, self.start), self.width)
    }
}

fn two_d(a: &ArrayD<f64>) -> Array2<f64> {
    a.clone()
        .into_dimensionality::<Ix2>()
        .expect("a [batch, features] matrix")
}

/// f64 reference of [`Concat`].
pub fn reference_concat(a: &ArrayD<f64>, b: &ArrayD<f64>) -> ArrayD<f64> {
    ndarray::concatenate(Axis(1), &[two_d(a).view(), two_d(b).view()])
        .expect("same batch")
        .as_standard_layout()
        .to_owned()
        .into_dyn()
}

/// f64 reference of [`Concat`]'s backward: the output gradient's columns for each input.
pub fn reference_concat_backward(dy: &ArrayD<f64>, fa: usize) -> (ArrayD<f64>, ArrayD<f64>) {
    let dy = two_d(dy);
    (
        dy.slice(s![.., ..fa]).to_owned().into_dyn(),
        dy.slice(s![.., fa..]).to_owned().into_dyn(),
    )
}

/// f64 reference of [`Columns`].
pub fn reference_columns(x: &ArrayD<f64>, start: usize, width: usize) -> ArrayD<f64> {
    two_d(x)
        .slice(s![.., start..start + width])
        .to_owned()
        .into_dyn()
}

/// f64 reference of [`Columns`]' backward: the output gradient in its columns, zeros elsewhere.
pub fn reference_columns_backward(dy: &ArrayD<f64>, features: usize, start: usize) -> ArrayD<f64> {
    let dy = two_d(dy);
    let mut dx = Array2::zeros((dy.nrows(), features));
    dx.slice_mut(s![.., start..start + dy.ncols()]).assign(&dy);
    dx.into_dyn()
}
