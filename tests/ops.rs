//! Every op: GPU forward and backward against the f64 CPU reference, and the GPU gradient
//! against central differences of that reference.

mod common;

use common::*;
use ecgwgpu::ops::add::Add;
use ecgwgpu::ops::concat::{self, Columns, Concat, GroupedConcat};
use ecgwgpu::ops::conv1d::{self, Conv1d, Padding};
use ecgwgpu::ops::dense::{self, Dense, GroupedDense};
use ecgwgpu::ops::dropout::{self, Dropout};
use ecgwgpu::ops::maxpool1d::{self, MaxPool1d};
use ecgwgpu::ops::relu::{self, Relu};
use ecgwgpu::ops::Op;
use ecgwgpu::rng::Rng;
use ndarray::{Array1, Array2, Array3, ArrayD, Ix1, Ix2, Ix3};

const RTOL: f64 = 1e-4;
const ATOL: f64 = 1e-5;

fn a3(a: &ArrayD<f64>) -> Array3<f64> {
    a.clone().into_dimensionality::<Ix3>().unwrap()
}
fn a2(a: &ArrayD<f64>) -> Array2<f64> {
    a.clone().into_dimensionality::<Ix2>().unwrap()
}
fn a1(a: &ArrayD<f64>) -> Array1<f64> {
    a.clone().into_dimensionality::<Ix1>().unwrap()
}

/// (batch, c_in, c_out, len, kernel, padding): odd lengths, batch 1, channel counts that are not
/// multiples of the 4-wide register block or of the workgroup size, even kernels.
const CONV_CASES: &[(usize, usize, usize, usize, usize, Padding)] = &[
    (1, 1, 3, 7, 5, Padding::Same),
    (2, 3, 5, 13, 3, Padding::Same),
    (3, 5, 7, 11, 4, Padding::Same),
    (2, 2, 6, 9, 5, Padding::Valid),
    (2, 3, 70, 23, 5, Padding::Same),
    (1, 1, 1, 5, 5, Padding::Valid),
];

/// The reference of `Conv1d { relu }`: the output, and the gradient the convolution itself sees
/// (dy masked by the ReLU).
fn conv_reference(
    x: &ArrayD<f64>,
    w: &ArrayD<f64>,
    bias: &ArrayD<f64>,
    dy: &ArrayD<f64>,
    pad: Padding,
    relu: bool,
) -> (ArrayD<f64>, Array3<f64>) {
    let y = conv1d::reference_forward(&a3(x), &a3(w), &a1(bias), pad).into_dyn();
    if !relu {
        return (y, a3(dy));
    }
    let dy_eff = a3(&relu::reference_backward(&y, dy));
    (relu::reference_forward(&y), dy_eff)
}

#[test]
fn conv1d_matches_reference() {
    for (kernels, ctx) in variants() {
        let mut rng = Rng::new(1);
        for relu in [false, true] {
            for &(b, ci, co, l, k, pad) in CONV_CASES {
                let x = rand_array(&mut rng, &[b, ci, l]);
                let w = rand_array(&mut rng, &[co, ci, k]);
                let bias = rand_array(&mut rng, &[co]);
                let len_out = pad.geometry(l, k).unwrap().1;
                let dy = rand_array(&mut rng, &[b, co, len_out]);
                let (y_ref, dy_eff) = conv_reference(&x, &w, &bias, &dy, pad, relu);
                let op = Conv1d {
                    padding: pad,
                    relu,
                    groups: 1,
                };
                let inputs = [x.clone(), w.clone(), bias.clone()];
                let (y, grads) = run_op_on(ctx, op, &inputs, &dy, 0);
                let case = format!("{kernels:?} relu={relu} {:?}", (b, ci, co, l, k, pad));
                assert_close(
                    &format!("conv1d forward {case}"),
                    &y,
                    &flat(&y_ref),
                    RTOL,
                    ATOL,
                );
                let (dx, dw, db) = conv1d::reference_backward(&a3(&x), &a3(&w), &dy_eff, pad);
                for (name, gpu, cpu) in [
                    ("dx", &grads[0], dx.into_dyn()),
                    ("dw", &grads[1], dw.into_dyn()),
                    ("db", &grads[2], db.into_dyn()),
                ] {
                    assert_close(
                        &format!("conv1d {name} {case}"),
                        gpu,
                        &flat(&cpu),
                        RTOL,
                        ATOL,
                    );
                }
            }
        }
    }
}

