// Row-wise softmax, numerically stable (the row maximum is subtracted before exp).
// Used for predictions; training fuses softmax into the loss (focal_loss.wgsl).

struct Params {
    rows: u32,
    classes: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = flat_id(wid, lid, nwg);
    if (r >= p.rows) { return; }
    let base = r * p.classes;
    var m = logits[base];
    for (var j = 1u; j < p.classes; j++) { m = max(m, logits[base + j]); }
    var s = 0.0;
    for (var j = 0u; j < p.classes; j++) { s += exp(logits[base + j] - m); }
    for (var j = 0u; j < p.classes; j++) { probs[base + j] = exp(logits[base + j] - m) / s; }
}
