//! The engine end to end: focal loss and softmax kernels, Adam, the model's size, a numerical
//! gradient check through the whole paper network, learning, determinism and bad input.

mod common;

use common::*;
use ecgwgpu::gpu::{GpuContext, Program, Tensor};
use ecgwgpu::loss::{self, FocalLoss, LossConfig};
use ecgwgpu::model::{self, Model, ModelConfig};
use ecgwgpu::ops::{softmax, Recorder, StepUniform};
use ecgwgpu::optim::{self, Adam, AdamConfig};
use ecgwgpu::rng::Rng;
use ecgwgpu::trainer::Trainer;
use ecgwgpu::Error;
use ndarray::{Array2, Array3, ArrayD, Ix2};

fn record_loss(
    config: &LossConfig,
    logits: &Array2<f64>,
    labels: &[u32],
) -> (f32, Vec<f32>, Vec<f32>) {
    run_loss(config, logits, |loss| {
        loss.set_labels(ctx(), labels).unwrap()
    })
}

/// The loss kernel on `logits` after `upload` gives it its labels or targets: (mean,
/// per-sample losses, dlogits).
fn run_loss(
    config: &LossConfig,
    logits: &Array2<f64>,
    upload: impl FnOnce(&FocalLoss),
) -> (f32, Vec<f32>, Vec<f32>) {
    let ctx = ctx();
    let (batch, classes) = logits.dim();
    let loss = FocalLoss::new(ctx, config, batch, classes).unwrap();
    upload(&loss);
    let logits_t =
        Tensor::from_slice(ctx, &to_f32(&logits.clone().into_dyn()), &[batch, classes]).unwrap();
    let step = StepUniform::default().create_buffer(ctx);
    let mut program = Program::new();
    let mut rec = Recorder::new(ctx, &step, &mut program);
    loss.record(&mut rec, &logits_t).unwrap();
    program.run(ctx).unwrap();
    let mean = loss.mean.read(ctx).unwrap()[0];
    (
        mean,
        loss.per_sample.read(ctx).unwrap(),
        loss.dlogits.read(ctx).unwrap(),
    )
}

fn loss_configs() -> Vec<(&'static str, LossConfig)> {
    vec![
        ("cross-entropy", LossConfig::cross_entropy(5)),
        (
            "focal α=.25 γ=2 + α=.25 γ=.5",
            LossConfig::two_fold(vec![0.25; 5], 2.0, vec![0.25; 5], 0.5),
        ),
        (
            "per-class α, γ=1 + γ=3",
            LossConfig::two_fold(
                vec![0.1, 0.9, 0.5, 1.0, 0.3],
                1.0,
                vec![1.0, 2.0, 0.5, 0.2, 1.5],
                3.0,
            ),
        ),
        (
            "single fold γ=0.3",
            LossConfig {
                terms: vec![loss::FocalTerm {
                    alpha: vec![0.7; 5],
                    gamma: 0.3,
                }],
                soft_targets: false,
            },
        ),
    ]
}

#[test]
fn focal_loss_matches_reference_and_gradient_check() {
    let mut rng = Rng::new(10);
    let labels: Vec<u32> = (0..9).map(|i| (i * 7 % 5) as u32).collect();
    let logits = rand_array(&mut rng, &[9, 5])
        .mapv(|v| 3.0 * v)
        .into_dimensionality::<Ix2>()
        .unwrap();
    let logits = logits.mapv(|v| f64::from(v as f32));
    for (name, config) in loss_configs() {
        let (mean, _, grad) = record_loss(&config, &logits, &labels);
        matches_reference(name, mean, &grad, &logits, |z| {
            loss::reference(&config, z, &labels)
        });
    }
}

/// A loss kernel's `mean` and `grad` against its f64 `reference` at `logits`, and the
/// gradient against the reference's finite differences.
fn matches_reference(
    name: &str,
    mean: f32,
    grad: &[f32],
    logits: &Array2<f64>,
    reference: impl Fn(&Array2<f64>) -> (f64, Array2<f64>),
) {
    let (ref_mean, ref_grad) = reference(logits);
    assert_close(
        &format!("{name}: mean loss"),
        &[mean],
        &[ref_mean],
        1e-5,
        1e-7,
    );
    let ref_grad = flat(&ref_grad.into_dyn());
    assert_close(&format!("{name}: dlogits"), grad, &ref_grad, 1e-4, 1e-7);
    let numeric = numeric_grad(&logits.clone().into_dyn(), |z| {
        reference(&z.clone().into_dimensionality().unwrap()).0
    });
    let numeric = flat(&numeric);
    assert_close(
        &format!("{name}: numeric dlogits"),
        grad,
        &numeric,
        1e-3,
        1e-6,
    );
}

/// The soft-target loss on the GPU: (mean, dlogits).
fn record_soft_loss(config: &LossConfig, logits: &Array2<f64>, targets: &[f32]) -> (f32, Vec<f32>) {
    let (mean, _, dlogits) = run_loss(config, logits, |loss| {
        loss.set_targets(ctx(), targets).unwrap()
    });
    (mean, dlogits)
}

