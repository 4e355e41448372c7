// Conv1D, stride 1, zero padding `pad` on the left (the right is implied by len_out):
//   y[b, co, l] = bias[co] + sum_{ci, k} w[co, ci, k] * x[b, ci, l + k - pad]
// Layouts (PyTorch's): x [B, Cin, Lin], w [Cout, Cin, K], y [B, Cout, Lout].
//
// With `relu` set, forward applies max(., 0) (Conv + bias + ReLU in one pass), and the backward
// kernels compiled with MASKED read dy * (y > 0) from the saved output `yo`.
//
// Variants, side by side (src/ops/conv1d.rs picks them per gpu::Kernels):
// - forward, backward_input, backward_weight: register blocks (8 channels x 4 positions per
//   invocation); forward_wide: 8 channels x 8 positions, for software Vulkan. On software
//   Vulkan (lavapipe) these beat workgroup-memory tiling by ~6x; on a GPU (Kernels::Gpu) the
//   weight gradient runs split into many batch ranges.
// - forward_tiled, backward_input_tiled, backward_weight_tiled: implicit GEMMs over 32x32
//   workgroup-memory tiles with coalesced staging loads (Kernels::Tiled).
// Both weight-gradient kernels write partial sums per split; weight_grad_finalize adds them in a
// fixed order (deterministic, no float atomics) into dw and db.

struct Params {
    batch: u32,
    c_in: u32,
    c_out: u32,
    len_in: u32,
    len_out: u32,
    kernel: u32,
    pad: u32,
    relu: u32,
    // weight gradient only: the reduction over r = (b, l) is cut into `splits` ranges of
    // `split_len` (rows of the batch for the register kernel, positions for the tiled one)
    splits: u32,
    split_len: u32,
    // grouped convolution: output channel group g reads input channels g*c_in..(g+1)*c_in; c_in
    // is per group (the weight's dim 1) and x has groups*c_in channels
    groups: u32,
    _unused: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> dy: array<f32>;
@group(0) @binding(6) var<storage, read_write> dx: array<f32>;
@group(0) @binding(7) var<storage, read_write> partial: array<f32>;  // [splits, c_out, c_in*K + 1]
@group(0) @binding(8) var<storage, read> yo: array<f32>;               // forward output (ReLU mask)
@group(0) @binding(9) var<storage, read_write> dw: array<f32>;
@group(0) @binding(10) var<storage, read_write> db: array<f32>;

// Output channels per group.
fn per_group() -> u32 {
    return p.c_out / p.groups;
}

// The register block of workgroup row z: (first output channel, the last channel of its group,
// group). Each group's channels are cut into blocks of 8 on their own, so that no block straddles
// two groups and every lane of a block reads the same input channels.
fn out_block(z: u32) -> vec3<u32> {
    let per = per_group();
    let blocks = (per + 7u) / 8u;
    let g = z / blocks;
    return vec3<u32>(g * per + (z % blocks) * 8u, g * per + per - 1u, g);
}

// Set per pipeline (src/ops/conv1d.rs): the backward kernels sit behind a fused ReLU whose mask
// they read in place. A pipeline constant, so the unmasked kernels carry no trace of it.
override MASKED: bool = false;

// The gradient reaching the convolution: dy, or dy * (y > 0) behind a fused ReLU.
fn grad_at(i: u32) -> f32 {
    let g = dy[i];
    if (MASKED) { return select(0.0, g, yo[i] > 0.0); }
    return g;
}

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
    let blk = out_block(wid.z);
    let co0 = blk.x;
    let last = blk.y;
    let w_co = p.c_in * p.kernel;                  // weight stride between output channels
    let wb = array<u32, 8>(min(co0, last) * w_co, min(co0 + 1u, last) * w_co, min(co0 + 2u, last) * w_co,
                           min(co0 + 3u, last) * w_co, min(co0 + 4u, last) * w_co, min(co0 + 5u, last) * w_co,
                           min(co0 + 6u, last) * w_co, min(co0 + 7u, last) * w_co);
    let bl = vec4<f32>(bias[min(co0, last)], bias[min(co0 + 1u, last)], bias[min(co0 + 2u, last)], bias[min(co0 + 3u, last)]);
    let bh = vec4<f32>(bias[min(co0 + 4u, last)], bias[min(co0 + 5u, last)], bias[min(co0 + 6u, last)], bias[min(co0 + 7u, last)]);
    var a0l = bl; var a1l = bl; var a2l = bl; var a3l = bl;   // channels co0..co0+3
    var a0h = bh; var a1h = bh; var a2h = bh; var a3h = bh;   // channels co0+4..co0+7
    let x_b = (b * p.groups + blk.z) * p.c_in * p.len_in;
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
    let n = min(8u, last + 1u - co0);
    let o = (b * p.c_out + co0) * p.len_out + l0;
    let r = p.relu != 0u;
    if (l0 < p.len_out) { put8_y(o, p.len_out, n, relu8(a0l, r), relu8(a0h, r)); }
    if (l0 + 1u < p.len_out) { put8_y(o + 1u, p.len_out, n, relu8(a1l, r), relu8(a1h, r)); }
    if (l0 + 2u < p.len_out) { put8_y(o + 2u, p.len_out, n, relu8(a2l, r), relu8(a2h, r)); }
    if (l0 + 3u < p.len_out) { put8_y(o + 3u, p.len_out, n, relu8(a3l, r), relu8(a3h, r)); }
}