/// The weight gradient's split reduction on a batch long enough to need several splits in both
/// variants (the register kernel splits every 16 beats, the tiled one every few chunks).
#[test]
fn conv1d_weight_gradient_splits_over_a_long_batch() {
    for (kernels, ctx) in variants() {
        let mut rng = Rng::new(5);
        let (b, ci, co, l, k, pad) = (37, 3, 9, 29, 5, Padding::Same);
        let x = rand_array(&mut rng, &[b, ci, l]);
        let w = rand_array(&mut rng, &[co, ci, k]);
        let bias = rand_array(&mut rng, &[co]);
        let dy = rand_array(&mut rng, &[b, co, l]);
        let (_, dy_eff) = conv_reference(&x, &w, &bias, &dy, pad, true);
        let op = Conv1d::with_relu(pad);
        let (_, grads) = run_op_on(ctx, op, &[x.clone(), w.clone(), bias], &dy, 0);
        let (_, dw, db) = conv1d::reference_backward(&a3(&x), &a3(&w), &dy_eff, pad);
        assert_close(
            &format!("{kernels:?} dw"),
            &grads[1],
            &flat(&dw.into_dyn()),
            RTOL,
            ATOL,
        );
        assert_close(
            &format!("{kernels:?} db"),
            &grads[2],
            &flat(&db.into_dyn()),
            RTOL,
            ATOL,
        );
    }
}

#[test]
fn conv1d_gradient_check() {
    for (kernels, ctx) in variants() {
        let mut rng = Rng::new(2);
        for (case, &(b, ci, co, l, k, pad)) in CONV_CASES[..4].iter().enumerate() {
            // alternate plain and fused-ReLU convolutions
            let relu = case % 2 == 1;
            let x = rand_array(&mut rng, &[b, ci, l]);
            let w = rand_array(&mut rng, &[co, ci, k]);
            let bias = rand_array(&mut rng, &[co]);
            let len_out = pad.geometry(l, k).unwrap().1;
            let dy = rand_array(&mut rng, &[b, co, len_out]);
            let op = Conv1d {
                padding: pad,
                relu,
                groups: 1,
            };
            let (_, grads) = run_op_on(ctx, op, &[x.clone(), w.clone(), bias.clone()], &dy, 0);
            let loss = |x: &ArrayD<f64>, w: &ArrayD<f64>, bias: &ArrayD<f64>| {
                dot(&conv_reference(x, w, bias, &dy, pad, relu).0, &dy)
            };
            let nx = numeric_grad(&x, |x| loss(x, &w, &bias));
            let nw = numeric_grad(&w, |w| loss(&x, w, &bias));
            let nb = numeric_grad(&bias, |bias| loss(&x, &w, bias));
            let what = format!("{kernels:?} relu={relu} conv1d numeric");
            assert_close(&format!("{what} dx"), &grads[0], &flat(&nx), 1e-3, 1e-4);
            assert_close(&format!("{what} dw"), &grads[1], &flat(&nw), 1e-3, 1e-4);
            assert_close(&format!("{what} db"), &grads[2], &flat(&nb), 1e-3, 1e-4);
        }
    }
}

/// (batch, c_in per group, c_out, len, kernel, padding, groups): groups of 5 and of 40 output
/// channels, so that register blocks (8) and tiles (32) end inside a group; one input channel per
/// group, and a group count that is not a power of two.
const GROUPED_CASES: &[(usize, usize, usize, usize, usize, Padding, usize)] = &[
    (2, 3, 10, 13, 3, Padding::Same, 2),
    (1, 1, 15, 11, 5, Padding::Same, 3),
    (3, 4, 120, 9, 5, Padding::Same, 3),
    (2, 2, 12, 8, 4, Padding::Valid, 4),
];

