// Matrix products with strided operands, one per group z (workgroup row z), the engine of the
// Dense layer and of its grouped form (several networks' layers in one dispatch):
//   c[z*c_group + m*c_row + n] = sum_k A(m, k) * B(k, n)  (+ bias[z*n_total + n] in matmul_bias)
// where A(m, k) = a[z*a_group + m*a_row + k*a_col] and B(k, n) = b[z*b_group + k*b_row + n*b_col].
// Strides let one kernel compute y = x W^T, dx = dy W and dW = dy^T x without transposing
// anything, for every group at once.
//
// Classic workgroup-memory tiling: a 16x16 workgroup loads a 16x16 tile of A and of B into shared
// memory, synchronises, and each invocation accumulates its output from the tiles.

const TILE: u32 = 16u;

struct Params {
    m: u32,
    n: u32,
    k: u32,
    a_row: u32,
    a_col: u32,
    b_row: u32,
    b_col: u32,
    c_row: u32,
    a_group: u32,
    b_group: u32,
    c_group: u32,
    _unused: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

var<workgroup> tile_a: array<array<f32, TILE>, TILE>;
var<workgroup> tile_b: array<array<f32, TILE>, TILE>;

fn tiled_dot(row: u32, col: u32, lid: vec3<u32>, z: u32) -> f32 {
    var acc = 0.0;
    let a0 = z * p.a_group;
    let b0 = z * p.b_group;
    let tiles = (p.k + TILE - 1u) / TILE;
    for (var t = 0u; t < tiles; t++) {
        let ka = t * TILE + lid.x;
        let kb = t * TILE + lid.y;
        tile_a[lid.y][lid.x] = select(0.0, a[a0 + row * p.a_row + ka * p.a_col], row < p.m && ka < p.k);
        tile_b[lid.y][lid.x] = select(0.0, b[b0 + kb * p.b_row + col * p.b_col], kb < p.k && col < p.n);
        workgroupBarrier();
        for (var i = 0u; i < TILE; i++) {
            acc = fma(tile_a[lid.y][i], tile_b[i][lid.x], acc);
        }
        workgroupBarrier();
    }
    return acc;
}

@compute @workgroup_size(TILE, TILE)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let v = tiled_dot(row, col, lid, wid.z);
    if (row < p.m && col < p.n) {
        c[wid.z * p.c_group + row * p.c_row + col] = v;
    }
}

@compute @workgroup_size(TILE, TILE)
fn matmul_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let row = wid.y * TILE + lid.y;
    let col = wid.x * TILE + lid.x;
    let v = tiled_dot(row, col, lid, wid.z);
    if (row < p.m && col < p.n) {
        c[wid.z * p.c_group + row * p.c_row + col] = v + bias[wid.z * p.n + col];
    }
}