// forward_wide: forward with 8 positions per invocation instead of 4, for software Vulkan
// (Kernels::Cpu). Each weight load then feeds twice the multiply-adds; on lavapipe that measured
// 10 % faster end to end (BENCHMARKS.md, 2026-12-07), while a GPU wants the invocations that
// 4 positions give.
@compute @workgroup_size(WG)
fn forward_wide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let n_l8 = (p.len_out + 7u) / 8u;
    let id = flat_id(wid, lid, nwg);
    if (id >= p.batch * n_l8) { return; }
    let l0 = (id % n_l8) * 8u;
    let b = id / n_l8;
    let blk = out_block(wid.z);
    let co0 = blk.x;
    let last = blk.y;
    let w_co = p.c_in * p.kernel;
    let wb = array<u32, 8>(min(co0, last) * w_co, min(co0 + 1u, last) * w_co, min(co0 + 2u, last) * w_co,
                           min(co0 + 3u, last) * w_co, min(co0 + 4u, last) * w_co, min(co0 + 5u, last) * w_co,
                           min(co0 + 6u, last) * w_co, min(co0 + 7u, last) * w_co);
    let bl = vec4<f32>(bias[min(co0, last)], bias[min(co0 + 1u, last)], bias[min(co0 + 2u, last)], bias[min(co0 + 3u, last)]);
    let bh = vec4<f32>(bias[min(co0 + 4u, last)], bias[min(co0 + 5u, last)], bias[min(co0 + 6u, last)], bias[min(co0 + 7u, last)]);
    var a0l = bl; var a1l = bl; var a2l = bl; var a3l = bl; var a4l = bl; var a5l = bl; var a6l = bl; var a7l = bl;
    var a0h = bh; var a1h = bh; var a2h = bh; var a3h = bh; var a4h = bh; var a5h = bh; var a6h = bh; var a7h = bh;
    let x_b = (b * p.groups + blk.z) * p.c_in * p.len_in;
    let hi = i32(p.len_in) - 1;
    for (var k = 0u; k < p.kernel; k++) {
        let s = i32(l0 + k) - i32(p.pad);
        let i0 = u32(clamp(s + 0, 0, hi)); let i1 = u32(clamp(s + 1, 0, hi));
        let i2 = u32(clamp(s + 2, 0, hi)); let i3 = u32(clamp(s + 3, 0, hi));
        let i4 = u32(clamp(s + 4, 0, hi)); let i5 = u32(clamp(s + 5, 0, hi));
        let i6 = u32(clamp(s + 6, 0, hi)); let i7 = u32(clamp(s + 7, 0, hi));
        let m0 = select(0.0, 1.0, s + 0 >= 0 && s + 0 <= hi); let m1 = select(0.0, 1.0, s + 1 >= 0 && s + 1 <= hi);
        let m2 = select(0.0, 1.0, s + 2 >= 0 && s + 2 <= hi); let m3 = select(0.0, 1.0, s + 3 >= 0 && s + 3 <= hi);
        let m4 = select(0.0, 1.0, s + 4 >= 0 && s + 4 <= hi); let m5 = select(0.0, 1.0, s + 5 >= 0 && s + 5 <= hi);
        let m6 = select(0.0, 1.0, s + 6 >= 0 && s + 6 <= hi); let m7 = select(0.0, 1.0, s + 7 >= 0 && s + 7 <= hi);
        var xr = x_b;
        var wo = k;
        for (var ci = 0u; ci < p.c_in; ci++) {
            let wl = vec4<f32>(w[wb[0] + wo], w[wb[1] + wo], w[wb[2] + wo], w[wb[3] + wo]);
            let wh = vec4<f32>(w[wb[4] + wo], w[wb[5] + wo], w[wb[6] + wo], w[wb[7] + wo]);
            let x0 = vec4<f32>(x[xr + i0] * m0); a0l += wl * x0; a0h += wh * x0;
            let x1 = vec4<f32>(x[xr + i1] * m1); a1l += wl * x1; a1h += wh * x1;
            let x2 = vec4<f32>(x[xr + i2] * m2); a2l += wl * x2; a2h += wh * x2;
            let x3 = vec4<f32>(x[xr + i3] * m3); a3l += wl * x3; a3h += wh * x3;
            let x4 = vec4<f32>(x[xr + i4] * m4); a4l += wl * x4; a4h += wh * x4;
            let x5 = vec4<f32>(x[xr + i5] * m5); a5l += wl * x5; a5h += wh * x5;
            let x6 = vec4<f32>(x[xr + i6] * m6); a6l += wl * x6; a6h += wh * x6;
            let x7 = vec4<f32>(x[xr + i7] * m7); a7l += wl * x7; a7h += wh * x7;
            xr += p.len_in;
            wo += p.kernel;
        }
    }
    let n = min(8u, last + 1u - co0);
    let o = (b * p.c_out + co0) * p.len_out + l0;
    let r = p.relu != 0u;
    if (l0 < p.len_out) { put8_y(o, p.len_out, n, relu8(a0l, r), relu8(a0h, r)); }
    if (l0 + 1u < p.len_out) { put8_y(o + 1u, p.len_out, n, relu8(a1l, r), relu8(a1h, r)); }
    if (l0 + 2u < p.len_out) { put8_y(o + 2u, p.len_out, n, relu8(a2l, r), relu8(a2h, r)); }
    if (l0 + 3u < p.len_out) { put8_y(o + 3u, p.len_out, n, relu8(a3l, r), relu8(a3h, r)); }
    if (l0 + 4u < p.len_out) { put8_y(o + 4u, p.len_out, n, relu8(a4l, r), relu8(a4h, r)); }
    if (l0 + 5u < p.len_out) { put8_y(o + 5u, p.len_out, n, relu8(a5l, r), relu8(a5h, r)); }
    if (l0 + 6u < p.len_out) { put8_y(o + 6u, p.len_out, n, relu8(a6l, r), relu8(a6h, r)); }
    if (l0 + 7u < p.len_out) { put8_y(o + 7u, p.len_out, n, relu8(a7l, r), relu8(a7h, r)); }
}

