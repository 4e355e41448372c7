// Channel sums for bias gradients and loss means, done on the GPU so nothing is read back:
//   out[c] = scale * sum_{b, l} x[b, c, l]      for x laid out [B, C, L]
// Conv bias: [B, Cout, L]; dense bias: [B, N, 1]; a loss mean: [1, 1, B] with scale 1/B.
// One workgroup per channel: each invocation sums a strided slice, then a tree in workgroup memory.

struct Params {
    batch: u32,
    channels: u32,
    len: u32,
    scale: f32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn channel_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let c = wid.x;
    let per_channel = p.batch * p.len;
    var s = 0.0;
    for (var i = lid.x; i < per_channel; i += WG) {
        let b = i / p.len;
        let l = i % p.len;
        s += x[(b * p.channels + c) * p.len + l];
    }
    partial[lid.x] = s;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid.x < stride) {
            partial[lid.x] += partial[lid.x + stride];
        }
        workgroupBarrier();
    }
    if (lid.x == 0u) {
        out[c] = partial[0] * p.scale;
    }
}