#[test]
fn soft_target_loss_matches_reference_gradient_check_and_hard_labels() {
    let mut rng = Rng::new(11);
    let logits = rand_array(&mut rng, &[9, 5])
        .mapv(|v| f64::from((3.0 * v) as f32))
        .into_dimensionality::<Ix2>()
        .unwrap();
    // rows of a teacher's probabilities: a softmax of other random logits
    let teacher = softmax::reference(
        &rand_array(&mut rng, &[9, 5])
            .mapv(|v| 2.0 * v)
            .into_dimensionality::<Ix2>()
            .unwrap(),
    );
    let targets: Vec<f32> = teacher.iter().map(|&t| t as f32).collect();
    let teacher = teacher.mapv(|t| f64::from(t as f32));
    let mut weighted = LossConfig::soft_cross_entropy(5);
    weighted.terms[0].alpha = vec![0.1, 0.9, 0.5, 1.0, 0.3];
    weighted.terms.push(weighted.terms[0].clone());
    for (name, config) in [
        ("soft cross-entropy", LossConfig::soft_cross_entropy(5)),
        ("two terms, per-class α", weighted),
    ] {
        let (mean, grad) = record_soft_loss(&config, &logits, &targets);
        matches_reference(name, mean, &grad, &logits, |z| {
            loss::reference_soft(&config, z, &teacher)
        });
    }
    // one-hot targets are the hard loss
    let labels: Vec<u32> = (0..9).map(|i| (i * 7 % 5) as u32).collect();
    let one_hot: Vec<f32> = labels
        .iter()
        .flat_map(|&l| (0..5).map(move |j| if j == l { 1.0 } else { 0.0 }))
        .collect();
    let (soft_mean, soft_grad) =
        record_soft_loss(&LossConfig::soft_cross_entropy(5), &logits, &one_hot);
    let (hard_mean, _, hard_grad) = record_loss(&LossConfig::cross_entropy(5), &logits, &labels);
    assert_close(
        "one-hot: mean",
        &[soft_mean],
        &[f64::from(hard_mean)],
        1e-5,
        1e-7,
    );
    let hard_grad: Vec<f64> = hard_grad.iter().map(|&g| f64::from(g)).collect();
    assert_close("one-hot: dlogits", &soft_grad, &hard_grad, 1e-5, 1e-7);
}

#[test]
fn soft_targets_must_be_probabilities_and_take_no_focal_term() {
    let ctx = ctx();
    let loss = FocalLoss::new(ctx, &LossConfig::soft_cross_entropy(3), 2, 3).unwrap();
    assert!(loss
        .set_targets(ctx, &[0.5, 0.5, 0.0, 0.2, 0.2, 0.2])
        .is_err());
    assert!(loss
        .set_targets(ctx, &[1.5, -0.5, 0.0, 0.2, 0.4, 0.4])
        .is_err());
    loss.set_targets(ctx, &[0.5, 0.5, 0.0, 0.2, 0.4, 0.4])
        .unwrap();
    let mut focal = LossConfig::two_fold(vec![0.25; 3], 2.0, vec![0.25; 3], 0.5);
    focal.soft_targets = true;
    assert!(FocalLoss::new(ctx, &focal, 2, 3).is_err());
}

#[test]
fn focal_loss_is_finite_when_confident() {
    // p_t -> 1: (1 - p)^(γ-1) alone would be infinite for γ < 1; the kernel must stay finite.
    let logits = Array2::from_shape_vec(
        (3, 5),
        vec![
            40.0, 0.0, 0.0, 0.0, 0.0, //
            0.0, 90.0, -10.0, 0.0, 0.0, //
            0.0, 0.0, 0.0, 0.0, 1e-3,
        ],
    )
    .unwrap();
    let labels = [0, 1, 4];
    for (name, config) in loss_configs() {
        let (mean, per_sample, grad) = record_loss(&config, &logits, &labels);
        assert!(
            mean.is_finite() && per_sample.iter().all(|v| v.is_finite()),
            "{name}: loss {per_sample:?}"
        );
        assert!(grad.iter().all(|v| v.is_finite()), "{name}: grad {grad:?}");
        // A confident, correct sample contributes (almost) no gradient.
        assert!(
            grad[..5].iter().all(|v| v.abs() < 1e-6),
            "{name}: {:?}",
            &grad[..5]
        );
    }
}

#[test]
fn focal_loss_rejects_bad_labels_and_configs() {
    let ctx = ctx();
    let loss = FocalLoss::new(ctx, &LossConfig::cross_entropy(5), 3, 5).unwrap();
    match loss.set_labels(ctx, &[0, 5, 1]) {
        Err(Error::Label {
            label: 5,
            index: 1,
            classes: 5,
        }) => {}
        other => panic!("expected a label error, got {other:?}"),
    }
    assert!(FocalLoss::new(
        ctx,
        &LossConfig::two_fold(vec![1.0; 4], 2.0, vec![1.0; 5], 1.0),
        3,
        5
    )
    .is_err());
    assert!(FocalLoss::new(
        ctx,
        &LossConfig::two_fold(vec![1.0; 5], -1.0, vec![1.0; 5], 1.0),
        3,
        5
    )
    .is_err());
}

