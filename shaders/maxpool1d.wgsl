// MaxPool1D with window = stride = `size`, floor mode (a trailing partial window is dropped):
//   y[b, c, j] = max_{0 <= t < size} x[b, c, j*size + t]
// Forward stores the winning position; backward routes each gradient to it (the first maximum
// wins ties, like PyTorch). Windows do not overlap, so backward needs no atomics.

// With a dropout rate > 0 the pooled value is also multiplied by the dropout mask of its index
// (the same mask a separate Dropout op would draw), and backward applies it to the gradient:
// Dropout costs no dispatch of its own. Rate 0 multiplies by exactly 1.

struct Params {
    rows: u32,       // batch * channels
    len_in: u32,
    len_out: u32,
    size: u32,
    seed: u32,       // dropout layer seed
    rate: f32,       // dropout rate, 0 for none
    _unused0: u32,
    _unused1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> dy: array<f32>;
@group(0) @binding(5) var<storage, read> argmax_in: array<u32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<uniform> s: Step;

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.rows * p.len_out) { return; }
    let row = i / p.len_out;
    let j = i % p.len_out;
    let start = row * p.len_in + j * p.size;
    var best = x[start];
    var best_t = 0u;
    for (var t = 1u; t < p.size; t++) {
        let v = x[start + t];
        if (v > best) { best = v; best_t = t; }
    }
    y[i] = best * dropout_scale(p.seed, s.step, p.rate, i);
    argmax[i] = j * p.size + best_t;
}

@compute @workgroup_size(WG)
fn backward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.rows * p.len_in) { return; }
    let row = i / p.len_in;
    let l = i % p.len_in;
    let j = l / p.size;
    var g = 0.0;
    if (j < p.len_out && argmax_in[row * p.len_out + j] == l) {
        let o = row * p.len_out + j;
        g = dy[o] * dropout_scale(p.seed, s.step, p.rate, o);
    }
    dx[i] = g;
}
