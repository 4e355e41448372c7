// Inverted dropout: keep each element with probability 1 - rate and scale it by 1 / (1 - rate),
// so evaluation is the identity. The keep decision is a hash of (layer seed, step, index):
// reproducible under a seed, and backward recomputes it instead of storing a mask.

struct Params {
    n: u32,
    seed: u32,       // per layer, derived from the run seed
    rate: f32,
    relu: u32,       // 1: ReLU first, y = max(x, 0) * mask; backward masks by x > 0 too
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;

fn keep_scale(i: u32) -> f32 {
    return dropout_scale(p.seed, s.step, p.rate, i);
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.n) { return; }
    var v = x[i];
    if (p.relu != 0u) { v = max(v, 0.0); }
    y[i] = v * keep_scale(i);
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.n) { return; }
    var g = dy[i] * keep_scale(i);
    if (p.relu != 0u && !(x[i] > 0.0)) { g = 0.0; }
    dx[i] = g;
}