#[test]
fn softmax_matches_reference() {
    let ctx = ctx();
    let mut rng = Rng::new(11);
    let logits = rand_array(&mut rng, &[70, 5])
        .mapv(|v| 20.0 * v)
        .mapv(|v| f64::from(v as f32));
    let t = Tensor::from_slice(ctx, &to_f32(&logits), &[70, 5]).unwrap();
    let probs = Tensor::zeros(ctx, &[70, 5]);
    let step = StepUniform::default().create_buffer(ctx);
    let mut program = Program::new();
    softmax::softmax(&mut Recorder::new(ctx, &step, &mut program), &t, &probs).unwrap();
    program.run(ctx).unwrap();
    let expected = softmax::reference(&logits.into_dimensionality().unwrap());
    assert_close(
        "softmax",
        &probs.read(ctx).unwrap(),
        &flat(&expected.into_dyn()),
        1e-5,
        1e-7,
    );
}

/// The mean of an ensemble's members' probabilities as the grouped network computes it: equal to
/// the reference, and bit for bit to adding the members' rows in order and scaling once (what
/// the classifier does member by member).
#[test]
fn members_mean_matches_reference_and_the_sum_in_member_order() {
    let ctx = ctx();
    let mut rng = Rng::new(14);
    let (rows, members, classes) = (37, 15, 5);
    let p = rand_array(&mut rng, &[rows * members, classes]).mapv(|v| v.abs());
    let t = Tensor::from_slice(ctx, &to_f32(&p), &[rows * members, classes]).unwrap();
    let out = Tensor::zeros(ctx, &[rows, classes]);
    let step = StepUniform::default().create_buffer(ctx);
    let mut program = Program::new();
    let mut rec = Recorder::new(ctx, &step, &mut program);
    softmax::members_mean(&mut rec, &t, members, &out).unwrap();
    program.run(ctx).unwrap();
    let got = out.read(ctx).unwrap();
    let expected =
        softmax::reference_members_mean(&p.clone().into_dimensionality().unwrap(), members);
    assert_close(
        "members mean",
        &got,
        &flat(&expected.into_dyn()),
        1e-6,
        1e-7,
    );
    let p32 = to_f32(&p);
    let mut sum = vec![0f32; rows * classes];
    for m in 0..members {
        for r in 0..rows {
            for j in 0..classes {
                let v = p32[(r * members + m) * classes + j];
                if m == 0 {
                    sum[r * classes + j] = v;
                } else {
                    sum[r * classes + j] += v;
                }
            }
        }
    }
    let scale = 1.0 / members as f32;
    sum.iter_mut().for_each(|v| *v *= scale);
    assert_eq!(got, sum);
}

/// A program holding one Adam update of `params` from `grads`.
fn adam_program(
    config: &AdamConfig,
    params: &Tensor,
    grads: &Tensor,
    step: &wgpu::Buffer,
    feature_len: usize,
) -> Program {
    let ctx = ctx();
    let adam = Adam::new(ctx, config.clone(), params.numel(), feature_len);
    let mut program = Program::new();
    let mut rec = Recorder::new(ctx, step, &mut program);
    adam.record(&mut rec, params, grads).unwrap();
    // The moment buffers must outlive the program: the bind group keeps them alive.
    program
}

#[test]
fn adam_matches_hand_computed_updates() {
    let ctx = ctx();
    let config = AdamConfig {
        lr: 0.01,
        ..Default::default()
    };
    let p0 = [1.0f32, -2.0, 0.5];
    let params = Tensor::from_slice(ctx, &p0, &[3]).unwrap();
    let grads = Tensor::from_slice(ctx, &[0.5f32, -3.0, 0.0], &[3]).unwrap();
    let step = StepUniform::default().create_buffer(ctx);
    let program = adam_program(&config, &params, &grads, &step, 0);
    // A constant gradient g gives m̂ = g and v̂ = g² at every step, so each step moves
    // p by lr * g / (|g| + eps): after t steps p = p0 - t * lr * sign(g) (and 0 stays put).
    for t in 1..=3u32 {
        ctx.queue
            .write_buffer(&step, 0, bytemuck::bytes_of(&config.step_uniform(t)));
        program.run(ctx).unwrap();
        let p = params.read(ctx).unwrap();
        let t = t as f32;
        let expected = [1.0 - 0.01 * t, -2.0 + 0.01 * t, 0.5];
        for (a, b) in p.iter().zip(expected) {
            assert!((a - b).abs() < 1e-6, "step {t}: {p:?} vs {expected:?}");
        }
    }
    // Changing gradients and weight decay, then a slower first element (a feature layer
    // fine-tuned at a tenth of the rate), then a frozen one: against the f64 reference.
    for (feature_lr_scale, feature_len) in [(1.0, 0), (0.1, 1), (0.0, 2)] {
        let config = AdamConfig {
            lr: 0.05,
            weight_decay: 0.1,
            feature_lr_scale,
            ..Default::default()
        };
        let params = Tensor::from_slice(ctx, &p0, &[3]).unwrap();
        let program = adam_program(&config, &params, &grads, &step, feature_len);
        let (mut p, mut m, mut v) = (p0.map(f64::from).to_vec(), vec![0.0; 3], vec![0.0; 3]);
        for t in 1..=4u32 {
            let g = [0.3 * t as f32, -1.0 / t as f32, 0.01];
            grads.write(ctx, &g).unwrap();
            ctx.queue
                .write_buffer(&step, 0, bytemuck::bytes_of(&config.step_uniform(t)));
            program.run(ctx).unwrap();
            let g = g.map(f64::from);
            optim::reference_step(&config, t, &mut p, &g, (&mut m, &mut v), feature_len);
            assert_close(
                &format!("adam step {t}, feature scale {feature_lr_scale}"),
                &params.read(ctx).unwrap(),
                &p,
                1e-5,
                1e-6,
            );
        }
        if feature_lr_scale == 0.0 {
            assert_eq!(
                params.read(ctx).unwrap()[..2],
                p0[..2],
                "frozen bit for bit"
            );
        }
    }
}