/// Grouped convolutions, every kernel variant: forward and the three gradients against the f64
/// reference, the gradients against central differences, and the output equal, group by group
/// and bit for bit, to each group run as a convolution of its own (what an ensemble run as one
/// network relies on).
#[test]
fn grouped_conv1d_matches_reference_and_each_group_alone() {
    for (kernels, ctx) in variants() {
        let mut rng = Rng::new(11);
        for (case, &(b, ci, co, l, k, pad, groups)) in GROUPED_CASES.iter().enumerate() {
            let relu = case % 2 == 0;
            let x = rand_array(&mut rng, &[b, ci * groups, l]);
            let w = rand_array(&mut rng, &[co, ci, k]);
            let bias = rand_array(&mut rng, &[co]);
            let len_out = pad.geometry(l, k).unwrap().1;
            let dy = rand_array(&mut rng, &[b, co, len_out]);
            let reference = |x: &ArrayD<f64>, w: &ArrayD<f64>, bias: &ArrayD<f64>| {
                let y = conv1d::reference_forward_grouped(&a3(x), &a3(w), &a1(bias), pad, groups)
                    .into_dyn();
                match relu {
                    true => relu::reference_forward(&y),
                    false => y,
                }
            };
            let y_ref = reference(&x, &w, &bias);
            let dy_eff = match relu {
                true => a3(&relu::reference_backward(&y_ref, &dy)),
                false => a3(&dy),
            };
            let op = Conv1d {
                padding: pad,
                relu,
                groups,
            };
            let (y, grads) = run_op_on(ctx, op, &[x.clone(), w.clone(), bias.clone()], &dy, 0);
            let what = format!("{kernels:?} grouped {:?}", GROUPED_CASES[case]);
            assert_close(&format!("{what} forward"), &y, &flat(&y_ref), RTOL, ATOL);
            let (dx, dw, db) =
                conv1d::reference_backward_grouped(&a3(&x), &a3(&w), &dy_eff, pad, groups);
            for (name, gpu, cpu) in [
                ("dx", &grads[0], dx.into_dyn()),
                ("dw", &grads[1], dw.into_dyn()),
                ("db", &grads[2], db.into_dyn()),
            ] {
                assert_close(&format!("{what} {name}"), gpu, &flat(&cpu), RTOL, ATOL);
            }
            let loss = |x: &ArrayD<f64>, w: &ArrayD<f64>, bias: &ArrayD<f64>| {
                dot(&reference(x, w, bias), &dy)
            };
            let nx = numeric_grad(&x, |x| loss(x, &w, &bias));
            let nw = numeric_grad(&w, |w| loss(&x, w, &bias));
            let nb = numeric_grad(&bias, |bias| loss(&x, &w, bias));
            assert_close(
                &format!("{what} numeric dx"),
                &grads[0],
                &flat(&nx),
                1e-3,
                1e-4,
            );
            assert_close(
                &format!("{what} numeric dw"),
                &grads[1],
                &flat(&nw),
                1e-3,
                1e-4,
            );
            assert_close(
                &format!("{what} numeric db"),
                &grads[2],
                &flat(&nb),
                1e-3,
                1e-4,
            );
            // each group on its own, as a plain convolution of the same variant
            let per = co / groups;
            for g in 0..groups {
                let xg = x
                    .slice(ndarray::s![.., g * ci..(g + 1) * ci, ..])
                    .to_owned()
                    .into_dyn();
                let wg = w.slice(ndarray::s![g * per..(g + 1) * per, .., ..]);
                let bg = bias.slice(ndarray::s![g * per..(g + 1) * per]);
                let dyg = dy.slice(ndarray::s![.., g * per..(g + 1) * per, ..]);
                let alone = Conv1d {
                    padding: pad,
                    relu,
                    groups: 1,
                };
                let inputs = [xg, wg.to_owned().into_dyn(), bg.to_owned().into_dyn()];
                let (yg, _) = run_op_on(ctx, alone, &inputs, &dyg.to_owned().into_dyn(), 0);
                let y3 = ndarray::ArrayView3::from_shape((b, co, len_out), &y).unwrap();
                let part: Vec<f32> = y3
                    .slice(ndarray::s![.., g * per..(g + 1) * per, ..])
                    .iter()
                    .copied()
                    .collect();
                assert_eq!(
                    part, yg,
                    "{what}: group {g} differs from the group run alone"
                );
            }
        }
    }
}

