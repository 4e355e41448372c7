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

// Invocation (b, l0..l0+3) of workgroup row z computes channels 8z..8z+7 at 4 positions. All
// lanes of a workgroup share their output channels, so weight loads are uniform (one scalar load
// broadcast to every lane); the kernel-tap loop is outside the channel loop so that the padding
// masks and clamped indices are computed once per tap instead of once per multiply-add.
@compute @workgroup_size(WG)
fn forward(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_l4 = (p.len_out + 3u) / 4u;
    let id = flat_id(wid, lid, nwg);
    if (id >= p.batch * n_l4) { return; }
    let l0 = (id % n_l4) * 4u;
    let b = id / n_l4;
    let co0 = wid.z * 8u;
    let last = p.c_out - 1u;
    let w_co = p.c_in * p.kernel;                  // weight stride between output channels
    let wb = array<u32, 8>(min(co0, last) * w_co, min(co0 + 1u, last) * w_co, min(co0 + 2u, last) * w_co,
                           min(co0 + 3u, last) * w_co, min(co0 + 4u, last) * w_co, min(co0 + 5u, last) * w_co,
                           min(co0 + 6u, last) * w_co, min(co0 + 7u, last) * w_co);
    let bl = vec4<f32>(bias[min(co0, last)], bias[min(co0 + 1u, last)], bias[min(co0 + 2u, last)], bias[min(co0 + 3u, last)]);
    let bh = vec4<f32>(bias[min(co0 + 4u, last)], bias[min(co0 + 5u, last)], bias[min(co0 + 6u, last)], bias[min(co0 + 7u, last)]);
    var a0l = bl; var a1l = bl; var a2l = bl; var a3l = bl;   // channels co0..co0+3
    var a0h = bh; var a1h = bh; var a2h = bh; var a3h = bh;   // channels co0+4..co0+7
    let x_b = b * p.c_in * p.len_in;
    let hi = i32(p.len_in) - 1;
    for (var k = 0u; k < p.kernel; k++) {
        let s = i32(l0 + k) - i32(p.pad);
        let i0 = u32(clamp(s, 0, hi)); let i1 = u32(clamp(s + 1, 0, hi));
        let i2 = u32(clamp(s + 2, 0, hi)); let i3 = u32(clamp(s + 3, 0, hi));
        let m0 = select(0.0, 1.0, s >= 0 && s <= hi); let m1 = select(0.0, 1.0, s + 1 >= 0 && s + 1 <= hi);
        let m2 = select(0.0, 1.0, s + 2 >= 0 && s + 2 <= hi); let m3 = select(0.0, 1.0, s + 3 >= 0 && s + 3 <= hi);
        var xr = x_b;
        var wo = k;
        for (var ci = 0u; ci < p.c_in; ci++) {
            let x0 = vec4<f32>(x[xr + i0] * m0); let x1 = vec4<f32>(x[xr + i1] * m1);
            let x2 = vec4<f32>(x[xr + i2] * m2); let x3 = vec4<f32>(x[xr + i3] * m3);
            let wl = vec4<f32>(w[wb[0] + wo], w[wb[1] + wo], w[wb[2] + wo], w[wb[3] + wo]);
            let wh = vec4<f32>(w[wb[4] + wo], w[wb[5] + wo], w[wb[6] + wo], w[wb[7] + wo]);
            a0l += wl * x0; a1l += wl * x1; a2l += wl * x2; a3l += wl * x3;
            a0h += wh * x0; a1h += wh * x1; a2h += wh * x2; a3h += wh * x3;
            xr += p.len_in;
            wo += p.kernel;
        }
    }
    let lo = array<vec4<f32>, 4>(a0l, a1l, a2l, a3l);
    let up = array<vec4<f32>, 4>(a0h, a1h, a2h, a3h);
    for (var j = 0u; j < 4u; j++) {
        let l = l0 + j;
        if (l >= p.len_out) { break; }
        for (var c = 0u; c < 8u; c++) {
            let co = co0 + c;
            if (co >= p.c_out) { break; }
            var v = up[j][c & 3u];
            if (c < 4u) { v = lo[j][c]; }
            y[(b * p.c_out + co) * p.len_out + l] = v;
        }
    }
}