#[test]
fn paper_preset_has_the_documented_size() {
    let paper = ModelConfig::paper();
    assert_eq!(paper.param_count(), 408_357);
    assert_eq!(paper.flat_features().unwrap(), 256);
    let mflop = paper.forward_flops() as f64 / 1e6;
    assert!((12.5..13.5).contains(&mflop), "{mflop} MFLOP");
    let tiny = ModelConfig::tiny();
    // conv1_1 4·1·5+4, conv1_2 4·4·5+4, conv2_1 8·4·5+8, conv2_2 8·8·5+8, dense 368·16+16, 16·5+5
    assert_eq!(tiny.param_count(), 24 + 84 + 168 + 328 + 5904 + 85);
    let short = ModelConfig {
        input_len: 40,
        ..ModelConfig::paper()
    };
    assert!(
        short.validate().is_err(),
        "40 samples cannot survive six poolings"
    );
}

/// Synthetic 5-class beats: a bump whose position and width depend on the class, plus noise.
fn synthetic(n: usize, len: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let mut x = Vec::with_capacity(n * len);
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 5) as u32;
        let centre = 20.0 + 35.0 * class as f64 + rng.range(-4.0, 4.0);
        let width = 3.0 + 2.0 * class as f64;
        for t in 0..len {
            let d = (t as f64 - centre) / width;
            x.push(((-0.5 * d * d).exp() + 0.1 * rng.normal()) as f32);
        }
        y.push(class);
    }
    (x, y)
}

fn tiny_trainer(ctx: &ecgwgpu::gpu::GpuContext, seed: u64) -> Trainer<'_> {
    let model = Model::new(ctx, ModelConfig::tiny(), seed).unwrap();
    let loss = LossConfig::two_fold(vec![0.25; 5], 2.0, vec![0.25; 5], 0.5);
    Trainer::new(
        ctx,
        model,
        loss,
        AdamConfig {
            lr: 3e-3,
            ..Default::default()
        },
    )
    .unwrap()
}

#[test]
fn tiny_model_learns_synthetic_classes_deterministically() {
    let ctx = ctx();
    let (x, y) = synthetic(640, 187, 21);
    let (xt, yt) = synthetic(200, 187, 22);
    let batch = 32;
    let train = |seed| {
        let mut trainer = tiny_trainer(ctx, seed);
        let mut losses = vec![];
        for _epoch in 0..4 {
            for b in 0..y.len() / batch {
                let xs = &x[b * batch * 187..(b + 1) * batch * 187];
                losses.push(trainer.step(xs, &y[b * batch..(b + 1) * batch]).unwrap());
            }
        }
        (trainer, losses)
    };
    let (mut trainer, losses) = train(5);
    let first: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let last: f32 = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
    assert!(last < first * 0.5, "loss went from {first} to {last}");
    let probs = trainer.predict(&xt).unwrap();
    let correct = probs
        .chunks(5)
        .zip(&yt)
        .filter(|(p, &label)| {
            let best = p
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap()
                .0;
            best as u32 == label
        })
        .count();
    let accuracy = correct as f64 / yt.len() as f64;
    assert!(accuracy > 0.95, "held-out accuracy {accuracy}");
    assert_eq!(trainer.steps() as usize, losses.len());
    let (_, again) = train(5);
    assert_eq!(
        losses, again,
        "same seed, same device: identical loss trajectory"
    );
    let (_, other) = train(6);
    assert_ne!(losses, other, "another seed gives another run");
}