/// A grouped convolution refuses inputs whose channels do not fit its groups.
#[test]
fn grouped_conv1d_checks_its_channels() {
    let op = Conv1d::with_relu(Padding::Same).grouped(3);
    assert!(op.output_shape(&[&[2, 6, 10], &[9, 2, 5], &[9]]).is_ok());
    assert!(op.output_shape(&[&[2, 6, 10], &[8, 2, 5], &[8]]).is_err());
    assert!(op.output_shape(&[&[2, 5, 10], &[9, 2, 5], &[9]]).is_err());
}

/// (batch, in, out): batch 1, sizes that are not multiples of the 16-wide tile.
const DENSE_CASES: &[(usize, usize, usize)] =
    &[(1, 3, 2), (5, 17, 33), (40, 256, 128), (7, 128, 5)];

/// (batch, in, out per group, groups)
const GROUPED_DENSE_CASES: &[(usize, usize, usize, usize)] =
    &[(3, 5, 2, 3), (17, 40, 33, 2), (2, 1, 1, 15)];

/// Grouped dense layers: forward and gradients against the f64 reference (each group's layer on
/// its own columns), gradients against central differences, and the output equal bit for bit to
/// each group's layer run alone.
#[test]
fn grouped_dense_matches_reference_and_each_group_alone() {
    let mut rng = Rng::new(12);
    for &(b, i, o, groups) in GROUPED_DENSE_CASES {
        let x = rand_array(&mut rng, &[b, groups * i]);
        let w = rand_array(&mut rng, &[groups * o, i]);
        let bias = rand_array(&mut rng, &[groups * o]);
        let dy = rand_array(&mut rng, &[b, groups * o]);
        let what = format!("grouped dense {:?}", (b, i, o, groups));
        let op = GroupedDense { groups };
        let (y, grads) = run_op(op, &[x.clone(), w.clone(), bias.clone()], &dy, 0);
        let forward = |x: &ArrayD<f64>, w: &ArrayD<f64>, bias: &ArrayD<f64>| {
            dense::reference_forward_grouped(&a2(x), &a2(w), &a1(bias), groups).into_dyn()
        };
        assert_close(&what, &y, &flat(&forward(&x, &w, &bias)), RTOL, ATOL);
        let loss =
            |x: &ArrayD<f64>, w: &ArrayD<f64>, bias: &ArrayD<f64>| dot(&forward(x, w, bias), &dy);
        let nx = numeric_grad(&x, |x| loss(x, &w, &bias));
        let nw = numeric_grad(&w, |w| loss(&x, w, &bias));
        let nb = numeric_grad(&bias, |bias| loss(&x, &w, bias));
        assert_close(&format!("{what} dx"), &grads[0], &flat(&nx), 1e-3, 1e-4);
        assert_close(&format!("{what} dw"), &grads[1], &flat(&nw), 1e-3, 1e-4);
        assert_close(&format!("{what} db"), &grads[2], &flat(&nb), 1e-3, 1e-4);
        let y2 = Array2::from_shape_vec((b, groups * o), y).unwrap();
        for g in 0..groups {
            let inputs = [
                x.slice(ndarray::s![.., g * i..(g + 1) * i])
                    .to_owned()
                    .into_dyn(),
                w.slice(ndarray::s![g * o..(g + 1) * o, ..])
                    .to_owned()
                    .into_dyn(),
                bias.slice(ndarray::s![g * o..(g + 1) * o])
                    .to_owned()
                    .into_dyn(),
            ];
            let dyg = dy
                .slice(ndarray::s![.., g * o..(g + 1) * o])
                .to_owned()
                .into_dyn();
            let (alone, _) = run_op(Dense, &inputs, &dyg, 0);
            let part: Vec<f32> = y2
                .slice(ndarray::s![.., g * o..(g + 1) * o])
                .iter()
                .copied()
                .collect();
            assert_eq!(
                part, alone,
                "{what}: group {g} differs from its layer alone"
            );
        }
    }
    assert!(GroupedDense { groups: 2 }
        .output_shape(&[&[4, 6], &[5, 3], &[5]])
        .is_err());
}