// dx[b, ci, m] = sum_{co, k} w[co, ci, k] * dy[b, co, m - k + pad]: a "transposed" convolution,
// organised like forward (workgroup row z = input channels 8z..8z+7, lanes over positions).
@compute @workgroup_size(WG)
fn backward_input(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                  @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_m4 = (p.len_in + 3u) / 4u;
    let id = flat_id(wid, lid, nwg);
    if (id >= p.batch * n_m4) { return; }
    let m0 = (id % n_m4) * 4u;
    let b = id / n_m4;
    let ci0 = wid.z * 8u;
    let last = p.c_in - 1u;
    let wb = array<u32, 8>(min(ci0, last) * p.kernel, min(ci0 + 1u, last) * p.kernel, min(ci0 + 2u, last) * p.kernel,
                           min(ci0 + 3u, last) * p.kernel, min(ci0 + 4u, last) * p.kernel, min(ci0 + 5u, last) * p.kernel,
                           min(ci0 + 6u, last) * p.kernel, min(ci0 + 7u, last) * p.kernel);
    var a0l = vec4<f32>(0.0); var a1l = vec4<f32>(0.0); var a2l = vec4<f32>(0.0); var a3l = vec4<f32>(0.0);
    var a0h = vec4<f32>(0.0); var a1h = vec4<f32>(0.0); var a2h = vec4<f32>(0.0); var a3h = vec4<f32>(0.0);
    let dy_b = b * p.c_out * p.len_out;
    let hi = i32(p.len_out) - 1;
    let w_co = p.c_in * p.kernel;
    for (var k = 0u; k < p.kernel; k++) {
        let s = i32(m0 + p.pad) - i32(k);
        let i0 = u32(clamp(s, 0, hi)); let i1 = u32(clamp(s + 1, 0, hi));
        let i2 = u32(clamp(s + 2, 0, hi)); let i3 = u32(clamp(s + 3, 0, hi));
        let m0_ = select(0.0, 1.0, s >= 0 && s <= hi); let m1 = select(0.0, 1.0, s + 1 >= 0 && s + 1 <= hi);
        let m2 = select(0.0, 1.0, s + 2 >= 0 && s + 2 <= hi); let m3 = select(0.0, 1.0, s + 3 >= 0 && s + 3 <= hi);
        var dr = dy_b;
        var wo = k;
        for (var co = 0u; co < p.c_out; co++) {
            let d0 = vec4<f32>(dy[dr + i0] * m0_); let d1 = vec4<f32>(dy[dr + i1] * m1);
            let d2 = vec4<f32>(dy[dr + i2] * m2); let d3 = vec4<f32>(dy[dr + i3] * m3);
            let wl = vec4<f32>(w[wb[0] + wo], w[wb[1] + wo], w[wb[2] + wo], w[wb[3] + wo]);
            let wh = vec4<f32>(w[wb[4] + wo], w[wb[5] + wo], w[wb[6] + wo], w[wb[7] + wo]);
            a0l += wl * d0; a1l += wl * d1; a2l += wl * d2; a3l += wl * d3;
            a0h += wh * d0; a1h += wh * d1; a2h += wh * d2; a3h += wh * d3;
            dr += p.len_out;
            wo += w_co;
        }
    }
    let lo = array<vec4<f32>, 4>(a0l, a1l, a2l, a3l);
    let up = array<vec4<f32>, 4>(a0h, a1h, a2h, a3h);
    for (var j = 0u; j < 4u; j++) {
        let m = m0 + j;
        if (m >= p.len_in) { break; }
        for (var c = 0u; c < 8u; c++) {
            let ci = ci0 + c;
            if (ci >= p.c_in) { break; }
            var v = up[j][c & 3u];
            if (c < 4u) { v = lo[j][c]; }
            dx[(b * p.c_in + ci) * p.len_in + m] = v;
        }
    }
}