/// Beats of one shape whose class only their rhythm tells (premature, with a compensatory pause,
/// or not): the dual-stream network learns it; the shape-only network, which cannot see the
/// rhythm, stays near chance.
#[test]
fn only_the_dual_stream_network_learns_a_rhythm_only_task() {
    use ecgwgpu::data::beats::Beats;
    let ctx = ctx();
    let make = |n: usize, seed: u64| {
        let mut rng = Rng::new(seed);
        let mut beats = Beats::default();
        for i in 0..n {
            let premature = i % 2 == 1;
            let shape: Vec<f32> = (0..187)
                .map(|t| {
                    let d = (t as f64 - 40.0) / 5.0;
                    ((-0.5 * d * d).exp() + 0.05 * rng.normal()) as f32
                })
                .collect();
            let record = 0.8 + 0.1 * rng.uniform();
            let pre = record * if premature { 0.6 } else { 1.0 } * (1.0 + 0.05 * rng.normal());
            let post = 2.0 * record - pre;
            let rr = [
                pre,
                post,
                record,
                record,
                pre / record,
                post / record,
                1.0,
                0.05,
                0.05,
            ]
            .map(|v| v as f32);
            beats.push(&shape, u32::from(premature), ("synthetic", i as u64), rr);
        }
        beats
    };
    let (train, test) = (make(512, 31), make(200, 32));
    let accuracy = |preset: &str| {
        let config = ModelConfig::preset(preset).unwrap();
        let model = Model::new(ctx, config.clone(), 5).unwrap();
        let adam = AdamConfig {
            lr: 3e-3,
            ..Default::default()
        };
        let mut trainer = Trainer::new(ctx, model, LossConfig::cross_entropy(5), adam).unwrap();
        let (rows, row) = (config.input_rows(&train), config.row_len());
        let batch = 32;
        for _epoch in 0..6 {
            for b in 0..train.len() / batch {
                let xs = &rows[b * batch * row..(b + 1) * batch * row];
                trainer
                    .step(xs, &train.labels[b * batch..(b + 1) * batch])
                    .unwrap();
            }
        }
        let probs = trainer
            .predict_many(&config.input_rows(&test), 256)
            .unwrap();
        let predicted = ecgwgpu::metrics::argmax_rows(&probs, 5);
        let correct = predicted
            .iter()
            .zip(&test.labels)
            .filter(|(p, l)| p == l)
            .count();
        correct as f64 / test.len() as f64
    };
    let (dual, shape_only) = (accuracy("tiny-rr"), accuracy("tiny"));
    assert!(dual > 0.95, "dual-stream accuracy {dual}");
    assert!(
        shape_only < 0.65,
        "shape-only accuracy {shape_only} (chance: 0.5)"
    );
}

/// The GPU-resident loop (upload once, gather on the GPU, many steps per submission) takes the
/// same steps as uploading each batch: identical losses and parameters, bit for bit, with a
/// short last batch; and again under the same seed.
#[test]
fn resident_epoch_matches_per_step_training() {
    for (kernels, ctx) in variants() {
        let (x, y) = synthetic(200, 187, 31);
        let order: Vec<usize> = (0..200).map(|i| (i * 37 + 11) % 200).collect();
        let batch = 48; // 4 full steps and one of 8
        let mut stepped = tiny_trainer(ctx, 9);
        let mut expected = vec![];
        for epoch in 0..2 {
            for chunk in order.chunks(batch) {
                let xb: Vec<f32> = chunk
                    .iter()
                    .flat_map(|&i| x[i * 187..(i + 1) * 187].iter().copied())
                    .collect();
                let yb: Vec<u32> = chunk.iter().map(|&i| y[i]).collect();
                expected.push((epoch, stepped.step(&xb, &yb).unwrap()));
            }
        }
        let resident_run = || {
            let mut trainer = tiny_trainer(ctx, 9);
            trainer.upload_training_data(&x, &y).unwrap();
            let mut reports = vec![];
            let mut losses = vec![];
            for epoch in 0..2 {
                let got = trainer
                    .train_epoch(&order, batch, |beats, l| reports.push((beats, l.len())))
                    .unwrap();
                losses.extend(got.into_iter().map(|l| (epoch, l)));
            }
            (trainer, losses, reports)
        };
        let (trainer, losses, reports) = resident_run();
        assert_eq!(losses, expected, "{kernels:?}: per-step losses");
        assert_eq!(trainer.steps(), stepped.steps());
        assert_eq!(
            trainer.model.params.download(ctx).unwrap(),
            stepped.model.params.download(ctx).unwrap(),
            "{kernels:?}: parameters after two epochs"
        );
        assert_eq!(reports.last(), Some(&(200, 5)), "progress reaches the end");
        let (_, again, _) = resident_run();
        assert_eq!(losses, again, "{kernels:?}: same seed, same losses");
    }
}

