// Adam (Kingma & Ba 2015) with bias correction and optional decoupled weight decay (AdamW,
// Loshchilov & Hutter 2019), updating parameters in place. All parameters of a model live in one
// flat buffer, so one dispatch updates them all.
//   m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
//   p -= lr * ( (m / bc1) / (sqrt(v / bc2) + eps) + weight_decay * p ),  bc_i = 1 - b_i^step
// The first `scaled_len` elements (a model's convolutional layers, which come first in the flat
// buffer) use lr * lr_scale instead: fine-tuning a transferred feature extractor slowly, or not at
// all with lr_scale = 0 (then p -= 0 leaves it bit for bit).

struct Params {
    n: u32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    scaled_len: u32,
    lr_scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read> grad: array<f32>;
@group(0) @binding(4) var<storage, read_write> m: array<f32>;
@group(0) @binding(5) var<storage, read_write> v: array<f32>;

@compute @workgroup_size(WG)
fn adam(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.n) { return; }
    let g = grad[i];
    let m_new = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let v_new = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = m_new;
    v[i] = v_new;
    let m_hat = m_new / s.bias_correction1;
    let v_hat = v_new / s.bias_correction2;
    let lr = select(s.lr, s.lr * p.lr_scale, i < p.scaled_len);
    param[i] -= lr * (m_hat / (sqrt(v_hat) + p.eps) + p.weight_decay * param[i]);
}