fn relu8(v: vec4<f32>, on: bool) -> vec4<f32> {
    return select(v, max(v, vec4<f32>(0.0)), on);
}

// The register kernels' epilogue: channels c..c+7 of one column, the first n of which exist,
// at o, o + s, o + 2s, ... (one helper per buffer: WGSL passes no storage pointers). Straight-
// line code with constant lane indices: a loop that picks each value by its counter indexes a
// private array, which lavapipe runs as a memory round trip per value (15 % of inference).
fn put8_y(o: u32, s: u32, n: u32, lo: vec4<f32>, hi: vec4<f32>) {
    y[o] = lo.x;
    if (n > 1u) { y[o + s] = lo.y; }
    if (n > 2u) { y[o + 2u * s] = lo.z; }
    if (n > 3u) { y[o + 3u * s] = lo.w; }
    if (n > 4u) { y[o + 4u * s] = hi.x; }
    if (n > 5u) { y[o + 5u * s] = hi.y; }
    if (n > 6u) { y[o + 6u * s] = hi.z; }
    if (n > 7u) { y[o + 7u * s] = hi.w; }
}

fn put8_dx(o: u32, s: u32, n: u32, lo: vec4<f32>, hi: vec4<f32>) {
    dx[o] = lo.x;
    if (n > 1u) { dx[o + s] = lo.y; }
    if (n > 2u) { dx[o + 2u * s] = lo.z; }
    if (n > 3u) { dx[o + 3u * s] = lo.w; }
    if (n > 4u) { dx[o + 4u * s] = hi.x; }
    if (n > 5u) { dx[o + 5u * s] = hi.y; }
    if (n > 6u) { dx[o + 6u * s] = hi.z; }
    if (n > 7u) { dx[o + 7u * s] = hi.w; }
}

