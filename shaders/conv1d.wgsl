// Conv1D, stride 1, zero padding `pad` on the left (the right is implied by len_out):
//   y[b, co, l] = bias[co] + sum_{ci, k} w[co, ci, k] * x[b, ci, l + k - pad]
// Layouts (PyTorch's): x [B, Cin, Lin], w [Cout, Cin, K], y [B, Cout, Lout].
//
// Each invocation computes a 4x4 register block (4 channels x 4 positions): every weight it
// loads feeds 4 FMAs and every input value 4 more. On software Vulkan (lavapipe) this beats
// workgroup-memory tiling by ~20x, and it is fine on real GPUs at these small sizes.

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

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> dw: array<f32>;

fn x_at(b: u32, ci: u32, l: i32) -> f32 {
    if (l < 0 || l >= i32(p.len_in)) { return 0.0; }
    return x[(b * p.c_in + ci) * p.len_in + u32(l)];
}

fn dy_at(b: u32, co: u32, l: i32) -> f32 {
    if (co >= p.c_out || l < 0 || l >= i32(p.len_out)) { return 0.0; }
    return dy[(b * p.c_out + co) * p.len_out + u32(l)];
}

fn w_at(co: u32, ci: u32, k: u32) -> f32 {
    if (co >= p.c_out || ci >= p.c_in) { return 0.0; }
    return w[(co * p.c_in + ci) * p.kernel + k];
}

fn w4(co: u32, ci: u32, k: u32) -> vec4<f32> {
    return vec4<f32>(w_at(co, ci, k), w_at(co + 1u, ci, k), w_at(co + 2u, ci, k), w_at(co + 3u, ci, k));
}

fn bias_at(co: u32) -> f32 {
    if (co >= p.c_out) { return 0.0; }
    return bias[co];
}

@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_l4 = (p.len_out + 3u) / 4u;
    let n_c4 = (p.c_out + 3u) / 4u;
    let id = flat_id(wid, lid, nwg);
    if (id >= p.batch * n_c4 * n_l4) { return; }
    let l0 = (id % n_l4) * 4u;
    let co0 = ((id / n_l4) % n_c4) * 4u;
    let b = id / (n_l4 * n_c4);

    let b4 = vec4<f32>(bias_at(co0), bias_at(co0 + 1u), bias_at(co0 + 2u), bias_at(co0 + 3u));
    var a0 = b4; var a1 = b4; var a2 = b4; var a3 = b4;   // one vec4 of channels per position
    let start = i32(l0) - i32(p.pad);
    for (var ci = 0u; ci < p.c_in; ci++) {
        for (var k = 0u; k < p.kernel; k++) {
            let wv = w4(co0, ci, k);
            let s = start + i32(k);
            a0 = fma(wv, vec4<f32>(x_at(b, ci, s)), a0);
            a1 = fma(wv, vec4<f32>(x_at(b, ci, s + 1)), a1);
            a2 = fma(wv, vec4<f32>(x_at(b, ci, s + 2)), a2);
            a3 = fma(wv, vec4<f32>(x_at(b, ci, s + 3)), a3);
        }
    }
    let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var c = 0u; c < 4u; c++) {
        let co = co0 + c;
        if (co >= p.c_out) { break; }
        for (var j = 0u; j < 4u; j++) {
            let l = l0 + j;
            if (l >= p.len_out) { break; }
            y[(b * p.c_out + co) * p.len_out + l] = acc[j][c];
        }
    }
}

// dx[b, ci, m] = sum_{co, k} w[co, ci, k] * dy[b, co, m - k + pad]: a "transposed" convolution,
// blocked like forward (4 input channels x 4 positions per invocation).
@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_l4 = (p.len_in + 3u) / 4u;
    let n_c4 = (p.c_in + 3u) / 4u;
    let id = flat_id(wid, lid, nwg);
    if (id >= p.batch * n_c4 * n_l4) { return; }
    let m0 = (id % n_l4) * 4u;
    let ci0 = ((id / n_l4) % n_c4) * 4u;
    let b = id / (n_l4 * n_c4);

    var a0 = vec4<f32>(0.0); var a1 = vec4<f32>(0.0); var a2 = vec4<f32>(0.0); var a3 = vec4<f32>(0.0);
    let start = i32(m0) + i32(p.pad);
    for (var co = 0u; co < p.c_out; co++) {
        for (var k = 0u; k < p.kernel; k++) {
            let wv = vec4<f32>(w_at(co, ci0, k), w_at(co, ci0 + 1u, k), w_at(co, ci0 + 2u, k), w_at(co, ci0 + 3u, k));
            let s = start - i32(k);
            a0 = fma(wv, vec4<f32>(dy_at(b, co, s)), a0);
            a1 = fma(wv, vec4<f32>(dy_at(b, co, s + 1)), a1);
            a2 = fma(wv, vec4<f32>(dy_at(b, co, s + 2)), a2);
            a3 = fma(wv, vec4<f32>(dy_at(b, co, s + 3)), a3);
        }
    }
    let acc = array<vec4<f32>, 4>(a0, a1, a2, a3);
    for (var c = 0u; c < 4u; c++) {
        let ci = ci0 + c;
        if (ci >= p.c_in) { break; }
        for (var j = 0u; j < 4u; j++) {
            let m = m0 + j;
            if (m >= p.len_in) { break; }
            dx[(b * p.c_in + ci) * p.len_in + m] = acc[j][c];
        }
    }
}

// dw[co, ci, k] = sum_{b, l} dy[b, co, l] * x[b, ci, l + k - pad]. One invocation per
// (4 output channels, ci, k): each input value loaded feeds 4 FMAs.
@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_c4 = (p.c_out + 3u) / 4u;
    let id = flat_id(wid, lid, nwg);
    if (id >= n_c4 * p.c_in * p.kernel) { return; }
    let k = id % p.kernel;
    let ci = (id / p.kernel) % p.c_in;
    let co0 = (id / (p.kernel * p.c_in)) * 4u;

    var acc = vec4<f32>(0.0);
    let shift = i32(k) - i32(p.pad);
    for (var b = 0u; b < p.batch; b++) {
        for (var l = 0u; l < p.len_out; l++) {
            let xv = x_at(b, ci, i32(l) + shift);
            let d = vec4<f32>(dy_at(b, co0, i32(l)), dy_at(b, co0 + 1u, i32(l)),
                              dy_at(b, co0 + 2u, i32(l)), dy_at(b, co0 + 3u, i32(l)));
            acc = fma(d, vec4<f32>(xv), acc);
        }
    }
    for (var c = 0u; c < 4u; c++) {
        let co = co0 + c;
        if (co >= p.c_out) { break; }
        dw[(co * p.c_in + ci) * p.kernel + k] = acc[c];
    }
}