/// Batches queued back to back with one readback give what predicting each batch alone gives,
/// bit for bit, including a short last batch.
#[test]
fn predict_many_matches_batch_by_batch() {
    let ctx = ctx();
    let mut trainer = tiny_trainer(ctx, 4);
    let (x, _) = synthetic(70, 187, 5);
    let many = trainer.predict_many(&x, 16).unwrap();
    let mut one_by_one = vec![];
    for chunk in x.chunks(16 * 187) {
        one_by_one.extend(trainer.predict(chunk).unwrap());
    }
    assert_eq!(many.len(), 70 * 5);
    assert_eq!(many, one_by_one);
    // calls with a new short last batch each (a long recording's chunks) keep two inference
    // plans, not one per size
    for n in [21, 22, 23, 24, 25] {
        let probs = trainer.predict_many(&x[..n * 187], 16).unwrap();
        let expected: Vec<f64> = many[..n * 5].iter().map(|&p| f64::from(p)).collect();
        assert_close(&format!("{n} beats"), &probs, &expected, 1e-6, 1e-7);
    }
    assert_eq!(trainer.inference_plans(), 2);
    assert!(trainer.predict_many(&[], 16).unwrap().is_empty());
    let mut bad = x.clone();
    bad[60 * 187 + 3] = f32::INFINITY;
    match trainer.predict_many(&bad, 16) {
        Err(Error::NonFinite { position, .. }) => assert_eq!(position, "beat 60, sample 3"),
        other => panic!("expected NonFinite, got {other:?}"),
    }
}

#[test]
fn resident_epoch_rejects_bad_input() {
    let ctx = ctx();
    let mut trainer = tiny_trainer(ctx, 1);
    assert!(
        trainer.train_epoch(&[0], 1, |_, _| ()).is_err(),
        "nothing uploaded"
    );
    let (x, mut y) = synthetic(4, 187, 1);
    y[2] = 7;
    assert!(matches!(
        trainer.upload_training_data(&x, &y),
        Err(Error::Label {
            label: 7,
            index: 2,
            ..
        })
    ));
    y[2] = 0;
    trainer.upload_training_data(&x, &y).unwrap();
    assert!(
        trainer.train_epoch(&[0, 4], 2, |_, _| ()).is_err(),
        "index past the split"
    );
    assert!(
        trainer.train_epoch(&[0, 1], 0, |_, _| ()).is_err(),
        "batch 0"
    );
    assert_eq!(trainer.steps(), 0);
}