fn put8_partial(o: u32, s: u32, n: u32, lo: vec4<f32>, hi: vec4<f32>) {
    partial[o] = lo.x;
    if (n > 1u) { partial[o + s] = lo.y; }
    if (n > 2u) { partial[o + 2u * s] = lo.z; }
    if (n > 3u) { partial[o + 3u * s] = lo.w; }
    if (n > 4u) { partial[o + 4u * s] = hi.x; }
    if (n > 5u) { partial[o + 5u * s] = hi.y; }
    if (n > 6u) { partial[o + 6u * s] = hi.z; }
    if (n > 7u) { partial[o + 7u * s] = hi.w; }
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
    let blocks = (p.c_in + 7u) / 8u;
    let g = wid.z / blocks;
    let ci0 = (wid.z % blocks) * 8u;     // within group g
    let last = p.c_in - 1u;
    let per = per_group();
    let wb = array<u32, 8>(min(ci0, last) * p.kernel, min(ci0 + 1u, last) * p.kernel, min(ci0 + 2u, last) * p.kernel,
                           min(ci0 + 3u, last) * p.kernel, min(ci0 + 4u, last) * p.kernel, min(ci0 + 5u, last) * p.kernel,
                           min(ci0 + 6u, last) * p.kernel, min(ci0 + 7u, last) * p.kernel);
    var a0l = vec4<f32>(0.0); var a1l = vec4<f32>(0.0); var a2l = vec4<f32>(0.0); var a3l = vec4<f32>(0.0);
    var a0h = vec4<f32>(0.0); var a1h = vec4<f32>(0.0); var a2h = vec4<f32>(0.0); var a3h = vec4<f32>(0.0);
    let dy_b = (b * p.c_out + g * per) * p.len_out;
    let hi = i32(p.len_out) - 1;
    let w_co = p.c_in * p.kernel;
    for (var k = 0u; k < p.kernel; k++) {
        let s = i32(m0 + p.pad) - i32(k);
        let i0 = u32(clamp(s, 0, hi)); let i1 = u32(clamp(s + 1, 0, hi));
        let i2 = u32(clamp(s + 2, 0, hi)); let i3 = u32(clamp(s + 3, 0, hi));
        let m0_ = select(0.0, 1.0, s >= 0 && s <= hi); let m1 = select(0.0, 1.0, s + 1 >= 0 && s + 1 <= hi);
        let m2 = select(0.0, 1.0, s + 2 >= 0 && s + 2 <= hi); let m3 = select(0.0, 1.0, s + 3 >= 0 && s + 3 <= hi);
        var dr = dy_b;
        var wo = k + g * per * w_co;
        for (var co = 0u; co < per; co++) {
            let d0 = vec4<f32>(grad_at(dr + i0) * m0_); let d1 = vec4<f32>(grad_at(dr + i1) * m1);
            let d2 = vec4<f32>(grad_at(dr + i2) * m2); let d3 = vec4<f32>(grad_at(dr + i3) * m3);
            let wl = vec4<f32>(w[wb[0] + wo], w[wb[1] + wo], w[wb[2] + wo], w[wb[3] + wo]);
            let wh = vec4<f32>(w[wb[4] + wo], w[wb[5] + wo], w[wb[6] + wo], w[wb[7] + wo]);
            a0l += wl * d0; a1l += wl * d1; a2l += wl * d2; a3l += wl * d3;
            a0h += wh * d0; a1h += wh * d1; a2h += wh * d2; a3h += wh * d3;
            dr += p.len_out;
            wo += w_co;
        }
    }
    let n = min(8u, p.c_in - ci0);
    let o = ((b * p.groups + g) * p.c_in + ci0) * p.len_in + m0;
    if (m0 < p.len_in) { put8_dx(o, p.len_in, n, a0l, a0h); }
    if (m0 + 1u < p.len_in) { put8_dx(o + 1u, p.len_in, n, a1l, a1h); }
    if (m0 + 2u < p.len_in) { put8_dx(o + 2u, p.len_in, n, a2l, a2h); }
    if (m0 + 3u < p.len_in) { put8_dx(o + 3u, p.len_in, n, a3l, a3h); }
}