// dw[co, ci, k] = sum_{b, l} dy[b, co, l] * x[b, ci, l + k - pad]. Each invocation owns a tile of
// 8 output channels (workgroup row z) x 4 input channels for one tap k, so every step of the long
// (batch x length) reduction feeds 32 FMAs from 12 loads, 8 of which (dy) are uniform across the
// workgroup. Each lane's loop bounds skip the padding instead of masking it.
@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                   @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_ci4 = (p.c_in + 3u) / 4u;
    let id = flat_id(wid, lid, nwg);
    if (id >= n_ci4 * p.kernel) { return; }
    let k = id % p.kernel;
    let ci0 = (id / p.kernel) * 4u;
    let co0 = wid.z * 8u;
    let last_co = p.c_out - 1u;
    let last_ci = p.c_in - 1u;
    let row = p.len_out;
    let db = array<u32, 8>(min(co0, last_co) * row, min(co0 + 1u, last_co) * row, min(co0 + 2u, last_co) * row,
                           min(co0 + 3u, last_co) * row, min(co0 + 4u, last_co) * row, min(co0 + 5u, last_co) * row,
                           min(co0 + 6u, last_co) * row, min(co0 + 7u, last_co) * row);
    let xr = array<u32, 4>(min(ci0, last_ci) * p.len_in, min(ci0 + 1u, last_ci) * p.len_in,
                           min(ci0 + 2u, last_ci) * p.len_in, min(ci0 + 3u, last_ci) * p.len_in);
    // l + k - pad must lie in [0, len_in)
    let shift = i32(k) - i32(p.pad);
    let l_start = u32(max(0, -shift));
    let l_end = u32(clamp(i32(p.len_in) - shift, 0, i32(p.len_out)));
    var a0l = vec4<f32>(0.0); var a1l = vec4<f32>(0.0); var a2l = vec4<f32>(0.0); var a3l = vec4<f32>(0.0);
    var a0h = vec4<f32>(0.0); var a1h = vec4<f32>(0.0); var a2h = vec4<f32>(0.0); var a3h = vec4<f32>(0.0);
    for (var b = 0u; b < p.batch; b++) {
        let x_b = b * p.c_in * p.len_in;
        let dy_b = b * p.c_out * p.len_out;
        for (var l = l_start; l < l_end; l++) {
            let o = dy_b + l;
            let dl = vec4<f32>(dy[db[0] + o], dy[db[1] + o], dy[db[2] + o], dy[db[3] + o]);
            let dh = vec4<f32>(dy[db[4] + o], dy[db[5] + o], dy[db[6] + o], dy[db[7] + o]);
            let xi = x_b + u32(i32(l) + shift);
            let x0 = vec4<f32>(x[xr[0] + xi]); let x1 = vec4<f32>(x[xr[1] + xi]);
            let x2 = vec4<f32>(x[xr[2] + xi]); let x3 = vec4<f32>(x[xr[3] + xi]);
            a0l = fma(dl, x0, a0l); a1l = fma(dl, x1, a1l); a2l = fma(dl, x2, a2l); a3l = fma(dl, x3, a3l);
            a0h = fma(dh, x0, a0h); a1h = fma(dh, x1, a1h); a2h = fma(dh, x2, a2h); a3h = fma(dh, x3, a3h);
        }
    }
    let lo = array<vec4<f32>, 4>(a0l, a1l, a2l, a3l);   // [ci offset] -> channels co0..co0+3
    let up = array<vec4<f32>, 4>(a0h, a1h, a2h, a3h);   // [ci offset] -> channels co0+4..co0+7
    for (var j = 0u; j < 4u; j++) {
        let ci = ci0 + j;
        if (ci >= p.c_in) { break; }
        for (var c = 0u; c < 8u; c++) {
            let co = co0 + c;
            if (co >= p.c_out) { break; }
            var v = up[j][c & 3u];
            if (c < 4u) { v = lo[j][c]; }
            dw[(co * p.c_in + ci) * p.kernel + k] = v;
        }
    }
}
