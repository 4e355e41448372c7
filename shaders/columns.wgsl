// Column copies between row-major [rows, cols] matrices: the Concat op's forward (each input into
// its columns of the output) and backward (each input's columns of the output gradient back
// out), and the Columns op's slice. One invocation per copied element, one workgroup row z per
// group (GroupedConcat copies every group's block in one dispatch):
//   dst[r, z * dst_group + dst_off + j] = src[r, z * src_group + src_off + j],  r < rows, j < width

struct Params {
    rows: u32,
    width: u32,
    src_cols: u32,
    src_off: u32,
    dst_cols: u32,
    dst_off: u32,
    src_group: u32,
    dst_group: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn copy_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.rows * p.width) { return; }
    let r = i / p.width;
    let j = i % p.width;
    let d = r * p.dst_cols + wid.z * p.dst_group + p.dst_off + j;
    dst[d] = src[r * p.src_cols + wid.z * p.src_group + p.src_off + j];
}

// dst[r, dst_off + j] += src[r, src_off + j]: a shared input's gradient summed over the groups
// that read it (GroupedConcat's backward), one group per dispatch, in group order.
@compute @workgroup_size(WG)
fn add_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.rows * p.width) { return; }
    let r = i / p.width;
    let j = i % p.width;
    let d = r * p.dst_cols + wid.z * p.dst_group + p.dst_off + j;
    dst[d] += src[r * p.src_cols + wid.z * p.src_group + p.src_off + j];
}

// dst = 0 over all rows × dst_cols (a slice's gradient outside its columns).
@compute @workgroup_size(WG)
fn zero(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_id(wid, lid, nwg);
    if (i >= p.rows * p.dst_cols) { return; }
    dst[i] = 0.0;
}