// dw[co, ci, k] = sum_{b, l} dy[b, co, l] * x[b, ci, l + k - pad], and db[co] = sum_{b, l} dy[b, co, l]
// as the extra column j = c_in*K of an implicit GEMM whose x operand is 1 there.
// Register-block variant: each invocation owns 8 output channels (workgroup row z) x 4 input
// channels for one tap k, over the batch rows of split wid.y, so every step of the reduction feeds
// 32 FMAs from 12 loads, 8 of which (dy) are uniform across the workgroup. One extra lane per row
// of workgroups sums the bias gradient. Each lane's loop bounds skip the padding instead of
// masking it.
@compute @workgroup_size(WG)
fn backward_weight(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let n_ci4 = (p.c_in + 3u) / 4u;
    let id = wid.x * WG + lid.x;
    if (id > n_ci4 * p.kernel) { return; }
    let is_bias = id == n_ci4 * p.kernel;
    let k = select(id % p.kernel, 0u, is_bias);
    let ci0 = select((id / p.kernel) * 4u, 0u, is_bias);
    let blk = out_block(wid.z);
    let co0 = blk.x;
    let s = wid.y;
    let last_co = blk.y;
    let last_ci = p.c_in - 1u;
    let row = p.len_out;
    let db8 = array<u32, 8>(min(co0, last_co) * row, min(co0 + 1u, last_co) * row, min(co0 + 2u, last_co) * row,
                            min(co0 + 3u, last_co) * row, min(co0 + 4u, last_co) * row, min(co0 + 5u, last_co) * row,
                            min(co0 + 6u, last_co) * row, min(co0 + 7u, last_co) * row);
    let xr = array<u32, 4>(min(ci0, last_ci) * p.len_in, min(ci0 + 1u, last_ci) * p.len_in,
                           min(ci0 + 2u, last_ci) * p.len_in, min(ci0 + 3u, last_ci) * p.len_in);
    // l + k - pad must lie in [0, len_in); the bias lane takes every position with x = 1
    var shift = i32(k) - i32(p.pad);
    var l_start = u32(max(0, -shift));
    var l_end = u32(clamp(i32(p.len_in) - shift, 0, i32(p.len_out)));
    if (is_bias) { shift = 0; l_start = 0u; l_end = p.len_out; }
    let ones = select(0.0, 1.0, is_bias);
    var a0l = vec4<f32>(0.0); var a1l = vec4<f32>(0.0); var a2l = vec4<f32>(0.0); var a3l = vec4<f32>(0.0);
    var a0h = vec4<f32>(0.0); var a1h = vec4<f32>(0.0); var a2h = vec4<f32>(0.0); var a3h = vec4<f32>(0.0);
    let b_end = min(p.batch, (s + 1u) * p.split_len);
    for (var b = s * p.split_len; b < b_end; b++) {
        let x_b = (b * p.groups + blk.z) * p.c_in * p.len_in;
        let dy_b = b * p.c_out * p.len_out;
        for (var l = l_start; l < l_end; l++) {
            let o = dy_b + l;
            let dl = vec4<f32>(grad_at(db8[0] + o), grad_at(db8[1] + o), grad_at(db8[2] + o), grad_at(db8[3] + o));
            let dh = vec4<f32>(grad_at(db8[4] + o), grad_at(db8[5] + o), grad_at(db8[6] + o), grad_at(db8[7] + o));
            let xi = x_b + u32(min(i32(l) + shift, i32(p.len_in) - 1));
            let x0 = vec4<f32>(select(x[xr[0] + xi], ones, is_bias)); let x1 = vec4<f32>(x[xr[1] + xi]);
            let x2 = vec4<f32>(x[xr[2] + xi]); let x3 = vec4<f32>(x[xr[3] + xi]);
            a0l = fma(dl, x0, a0l); a1l = fma(dl, x1, a1l); a2l = fma(dl, x2, a2l); a3l = fma(dl, x3, a3l);
            a0h = fma(dh, x0, a0h); a1h = fma(dh, x1, a1h); a2h = fma(dh, x2, a2h); a3h = fma(dh, x3, a3h);
        }
    }
    // a{j}l / a{j}h: input channel ci0 + j, output channels co0..co0+3 / co0+4..co0+7
    let cols = p.c_in * p.kernel + 1u;
    let n = min(8u, last_co + 1u - co0);
    let o = s * p.c_out * cols + co0 * cols + select(ci0 * p.kernel + k, cols - 1u, is_bias);
    put8_partial(o, cols, n, a0l, a0h);
    if (is_bias) { return; }
    if (ci0 + 1u < p.c_in) { put8_partial(o + p.kernel, cols, n, a1l, a1h); }
    if (ci0 + 2u < p.c_in) { put8_partial(o + 2u * p.kernel, cols, n, a2l, a2h); }
    if (ci0 + 3u < p.c_in) { put8_partial(o + 3u * p.kernel, cols, n, a3l, a3h); }
}

