//! A test signal that changes all the time, so that a wrongly reused frame, chunk or gain
//! shows in what is computed from it: a chirp, an amplitude-modulated tone, decaying clicks and
//! deterministic noise (xorshift from `seed`), at about -14 dBFS RMS.

pub fn changing(rate: u32, seconds: f64, seed: u64) -> Vec<f32> {
    let n = (seconds * f64::from(rate)) as usize;
    let mut s = seed | 1;
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let chirp = (2.0 * std::f64::consts::PI * (150.0 * t + 400.0 * t * t)).sin();
            let am = (1.0 + (2.0 * std::f64::consts::PI * 0.9 * t).sin())
                * (2.0 * std::f64::consts::PI * 2500.0 * t).sin();
            let click = (-((t % 0.41) * 150.0)).exp();
            (0.2 * chirp + 0.1 * am + 0.3 * click + 0.05 * noise) as f32
        })
        .collect()
}