#[test]
fn dense_matches_reference_and_gradient_check() {
    let mut rng = Rng::new(3);
    for (case, &(b, i, o)) in DENSE_CASES.iter().enumerate() {
        let x = rand_array(&mut rng, &[b, i]);
        let w = rand_array(&mut rng, &[o, i]);
        let bias = rand_array(&mut rng, &[o]);
        let dy = rand_array(&mut rng, &[b, o]);
        let (y, grads) = run_op(Dense, &[x.clone(), w.clone(), bias.clone()], &dy, 0);
        let y_ref = dense::reference_forward(&a2(&x), &a2(&w), &a1(&bias));
        assert_close("dense forward", &y, &flat(&y_ref.into_dyn()), RTOL, ATOL);
        let (dx, dw, db) = dense::reference_backward(&a2(&x), &a2(&w), &a2(&dy));
        assert_close("dense dx", &grads[0], &flat(&dx.into_dyn()), RTOL, ATOL);
        assert_close("dense dw", &grads[1], &flat(&dw.into_dyn()), RTOL, ATOL);
        assert_close("dense db", &grads[2], &flat(&db.into_dyn()), RTOL, ATOL);
        if case < 2 {
            let loss = |x: &ArrayD<f64>, w: &ArrayD<f64>, bias: &ArrayD<f64>| {
                dot(
                    &dense::reference_forward(&a2(x), &a2(w), &a1(bias)).into_dyn(),
                    &dy,
                )
            };
            assert_close(
                "dense numeric dx",
                &grads[0],
                &flat(&numeric_grad(&x, |x| loss(x, &w, &bias))),
                1e-3,
                1e-4,
            );
            assert_close(
                "dense numeric dw",
                &grads[1],
                &flat(&numeric_grad(&w, |w| loss(&x, w, &bias))),
                1e-3,
                1e-4,
            );
            assert_close(
                "dense numeric db",
                &grads[2],
                &flat(&numeric_grad(&bias, |b| loss(&x, &w, b))),
                1e-3,
                1e-4,
            );
        }
    }
}

#[test]
fn relu_matches_reference_and_gradient_check() {
    let mut rng = Rng::new(4);
    for shape in [vec![1usize, 1, 5], vec![3, 7, 67]] {
        let x = rand_array(&mut rng, &shape);
        let dy = rand_array(&mut rng, &shape);
        let (y, grads) = run_op(Relu, std::slice::from_ref(&x), &dy, 0);
        assert_close(
            "relu forward",
            &y,
            &flat(&relu::reference_forward(&x)),
            0.0,
            0.0,
        );
        assert_close(
            "relu backward",
            &grads[0],
            &flat(&relu::reference_backward(&x, &dy)),
            0.0,
            0.0,
        );
        let n = numeric_grad(&x, |x| dot(&relu::reference_forward(x), &dy));
        assert_close("relu numeric", &grads[0], &flat(&n), 1e-4, 1e-6);
    }
}