// dw and db from the partial sums of every split, added in split order.
@compute @workgroup_size(WG)
fn weight_grad_finalize(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_id(wid, lid, nwg);
    let cols = p.c_in * p.kernel + 1u;
    let n = p.c_out * cols;
    if (e >= n) { return; }
    var sum = 0.0;
    for (var s = 0u; s < p.splits; s++) { sum += partial[s * n + e]; }
    let co = e / cols;
    let col = e % cols;
    if (col == cols - 1u) { db[co] = sum; } else { dw[co * (cols - 1u) + col] = sum; }
}

// All layers of a backward pass at once (DeferredFinalize in src/ops/conv1d.rs): a table of
// segments, one per layer, over one buffer of partial sums and the model's flat gradient buffer.
// Here p.splits is the number of segments and p.split_len the total of their outputs.
struct Segment {
    partial: u32,    // offset of the layer's partial sums [splits, c_out, cols]
    outputs: u32,    // c_out * cols
    cols: u32,       // c_in * K + 1 (the last column is the bias)
    splits: u32,
    dw: u32,         // offsets of the weight [c_out, c_in * K] and bias [c_out] gradients
    db: u32,
    first: u32,      // index of the segment's first output over all segments
    _unused: u32,
}
@group(0) @binding(11) var<storage, read> segments: array<Segment>;
@group(0) @binding(12) var<storage, read_write> grads: array<f32>;

@compute @workgroup_size(WG)
fn weight_grad_finalize_all(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                            @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_id(wid, lid, nwg);
    if (e >= p.split_len) { return; }
    var seg = segments[0];
    for (var i = 1u; i < p.splits; i++) {
        if (e >= segments[i].first) { seg = segments[i]; }
    }
    let local = e - seg.first;
    var sum = 0.0;
    for (var s = 0u; s < seg.splits; s++) { sum += partial[seg.partial + s * seg.outputs + local]; }
    let co = local / seg.cols;
    let col = local % seg.cols;
    if (col == seg.cols - 1u) { grads[seg.db + co] = sum; } else { grads[seg.dw + co * (seg.cols - 1u) + col] = sum; }
}

