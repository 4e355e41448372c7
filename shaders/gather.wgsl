// The GPU-resident training loop's batch: beats of the training split (uploaded once) picked by
// the epoch's shuffled order, starting at the step's batch_start:
//   x_out[i, :] = data[order[s.batch_start + i], :],  y_out[i] = labels[order[s.batch_start + i]]
// so a step needs no upload and the shuffle stays the CPU's seeded one.

struct Params {
    per_beat: u32,
    count: u32,      // beats in this batch
    _unused0: u32,
    _unused1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<uniform> s: Step;
@group(0) @binding(2) var<storage, read> data: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<u32>;
@group(0) @binding(4) var<storage, read> order: array<u32>;
@group(0) @binding(5) var<storage, read_write> x_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> y_out: array<u32>;

@compute @workgroup_size(WG)
fn gather(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.count * p.per_beat) { return; }
    let beat = i / p.per_beat;
    let j = i % p.per_beat;
    let src = order[s.batch_start + beat];
    x_out[i] = data[src * p.per_beat + j];
    if (j == 0u) { y_out[beat] = labels[src]; }
}