#[test]
fn maxpool_matches_reference_and_gradient_check() {
    let mut rng = Rng::new(5);
    for (shape, size) in [
        (vec![1usize, 1, 7], 2usize),
        (vec![2, 3, 187], 2),
        (vec![3, 5, 10], 3),
    ] {
        // plain, and with the dropout it fuses (rate, layer seed) at step 3
        for dropout in [None, Some((0.25f32, 99u32))] {
            let step = 3;
            let x = rand_array(&mut rng, &shape);
            let pooled = |x: &ArrayD<f64>| {
                let y = maxpool1d::reference_forward(&a3(x), size).0.into_dyn();
                match dropout {
                    Some((rate, seed)) => dropout::reference_apply(&y, seed, step, rate),
                    None => y,
                }
            };
            let y_ref = pooled(&x);
            let dy = rand_array(&mut rng, y_ref.shape());
            let op = MaxPool1d { size, dropout };
            let (y, grads) = run_op(op, std::slice::from_ref(&x), &dy, step);
            let what = format!("maxpool {shape:?} dropout {dropout:?}");
            assert_close(&format!("{what} forward"), &y, &flat(&y_ref), 1e-6, 0.0);
            let dy_pool = match dropout {
                Some((rate, seed)) => dropout::reference_apply(&dy, seed, step, rate),
                None => dy.clone(),
            };
            let dx = maxpool1d::reference_backward(&a3(&x), &a3(&dy_pool), size);
            assert_close(
                &format!("{what} backward"),
                &grads[0],
                &flat(&dx.into_dyn()),
                1e-6,
                0.0,
            );
            let n = numeric_grad(&x, |x| dot(&pooled(x), &dy));
            assert_close(&format!("{what} numeric"), &grads[0], &flat(&n), 1e-4, 1e-6);
        }
    }
}

#[test]
fn dropout_matches_reference_is_seeded_and_keeps_expected_fraction() {
    let mut rng = Rng::new(6);
    let shape = [4usize, 8, 93];
    let x = rand_array(&mut rng, &shape);
    let dy = rand_array(&mut rng, &shape);
    let (seed, rate) = (1234u32, 0.25f32);
    let relu = false;
    let (y, grads) = run_op(
        Dropout { rate, seed, relu },
        std::slice::from_ref(&x),
        &dy,
        7,
    );
    assert_close(
        "dropout forward",
        &y,
        &flat(&dropout::reference_apply(&x, seed, 7, rate)),
        1e-6,
        0.0,
    );
    assert_close(
        "dropout backward",
        &grads[0],
        &flat(&dropout::reference_apply(&dy, seed, 7, rate)),
        1e-6,
        0.0,
    );
    let n = numeric_grad(&x, |x| {
        dot(&dropout::reference_apply(x, seed, 7, rate), &dy)
    });
    assert_close("dropout numeric", &grads[0], &flat(&n), 1e-4, 1e-6);
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((dropped - 0.25).abs() < 0.03, "dropped fraction {dropped}");
    // Another step draws another mask; the same step the same one.
    let (y_next, _) = run_op(
        Dropout { rate, seed, relu },
        std::slice::from_ref(&x),
        &dy,
        8,
    );
    assert_ne!(y, y_next);
    let (y_again, _) = run_op(
        Dropout { rate, seed, relu },
        std::slice::from_ref(&x),
        &dy,
        7,
    );
    assert_eq!(y, y_again);
}

/// ReLU fused in front of dropout: the same as the two ops one after the other.
#[test]
fn relu_dropout_matches_reference_and_gradient_check() {
    let mut rng = Rng::new(8);
    let x = rand_array(&mut rng, &[5, 33]);
    let dy = rand_array(&mut rng, &[5, 33]);
    let (seed, rate, step) = (77u32, 0.1f32, 3);
    let reference =
        |x: &ArrayD<f64>| dropout::reference_apply(&relu::reference_forward(x), seed, step, rate);
    let op = Dropout {
        rate,
        seed,
        relu: true,
    };
    let (y, grads) = run_op(op, std::slice::from_ref(&x), &dy, step);
    assert_close("relu+dropout forward", &y, &flat(&reference(&x)), 1e-6, 0.0);
    let expected = relu::reference_backward(&x, &dropout::reference_apply(&dy, seed, step, rate));
    assert_close(
        "relu+dropout backward",
        &grads[0],
        &flat(&expected),
        1e-6,
        0.0,
    );
    let n = numeric_grad(&x, |x| dot(&reference(x), &dy));
    assert_close("relu+dropout numeric", &grads[0], &flat(&n), 1e-4, 1e-6);
}

