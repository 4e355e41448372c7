//! Rational-ratio polyphase resampling with a windowed-sinc anti-aliasing filter.
//!
//! To go from `fs_in` to `fs_out` = fs_in · up / down (e.g. 360 → 125 Hz: up 25, down 72),
//! output sample n sits at input position n · down / up. Its value is the input convolved with
//! a low-pass sinc whose cutoff is 90 % of the lower Nyquist frequency, shaped by a Blackman
//! window over ±`ZERO_CROSSINGS` sinc lobes. The position's fractional part takes only `up`
//! values, so the taps are computed once per phase (polyphase). Edges are zero-padded.
//! Chosen over a crate (rubato) because this is one offline call per record with an exact ratio.

/// Sinc lobes on each side of the centre: the filter's length and steepness.
const ZERO_CROSSINGS: f64 = 16.0;
/// Cutoff as a fraction of the lower Nyquist frequency (leaves room for the transition band).
const CUTOFF: f64 = 0.9;

pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The resampling ratio `fs_out / fs_in` as `(up, down)` in lowest terms (rates rounded to
/// 1 mHz): output sample n sits at input position n · down / up.
pub fn ratio(fs_in: f64, fs_out: f64) -> (usize, usize) {
    let (a, b) = (
        (fs_in * 1000.0).round() as u64,
        (fs_out * 1000.0).round() as u64,
    );
    let g = gcd(a, b).max(1);
    ((b / g) as usize, (a / g) as usize)
}

fn cutoff(up: usize, down: usize) -> f64 {
    CUTOFF * 0.5 * (up as f64 / down as f64).min(1.0)
}

/// How far (in input samples) an output sample's filter reaches on either side: a piece of a
/// signal resampled alone gives the same values as the whole signal at least this far from the
/// piece's inner edges, when the piece starts on a multiple of `down`.
pub fn reach(fs_in: f64, fs_out: f64) -> usize {
    let (up, down) = ratio(fs_in, fs_out);
    if up == down {
        return 0;
    }
    (ZERO_CROSSINGS / (2.0 * cutoff(up, down))).ceil() as usize
}

/// Resamples `x` from `fs_in` to `fs_out` (both in Hz; rates are rounded to 1 mHz to find the
/// ratio). Output length is `ceil(len · fs_out / fs_in)`.
pub fn resample(x: &[f32], fs_in: f64, fs_out: f64) -> Vec<f32> {
    let (up, down) = ratio(fs_in, fs_out);
    if up == down || x.is_empty() {
        return x.to_vec();
    }
    // Cutoff in cycles per input sample.
    let fc = cutoff(up, down);
    let half = reach(fs_in, fs_out) as isize; // taps either side, in input samples
    let taps: Vec<Vec<f64>> = (0..up)
        .map(|phase| {
            let frac = phase as f64 / up as f64;
            (-half + 1..=half)
                .map(|k| {
                    let d = k as f64 - frac; // distance from the output position
                    let sinc = if d == 0.0 {
                        1.0
                    } else {
                        (std::f64::consts::PI * 2.0 * fc * d).sin()
                            / (std::f64::consts::PI * 2.0 * fc * d)
                    };
                    let w = (d / half as f64 + 1.0) * 0.5; // 0..1 across the window
                    let blackman = 0.42 - 0.5 * (2.0 * std::f64::consts::PI * w).cos()
                        + 0.08 * (4.0 * std::f64::consts::PI * w).cos();
                    2.0 * fc * sinc * blackman.max(0.0)
                })
                .collect()
        })
        .collect();
    let out_len = (x.len() * up).div_ceil(down);
    (0..out_len)
        .map(|n| {
            let pos = n * down;
            let (base, phase) = ((pos / up) as isize, pos % up);
            let mut acc = 0.0;
            for (t, &h) in taps[phase].iter().enumerate() {
                let i = base - half + 1 + t as isize;
                if i >= 0 && (i as usize) < x.len() {
                    acc += h * f64::from(x[i as usize]);
                }
            }
            acc as f32
        })
        .collect()
}