#[test]
fn bad_batches_are_errors_not_panics() {
    let ctx = ctx();
    let mut trainer = tiny_trainer(ctx, 1);
    assert!(matches!(trainer.step(&[], &[]), Err(Error::EmptyBatch(_))));
    assert!(matches!(
        trainer.step(&[0.0; 187], &[0, 1]),
        Err(Error::Shape { .. })
    ));
    let mut x = vec![0.5f32; 2 * 187];
    x[187 + 42] = f32::NAN;
    match trainer.step(&x, &[0, 1]) {
        Err(Error::NonFinite { position, .. }) => assert_eq!(position, "beat 1, sample 42"),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    assert!(matches!(
        trainer.step(&[0.5; 187], &[9]),
        Err(Error::Label { label: 9, .. })
    ));
    assert!(matches!(trainer.predict(&[]), Err(Error::EmptyBatch(_))));
    assert_eq!(trainer.steps(), 0, "no rejected batch counts as a step");
}

#[test]
fn paper_network_end_to_end_gradient_check() {
    // both kernel variants: the GPU-shaped ones run on lavapipe too
    for (kernels, ctx) in variants() {
        end_to_end_gradient_check(ctx, &format!("{kernels:?}"), ModelConfig::paper());
    }
}

/// The dual-stream network: the rhythm features enter Dense_1 through Columns and Concat, and
/// the gradients of Dense_1's rhythm weights match central differences like every other.
#[test]
fn dual_stream_network_end_to_end_gradient_check() {
    end_to_end_gradient_check(ctx(), "tiny-rr", ModelConfig::preset("tiny-rr").unwrap());
}

/// The rhythm head (`--rhythm-head`): its own Dense–ReLU–Dense on the rhythm features, logits
/// added to the network's; every one of its parameters gradient-checks like the rest. It needs
/// rhythm features.
#[test]
fn rhythm_head_network_end_to_end_gradient_check() {
    let config = ModelConfig {
        rhythm_head: 8,
        ..ModelConfig::preset("tiny-rr").unwrap()
    };
    let names: Vec<String> = config.param_shapes().into_iter().map(|p| p.0).collect();
    assert_eq!(
        &names[names.len() - 4..],
        [
            "rhythm1.weight",
            "rhythm1.bias",
            "rhythm2.weight",
            "rhythm2.bias"
        ]
    );
    let shape_only = ModelConfig {
        rhythm_head: 8,
        ..ModelConfig::tiny()
    };
    assert!(shape_only.validate().is_err());
    end_to_end_gradient_check(ctx(), "tiny-rr, rhythm head 8", config);
}

/// `--shape-dropout`: the conv features entering Dense_1 get their own dropout rate, on the GPU
/// as in the reference (gradient check), and it is that layer's rate alone that changes.
#[test]
fn shape_dropout_changes_only_the_last_pool_and_gradient_checks() {
    let base = ModelConfig::preset("tiny-rr").unwrap();
    let config = ModelConfig {
        shape_dropout: Some(0.6),
        ..base.clone()
    };
    let pairs = config.pair_channels.len();
    let rates: Vec<f32> = (0..=pairs).map(|l| config.dropout_rate(l)).collect();
    let mut expected = vec![base.dropout; pairs + 1];
    expected[pairs - 1] = 0.6;
    assert_eq!(rates, expected);
    for bad in [1.0, -0.1, f32::NAN] {
        let c = ModelConfig {
            shape_dropout: Some(bad),
            ..base.clone()
        };
        assert!(c.validate().is_err(), "shape_dropout {bad} accepted");
    }
    // the reference network itself sees the rate: same parameters and masks' seed, other logits
    let params = model::params_to_arrays(
        &config,
        &Model::new(ctx(), config.clone(), 5)
            .unwrap()
            .params
            .download(ctx())
            .unwrap(),
    );
    let x = Array3::from_shape_fn((4, 1, 187), |(b, _, t)| ((b * 187 + t) as f64 * 0.05).sin());
    let rr = Array2::from_elem((4, config.rr_features), 1.0);
    let with = model::reference_forward(&config, &params, &x, Some(&rr), Some((5, 1)));
    let without = model::reference_forward(&base, &params, &x, Some(&rr), Some((5, 1)));
    assert!(with.iter().zip(&without).any(|(a, b)| (a - b).abs() > 1e-6));
    end_to_end_gradient_check(ctx(), "tiny-rr, shape dropout 0.6", config);
}

/// Loss, gradients (against central differences, a spread of parameters in every layer and,
/// for a dual-stream network, Dense_1's rhythm weights) and evaluation-mode probabilities of
/// `config` on three beats, against the f64 reference network.
fn end_to_end_gradient_check(ctx: &'static GpuContext, what: &str, config: ModelConfig) {
    let model = Model::new(ctx, config.clone(), 77).unwrap();
    let loss_config = LossConfig::two_fold(vec![0.3, 0.9, 0.6, 1.0, 0.4], 2.0, vec![0.5; 5], 0.5);
    let mut trainer = Trainer::new(ctx, model, loss_config.clone(), AdamConfig::default()).unwrap();
    let mut rng = Rng::new(78);
    let x: Vec<f32> = (0..3 * 187)
        .map(|i| ((i as f64 * 0.07).sin() * 0.5 + 0.5 + 0.1 * rng.normal()) as f32)
        .collect();
    let rr = config.rr_features;
    let rhythm: Vec<f32> = (0..3 * rr).map(|_| (0.5 + rng.uniform()) as f32).collect();
    let rows: Vec<f32> = (0..3)
        .flat_map(|b| {
            let mut row = x[b * 187..(b + 1) * 187].to_vec();
            row.extend_from_slice(&rhythm[b * rr..(b + 1) * rr]);
            row
        })
        .collect();
    let labels = [1u32, 3, 4];
    let params = model::params_to_arrays(&config, &trainer.model.params.download(ctx).unwrap());
    let gpu_loss = trainer.gradients(&rows, &labels).unwrap();
    let grads = trainer.model.params.download_grads(ctx).unwrap();

    let xa =
        Array3::from_shape_vec((3, 1, 187), x.iter().map(|&v| f64::from(v)).collect()).unwrap();
    let ra =
        Array2::from_shape_vec((3, rr), rhythm.iter().map(|&v| f64::from(v)).collect()).unwrap();
    let ra = (rr > 0).then_some(&ra);
    let dropout = Some((77u64, 1u32)); // the mask of the next step (t = 1)
    let loss_of = |params: &[ArrayD<f64>]| {
        let logits = model::reference_forward(&config, params, &xa, ra, dropout);
        loss::reference(&loss_config, &logits, &labels).0
    };
    assert_close(
        &format!("{what} end-to-end loss"),
        &[gpu_loss],
        &[loss_of(&params)],
        1e-4,
        1e-6,
    );

    // Central differences for a spread of parameters in every layer. ReLU and max-pool are
    // piecewise linear: where a kink falls inside [θ-h, θ+h] the difference quotient is not the
    // derivative. Such points show up as disagreement between two step sizes and are skipped
    // (and counted: a few are expected, many would hide a bug).
    let numeric = |i: usize, j: usize, h: f64| {
        let mut p = params.clone();
        let orig = p[i].as_slice().unwrap()[j];
        p[i].as_slice_mut().unwrap()[j] = orig + h;
        let up = loss_of(&p);
        p[i].as_slice_mut().unwrap()[j] = orig - h;
        (up - loss_of(&p)) / (2.0 * h)
    };
    let (mut checked, mut kinks, mut picked) = (0, 0, 0);
    for (i, spec) in trainer.model.params.specs.iter().enumerate() {
        let n = spec.numel();
        let mut picks: Vec<usize> = (0..3).map(|k| (k * 7919 + i * 104_729) % n).collect();
        if spec.name == "dense1.weight" && rr > 0 {
            // the last columns of each row are the rhythm's weights
            let cols = spec.shape[1];
            picks.extend((0..rr).map(|k| (k % 3) * cols + cols - rr + k));
        }
        for j in picks {
            picked += 1;
            let (fine, finer) = (numeric(i, j, 1e-6), numeric(i, j, 5e-7));
            if (fine - finer).abs() > 1e-4 * fine.abs().max(1e-3) {
                kinks += 1;
                continue;
            }
            assert_close(
                &format!("{what} {}[{j}]", spec.name),
                &[grads[i][j]],
                &[fine],
                1e-3,
                1e-6,
            );
            checked += 1;
        }
    }
    assert!(
        kinks <= 4 && checked + kinks == picked && picked >= 3 * trainer.model.params.specs.len(),
        "{checked} checked, {kinks} skipped at kinks"
    );

    // Evaluation mode (no dropout) matches the reference too.
    let probs = trainer.predict(&rows).unwrap();
    let logits = model::reference_forward(&config, &params, &xa, ra, None);
    let expected = softmax::reference(&logits);
    assert_close(
        &format!("{what} probabilities"),
        &probs,
        &flat(&expected.into_dyn()),
        1e-4,
        1e-6,
    );
}

/// A trainer of the tiny network with `loss` (Adam 3e-3).
fn tiny_trainer_with(ctx: &ecgwgpu::gpu::GpuContext, loss: LossConfig) -> Trainer<'_> {
    let model = Model::new(ctx, ModelConfig::tiny(), 9).unwrap();
    let adam = AdamConfig {
        lr: 3e-3,
        ..Default::default()
    };
    Trainer::new(ctx, model, loss, adam).unwrap()
}