#[test]
fn add_and_gradient_fan_in_accumulate() {
    let mut rng = Rng::new(7);
    let x = rand_array(&mut rng, &[3, 5]);
    let y = rand_array(&mut rng, &[3, 5]);
    let dy = rand_array(&mut rng, &[3, 5]);
    let (out, grads) = run_op(Add, &[x.clone(), y.clone()], &dy, 0);
    assert_close("add forward", &out, &flat(&(&x + &y)), 1e-6, 0.0);
    assert_close("add dx", &grads[0], &flat(&dy), 0.0, 0.0);
    assert_close("add dy", &grads[1], &flat(&dy), 0.0, 0.0);

    // z = relu(x) + x: x feeds two ops, so its gradient is the sum of both paths.
    let ctx = ctx();
    let step = ecgwgpu::ops::StepUniform::default().create_buffer(ctx);
    let mut graph = ecgwgpu::autograd::Graph::new(ctx, step);
    let xv = graph.leaf(
        ecgwgpu::gpu::Tensor::from_slice(ctx, &to_f32(&x), &[3, 5]).unwrap(),
        None,
    );
    let r = graph.apply(Relu, &[xv]).unwrap();
    let z = graph.apply(Add, &[r, xv]).unwrap();
    graph
        .backward(
            z,
            ecgwgpu::gpu::Tensor::from_slice(ctx, &to_f32(&dy), &[3, 5]).unwrap(),
        )
        .unwrap();
    graph.forward.run(ctx).unwrap();
    graph.backward.run(ctx).unwrap();
    let gx = graph.grad(xv).unwrap().read(ctx).unwrap();
    let expected = &relu::reference_backward(&x, &dy) + &dy;
    assert_close("fan-in gradient", &gx, &flat(&expected), 1e-6, 1e-7);
}

#[test]
fn shape_mismatch_is_an_error_not_a_panic() {
    let ctx = ctx();
    let step = ecgwgpu::ops::StepUniform::default().create_buffer(ctx);
    let mut graph = ecgwgpu::autograd::Graph::new(ctx, step);
    let t = |s: &[usize]| ecgwgpu::gpu::Tensor::zeros(ctx, s);
    let x = graph.input(t(&[2, 3, 10]));
    let w = graph.input(t(&[4, 5, 3]));
    let b = graph.input(t(&[4]));
    let err = graph
        .apply(Conv1d::new(Padding::Same), &[x, w, b])
        .unwrap_err();
    assert!(err.to_string().contains("3 channels"), "{err}");
    let short = graph.input(t(&[1, 5, 2]));
    let w2 = graph.input(t(&[4, 5, 3]));
    assert!(graph
        .apply(Conv1d::new(Padding::Valid), &[short, w2, b])
        .is_err());
    let d = graph.input(t(&[2, 7]));
    let dw = graph.input(t(&[3, 8]));
    let db = graph.input(t(&[3]));
    assert!(graph
        .apply(Dense, &[d, dw, db])
        .unwrap_err()
        .to_string()
        .contains("do not fit"));
    assert!(graph.apply(Add, &[d, db]).is_err());
    assert!(graph.apply(MaxPool1d::new(2), &[d]).is_err());
}

#[test]
fn a_binding_that_does_not_match_its_shader_is_an_error() {
    let ctx = ctx();
    let x = ecgwgpu::gpu::Tensor::zeros(ctx, &[8]);
    // relu.forward needs bindings 1 (x) and 2 (y): leave y out.
    let err = ctx
        .dispatch(
            (&ecgwgpu::ops::relu::SHADER, "forward", &[]),
            &8u32,
            &[(1, x.binding())],
            [1, 1, 1],
        )
        .err()
        .expect("an incomplete bind group must be rejected");
    assert!(err.to_string().contains("relu.forward"), "{err}");
}