// ---- Tiled variant: implicit GEMMs over workgroup memory (Kernels::Tiled) ----
// out[m, n] = sum_r A[m, r] * B[r, n]. A workgroup of 8x8 invocations owns a 32x32 output tile;
// per chunk of TR values of r it stages A and B in workgroup memory (16 values of each per
// invocation, with global loads that run along positions), then invocation (tx, ty) adds the 4x4
// outer products of rows 4ty.. and columns 4tx.. into four vec4 registers. Tiles are [r][33]:
// the padding keeps both the staging writes and the reads free of bank conflicts.
//   forward:         m = co, n = (b, l), r = (ci, k): A = w,  B = x[b, ci, l + k - pad]
//   backward_input:  m = ci, n = (b, m), r = (co, k): A = w^T, B = dy[b, co, m - k + pad] (masked)
//   backward_weight: m = co, n = (ci, k) or the ones column, r = (b, l) of one split:
//                    A = dy[b, co, l] (masked), B = x[b, ci, l + k - pad] or 1
const TM: u32 = 32u;
const TN: u32 = 32u;
const TR: u32 = 32u;
const TP: u32 = 33u;
var<workgroup> tile_a: array<array<f32, TP>, TR>;   // [r][m]
var<workgroup> tile_b: array<array<f32, TP>, TR>;   // [r][n]
var<private> acc0: vec4<f32>;
var<private> acc1: vec4<f32>;
var<private> acc2: vec4<f32>;
var<private> acc3: vec4<f32>;

fn accumulate_chunk(tx: u32, ty: u32) {
    for (var rr = 0u; rr < TR; rr++) {
        let a = vec4<f32>(tile_a[rr][4u * ty], tile_a[rr][4u * ty + 1u], tile_a[rr][4u * ty + 2u], tile_a[rr][4u * ty + 3u]);
        let b = vec4<f32>(tile_b[rr][4u * tx], tile_b[rr][4u * tx + 1u], tile_b[rr][4u * tx + 2u], tile_b[rr][4u * tx + 3u]);
        acc0 = fma(vec4<f32>(a.x), b, acc0);
        acc1 = fma(vec4<f32>(a.y), b, acc1);
        acc2 = fma(vec4<f32>(a.z), b, acc2);
        acc3 = fma(vec4<f32>(a.w), b, acc3);
    }
}

fn acc_at(i: u32, j: u32) -> f32 {
    var row = acc3;
    if (i == 0u) { row = acc0; } else if (i == 1u) { row = acc1; } else if (i == 2u) { row = acc2; }
    return row[j];
}

// n tile folded over (x, y) like flat_id; m tile along z.
fn tile_n0(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * TN;
}

@compute @workgroup_size(8, 8)
fn forward_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n0 = tile_n0(wid, nwg);
    let per = per_group();
    let tiles = (per + TM - 1u) / TM;    // m tiles per group: none straddles two groups
    let g = wid.z / tiles;
    let m0 = g * per + (wid.z % tiles) * TM;
    let m_end = g * per + per;
    let depth = p.c_in * p.kernel;
    let lane = li % 32u;                 // staging: lanes run along m (A) and n (B)
    let n = n0 + lane;
    let n_ok = n < p.batch * p.len_out;
    let xb = ((n / p.len_out) * p.groups + g) * p.c_in * p.len_in;
    let l = i32(n % p.len_out) - i32(p.pad);
    let m = m0 + lane;
    acc0 = vec4<f32>(0.0); acc1 = acc0; acc2 = acc0; acc3 = acc0;
    for (var r0 = 0u; r0 < depth; r0 += TR) {
        for (var q = 0u; q < 16u; q++) {
            let rl = li / 32u + 2u * q;
            let r = r0 + rl;
            var a = 0.0;
            if (m < m_end && r < depth) { a = w[m * depth + r]; }
            tile_a[rl][lane] = a;
            var bv = 0.0;
            let src = l + i32(r % p.kernel);
            if (n_ok && r < depth && src >= 0 && src < i32(p.len_in)) {
                bv = x[xb + (r / p.kernel) * p.len_in + u32(src)];
            }
            tile_b[rl][lane] = bv;
        }
        workgroupBarrier();
        accumulate_chunk(lid.x, lid.y);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + 4u * lid.y + i;
        if (co >= m_end) { break; }
        for (var j = 0u; j < 4u; j++) {
            let nn = n0 + 4u * lid.x + j;
            if (nn >= p.batch * p.len_out) { break; }
            var v = acc_at(i, j) + bias[co];
            if (p.relu != 0u) { v = max(v, 0.0); }
            y[((nn / p.len_out) * p.c_out + co) * p.len_out + nn % p.len_out] = v;
        }
    }
}

