// Two-fold focal loss fused with softmax, per sample b with label t and p = softmax(z):
//   loss_b = sum_terms  alpha_term[t] * (1 - p_t)^gamma_term * (-log p_t)
//   dloss_b/dz_j = sum_terms alpha_term[t] * g(p_t) * (p_j - [j == t])
//   g(p) = (1 - p)^gamma - gamma * p * (1 - p)^(gamma - 1) * log p
// With one term, alpha = 1 and gamma = 0 this is plain cross-entropy (g = 1).
//
// With soft targets (distillation: t_b a probability row, every gamma 0), per sample b:
//   loss_b = sum_terms sum_j alpha_term[j] * t_bj * (-log p_j)
//   dloss_b/dz_i = sum_terms (p_i * sum_j alpha_term[j] * t_bj - alpha_term[i] * t_bi)
// which is the hard case above when t_b is one-hot.
//
// Numerics: log p_t comes from log-softmax, and q = 1 - p_t is summed from the other classes
// rather than computed as 1 - p_t (which cancels to 0 when p_t ~ 1). g is evaluated as
// q^gamma * (1 - gamma * p * log(p) / q), where log(p) / q -> -1 as q -> 0 (a series is used for
// small q), so it stays finite for gamma < 1 where (1 - p)^(gamma - 1) alone would blow up.

struct Params {
    batch: u32,
    classes: u32,
    terms: u32,            // 1 or 2
    soft: u32,             // 1: read the targets row instead of the label
    gamma0: f32,
    gamma1: f32,
    grad_scale: f32,       // 1 / batch: the gradient of the batch mean
    _unused2: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> alpha: array<f32>;      // [terms, classes]
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;  // [batch]
@group(0) @binding(5) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(6) var<storage, read_write> mean: array<f32>;     // [1]
@group(0) @binding(7) var<storage, read> targets: array<f32>;        // [batch, classes] when soft

// q^gamma with the conventions 0^0 = 1 and 0^gamma = 0 (WGSL's pow is undefined at 0).
fn pow_safe(q: f32, gamma: f32) -> f32 {
    if (gamma == 0.0) { return 1.0; }
    if (q <= 0.0) { return 0.0; }
    return exp(gamma * log(q));
}

// One sample with a soft target row: its loss and its row of the logits gradient.
fn soft_sample(b: u32) -> f32 {
    let base = b * p.classes;
    var m = logits[base];
    for (var j = 1u; j < p.classes; j++) { m = max(m, logits[base + j]); }
    var sum_all = 0.0;
    for (var j = 0u; j < p.classes; j++) { sum_all += exp(logits[base + j] - m); }
    let log_sum = log(sum_all);
    var total = 0.0;
    var weight = 0.0; // sum_terms sum_j alpha_j t_j
    for (var term = 0u; term < p.terms; term++) {
        for (var j = 0u; j < p.classes; j++) {
            let at = alpha[term * p.classes + j] * targets[base + j];
            total += at * (log_sum - (logits[base + j] - m));
            weight += at;
        }
    }
    loss[b] = total;
    for (var i = 0u; i < p.classes; i++) {
        let pi = exp(logits[base + i] - m) / sum_all;
        var own = 0.0;
        for (var term = 0u; term < p.terms; term++) {
            own += alpha[term * p.classes + i];
        }
        dlogits[base + i] = p.grad_scale * (pi * weight - own * targets[base + i]);
    }
    return total;
}

// One sample: its loss (returned and stored) and its row of the logits gradient.
fn sample(b: u32) -> f32 {
    if (p.soft == 1u) { return soft_sample(b); }
    let base = b * p.classes;
    let t = labels[b];

    var m = logits[base];
    for (var j = 1u; j < p.classes; j++) { m = max(m, logits[base + j]); }
    var sum_all = 0.0;
    var sum_other = 0.0;
    for (var j = 0u; j < p.classes; j++) {
        let e = exp(logits[base + j] - m);
        sum_all += e;
        if (j != t) { sum_other += e; }
    }
    let log_pt = logits[base + t] - m - log(sum_all);
    let pt = exp(log_pt);
    let q = sum_other / sum_all;
    // log(p_t) / q = log(1 - q) / q
    var ratio = -1.0 - q * (0.5 + q / 3.0);
    if (q > 1e-3) { ratio = log_pt / q; }

    var total = 0.0;
    var g_sum = 0.0;
    for (var term = 0u; term < p.terms; term++) {
        let gamma = select(p.gamma0, p.gamma1, term == 1u);
        let a = alpha[term * p.classes + t];
        let qg = pow_safe(q, gamma);
        total += a * qg * (-log_pt);
        g_sum += a * qg * (1.0 - gamma * pt * ratio);
    }
    loss[b] = total;
    for (var j = 0u; j < p.classes; j++) {
        let pj = exp(logits[base + j] - m) / sum_all;
        let is_label = select(0.0, 1.0, j == t);
        dlogits[base + j] = p.grad_scale * g_sum * (pj - is_label);
    }
    return total;
}

// One workgroup for the whole batch (a few samples per invocation even at batch 2048), so the
// batch mean comes out of the same dispatch: a fixed-order tree over workgroup memory.
var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn focal_loss(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var b = li; b < p.batch; b += 256u) { s += sample(b); }
    partial[li] = s;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride /= 2u) {
        if (li < stride) { partial[li] += partial[li + stride]; }
        workgroupBarrier();
    }
    if (li == 0u) { mean[0] = partial[0] / f32(p.batch); }
}