/// Concat joins features (the dual-stream network's rhythm to the conv features) and Columns
/// takes them apart; both are exact copies, checked against the reference and by central
/// differences, at sizes that are not multiples of the workgroup.
/// A grouped network's join: each group's features then the shared ones, exact; the shared
/// input's gradient summed over the groups (against central differences).
#[test]
fn grouped_concat_matches_reference_and_gradient_check() {
    let mut rng = Rng::new(13);
    for (batch, groups, fa, fb) in [
        (1usize, 1usize, 3usize, 2usize),
        (3, 4, 5, 8),
        (2, 15, 7, 1),
    ] {
        let a = rand_array(&mut rng, &[batch, groups * fa]);
        let b = rand_array(&mut rng, &[batch, fb]);
        let dy = rand_array(&mut rng, &[batch, groups * (fa + fb)]);
        let (y, grads) = run_op(GroupedConcat { groups }, &[a.clone(), b.clone()], &dy, 0);
        let what = format!("grouped concat {batch}x{groups}x({fa}+{fb})");
        let reference =
            |a: &ArrayD<f64>, b: &ArrayD<f64>| concat::reference_grouped_concat(a, b, groups);
        assert_close(&what, &y, &flat(&reference(&a, &b)), 0.0, 0.0);
        let na = numeric_grad(&a, |a| dot(&reference(a, &b), &dy));
        let nb = numeric_grad(&b, |b| dot(&reference(&a, b), &dy));
        assert_close(&format!("{what} da"), &grads[0], &flat(&na), 1e-4, 1e-6);
        assert_close(&format!("{what} db"), &grads[1], &flat(&nb), 1e-4, 1e-6);
    }
}

#[test]
fn concat_and_columns_match_reference_and_gradient_check() {
    let mut rng = Rng::new(12);
    for (batch, fa, fb) in [(1usize, 1usize, 1usize), (3, 512, 7), (5, 37, 300)] {
        let a = rand_array(&mut rng, &[batch, fa]);
        let b = rand_array(&mut rng, &[batch, fb]);
        let dy = rand_array(&mut rng, &[batch, fa + fb]);
        let (y, grads) = run_op(Concat, &[a.clone(), b.clone()], &dy, 0);
        let what = format!("concat {batch}x({fa}+{fb})");
        assert_close(
            &what,
            &y,
            &flat(&concat::reference_concat(&a, &b)),
            0.0,
            0.0,
        );
        let (da, db) = concat::reference_concat_backward(&dy, fa);
        assert_close(&format!("{what} da"), &grads[0], &flat(&da), 0.0, 0.0);
        assert_close(&format!("{what} db"), &grads[1], &flat(&db), 0.0, 0.0);
        let n = numeric_grad(&b, |b| dot(&concat::reference_concat(&a, b), &dy));
        assert_close(
            &format!("{what} numeric db"),
            &grads[1],
            &flat(&n),
            1e-4,
            1e-6,
        );

        // the columns fb..fb + fa of the joined rows give a back
        let x = concat::reference_concat(&b, &a);
        let op = Columns {
            start: fb,
            width: fa,
        };
        let dy = rand_array(&mut rng, &[batch, fa]);
        let (y, grads) = run_op(op, std::slice::from_ref(&x), &dy, 0);
        let what = format!("columns {fb}..{} of {batch}x{}", fb + fa, fa + fb);
        assert_close(&what, &y, &flat(&a), 0.0, 0.0);
        let dx = concat::reference_columns_backward(&dy, fa + fb, fb);
        assert_close(&format!("{what} dx"), &grads[0], &flat(&dx), 0.0, 0.0);
        let n = numeric_grad(&x, |x| dot(&concat::reference_columns(x, fb, fa), &dy));
        assert_close(
            &format!("{what} numeric dx"),
            &grads[0],
            &flat(&n),
            1e-4,
            1e-6,
        );
    }
    // shapes that do not fit are errors, not wrong answers
    let (a, b) = (vec![2usize, 3], vec![3usize, 3]);
    assert!(Concat.output_shape(&[&a, &b]).is_err());
    let cols = Columns { start: 2, width: 2 };
    assert!(cols.output_shape(&[&a]).is_err());
}
