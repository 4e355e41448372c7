// Prelude prepended to every shader (WGSL has no #include).

// Invocations per workgroup of the 1-D kernels; must equal WORKGROUP in src/gpu/program.rs.
const WG: u32 = 64u;

// Flat invocation index of a 1-D kernel whose workgroups were folded into (x, y) because one
// dimension may hold at most 65,535 workgroups.
fn flat_id(wid: vec3<u32>, lid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * WG + lid.x;
}

// PCG-style integer hash (O'Neill; "Hash Functions for GPU Rendering", Jarzynski & Olano 2020).
// Counter-based: the random number of element i at step s needs no state, so dropout's forward
// and backward agree without storing a mask. Mirrored bit for bit in src/ops/dropout.rs.
fn pcg_hash(v: u32) -> u32 {
    let state = v * 747796405u + 2891336453u;
    let word = ((state >> ((state >> 28u) + 4u)) ^ state) * 277803737u;
    return (word >> 22u) ^ word;
}

// The per-step uniform (StepUniform in src/ops/mod.rs): rewritten once per step, bound by the
// kernels whose behaviour changes from step to step (dropout's mask, Adam's bias correction).
struct Step {
    step: u32,
    lr: f32,
    bias_correction1: f32,
    bias_correction2: f32,
    batch_start: u32,    // first beat of the step in the epoch's order (gather.wgsl)
    _unused0: u32,
    _unused1: u32,
    _unused2: u32,
}

// Inverted-dropout multiplier of element i at `step`: 0 with probability `rate`, else 1 / (1 - rate).
// The keep decision is a hash of (layer seed, step, index), so backward recomputes it instead of
// storing a mask, and max-pool can apply it in the same pass. Uniform from the top 24 bits.
fn dropout_scale(seed: u32, step: u32, rate: f32, i: u32) -> f32 {
    let h = pcg_hash(pcg_hash(seed ^ pcg_hash(step)) ^ i);
    let u = f32(h >> 8u) * (1.0 / 16777216.0);
    return select(0.0, 1.0 / (1.0 - rate), u >= rate);
}
