// Row-wise softmax, numerically stable (the row maximum is subtracted before exp).
// Used for predictions; training fuses softmax into the loss (focal_loss.wgsl).
// members_mean: an ensemble run as one grouped network gives each beat `members` rows of
// probabilities; their mean is added in member order and scaled once, the same f32 operations
// as adding the members' outputs one network at a time.

struct Params {
    rows: u32,
    classes: u32,
    members: u32,
    _unused: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> probs: array<f32>;
@group(0) @binding(3) var<storage, read> probs_in: array<f32>;

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

// out[r, j] = (sum over m in order of probs[(r * members + m), j]) / members
@compute @workgroup_size(WG)
fn members_mean(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.rows * p.classes) { return; }
    let r = i / p.classes;
    let j = i % p.classes;
    let base = r * p.members * p.classes + j;
    var s = probs_in[base];
    for (var m = 1u; m < p.members; m++) { s += probs_in[base + m * p.classes]; }
    probs[i] = s * (1.0 / f32(p.members));
}