/// Soft targets in the resident loop: one-hot targets take the steps labels take, and targets
/// that split each beat between its class and the next are what the network learns, not the
/// labels. A soft-target loss refuses labelled batches and an epoch without targets.
#[test]
fn soft_targets_train_towards_the_targets_not_the_labels() {
    let ctx = ctx();
    let (x, y) = synthetic(200, 187, 31);
    let order: Vec<usize> = (0..200).map(|i| (i * 37 + 11) % 200).collect();
    let row = |f: &dyn Fn(u32, usize) -> f32| -> Vec<f32> {
        y.iter()
            .flat_map(|&c| (0..5).map(move |j| (c, j)))
            .map(|(c, j)| f(c, j))
            .collect()
    };
    let one_hot = row(&|c, j| if j == c as usize { 1.0 } else { 0.0 });
    let (mut hard, mut soft) = (
        tiny_trainer_with(ctx, LossConfig::cross_entropy(5)),
        tiny_trainer_with(ctx, LossConfig::soft_cross_entropy(5)),
    );
    hard.upload_training_data(&x, &y).unwrap();
    soft.upload_training_data(&x, &y).unwrap();
    assert!(
        soft.train_epoch(&order, 32, |_, _| ()).is_err(),
        "an epoch before the targets"
    );
    soft.upload_training_targets(&one_hot).unwrap();
    for _ in 0..2 {
        let a = hard.train_epoch(&order, 32, |_, _| ()).unwrap();
        let b = soft.train_epoch(&order, 32, |_, _| ()).unwrap();
        let b: Vec<f64> = b.iter().map(|&l| f64::from(l)).collect();
        assert_close("one-hot targets: losses", &a, &b, 1e-4, 1e-6);
    }
    let (a, b) = (
        hard.model.params.download(ctx).unwrap().concat(),
        soft.model.params.download(ctx).unwrap().concat(),
    );
    let b: Vec<f64> = b.iter().map(|&v| f64::from(v)).collect();
    assert_close("one-hot targets: parameters", &a, &b, 1e-3, 1e-5);

    // half on the beat's class, half on the next one
    let split = row(&|c, j| {
        if j == c as usize || j == (c as usize + 1) % 5 {
            0.5
        } else {
            0.0
        }
    });
    let mut soft = tiny_trainer_with(ctx, LossConfig::soft_cross_entropy(5));
    soft.upload_training_data(&x, &y).unwrap();
    assert!(soft
        .upload_training_targets(&split[..split.len() - 5])
        .is_err());
    soft.upload_training_targets(&split).unwrap();
    for _ in 0..15 {
        soft.train_epoch(&order, 32, |_, _| ()).unwrap();
    }
    let probs = soft.predict(&x).unwrap();
    let mean_next: f32 = y
        .iter()
        .enumerate()
        .map(|(b, &c)| probs[b * 5 + (c as usize + 1) % 5])
        .sum::<f32>()
        / y.len() as f32;
    assert!(
        (mean_next - 0.5).abs() < 0.15,
        "mean probability of the next class {mean_next}, targets 0.5"
    );
    assert!(
        soft.step(&x[..187], &y[..1]).is_err(),
        "a labelled batch with a soft-target loss"
    );
}