@compute @workgroup_size(8, 8)
fn backward_input_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_id) lid: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let n0 = tile_n0(wid, nwg);
    let tiles = (p.c_in + TM - 1u) / TM;
    let g = wid.z / tiles;
    let m0 = (wid.z % tiles) * TM;       // input channels within group g
    let per = per_group();
    let depth = per * p.kernel;
    let lane = li % 32u;
    let n = n0 + lane;
    let n_ok = n < p.batch * p.len_in;
    let dyb = (n / p.len_in) * p.c_out * p.len_out;
    let l = i32(n % p.len_in) + i32(p.pad);
    let m = m0 + lane;                   // input channel
    acc0 = vec4<f32>(0.0); acc1 = acc0; acc2 = acc0; acc3 = acc0;
    for (var r0 = 0u; r0 < depth; r0 += TR) {
        for (var q = 0u; q < 16u; q++) {
            let rl = li / 32u + 2u * q;
            let r = r0 + rl;
            let co = g * per + r / p.kernel;
            let k = r % p.kernel;
            var a = 0.0;
            if (m < p.c_in && r < depth) { a = w[(co * p.c_in + m) * p.kernel + k]; }
            tile_a[rl][lane] = a;
            var bv = 0.0;
            let src = l - i32(k);
            if (n_ok && r < depth && src >= 0 && src < i32(p.len_out)) {
                bv = grad_at(dyb + co * p.len_out + u32(src));
            }
            tile_b[rl][lane] = bv;
        }
        workgroupBarrier();
        accumulate_chunk(lid.x, lid.y);
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i++) {
        let ci = m0 + 4u * lid.y + i;
        if (ci >= p.c_in) { break; }
        for (var j = 0u; j < 4u; j++) {
            let nn = n0 + 4u * lid.x + j;
            if (nn >= p.batch * p.len_in) { break; }
            dx[(((nn / p.len_in) * p.groups + g) * p.c_in + ci) * p.len_in + nn % p.len_in] = acc_at(i, j);
        }
    }
}

// Weight gradient: workgroup (n tile wid.x, m tile wid.y, split wid.z); partial sums per split.
@compute @workgroup_size(8, 8)
fn backward_weight_tiled(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                         @builtin(local_invocation_index) li: u32) {
    let cols = p.c_in * p.kernel + 1u;
    let n0 = wid.x * TN;
    let per = per_group();
    let tiles = (per + TM - 1u) / TM;
    let g = wid.y / tiles;
    let m0 = g * per + (wid.y % tiles) * TM;
    let m_end = g * per + per;
    let s = wid.z;
    let total = p.batch * p.len_out;
    let r_begin = s * p.split_len;
    let r_end = min(total, r_begin + p.split_len);
    let lane = li % 32u;                 // staging: lanes run along r (positions)
    acc0 = vec4<f32>(0.0); acc1 = acc0; acc2 = acc0; acc3 = acc0;
    for (var r0 = r_begin; r0 < r_end; r0 += TR) {
        let r = r0 + lane;
        let inside = r < r_end;
        let b = r / p.len_out;
        let l = r % p.len_out;
        for (var q = 0u; q < 16u; q++) {
            let t = li / 32u + 2u * q;
            let co = m0 + t;
            var a = 0.0;
            if (inside && co < m_end) { a = grad_at((b * p.c_out + co) * p.len_out + l); }
            tile_a[lane][t] = a;
            let j = n0 + t;
            var bv = 0.0;
            if (inside && j < cols) {
                if (j == cols - 1u) {
                    bv = 1.0;
                } else {
                    let src = i32(l) + i32(j % p.kernel) - i32(p.pad);
                    if (src >= 0 && src < i32(p.len_in)) {
                        bv = x[((b * p.groups + g) * p.c_in + j / p.kernel) * p.len_in + u32(src)];
                    }
                }
            }
            tile_b[lane][t] = bv;
        }
        workgroupBarrier();
        accumulate_chunk(lid.x, lid.y);
        workgroupBarrier();
    }
    let base = s * p.c_out * cols;
    for (var i = 0u; i < 4u; i++) {
        let co = m0 + 4u * lid.y + i;
        if (co >= m_end) { break; }
        for (var j = 0u; j < 4u; j++) {
            let col = n0 + 4u * lid.x + j;
            if (col >= cols) { break; }
            partial[base + co * cols + col] = acc_at(i, j);
        }
    }
}

