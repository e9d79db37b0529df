//! Impulsiveness of a window: how far its loudest 10 ms stand out from the rest, in dB.
//!
//! Why a feature beside the network: the embedding of a 1 s window is pooled over the whole
//! window, so a 50 ms impact moves its scores barely more than normal variation does, and the
//! single-window (transient) rule on embedding scores finds it late or never. The energy of
//! the loudest 10 ms block against the *median* 10 ms block does not dilute: an impact 6 dB
//! below the machine's level in RMS still raises one block by tens of dB over the median,
//! while a steady machine keeps the ratio within a few dB. The median (not the mean) is the
//! reference so that the impact itself does not lift it.
//!
//! The value is model-independent and computed on the same resampled window the log-mel is
//! computed from, both at `learn` (normal audio, to calibrate a level) and in the daemon.

/// Length of one block (seconds).
pub const BLOCK_S: f64 = 0.010;
/// Energy floor (mean square) below which a block counts as digital silence: keeps the ratio
/// finite for windows that are mostly zeros.
const ENERGY_FLOOR: f64 = 1e-12;

/// Loudest 10 ms block energy over the median 10 ms block energy of `window` (dB, >= 0).
/// 0 for a window shorter than two blocks or for digital silence.
pub fn impulse_db(window: &[f32], sample_rate: u32) -> f64 {
    let block = ((BLOCK_S * f64::from(sample_rate)).round() as usize).max(1);
    let mut e: Vec<f64> = window
        .chunks_exact(block)
        .map(|b| b.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / block as f64)
        .map(|v| if v.is_finite() { v } else { 0.0 })
        .collect();
    if e.len() < 2 {
        return 0.0;
    }
    let max = e.iter().copied().fold(0.0, f64::max);
    let mid = e.len() / 2;
    let (_, median, _) = e.select_nth_unstable_by(mid, f64::total_cmp);
    let median = *median;
    if max <= ENERGY_FLOOR {
        return 0.0;
    }
    10.0 * (max / median.max(ENERGY_FLOOR)).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    const SR: u32 = 32_000;

    fn noise(n: usize, amp: f32, seed: u64) -> Vec<f32> {
        let mut rng = rand_xoshiro::Xoshiro256PlusPlus::seed_from_u64(seed);
        (0..n)
            .map(|_| amp * (rng.random::<f32>() * 2.0 - 1.0))
            .collect()
    }

    /// Reference by construction: a constant-amplitude window has equal blocks (0 dB); one
    /// block at 10x the amplitude is 20 dB above the median.
    #[test]
    fn one_loud_block_is_measured_against_the_median() {
        let mut w = vec![0.01f32; SR as usize];
        assert!(impulse_db(&w, SR).abs() < 1e-4);
        let block = (SR as f64 * BLOCK_S) as usize;
        w[5 * block..6 * block].iter_mut().for_each(|v| *v = 0.1);
        assert!(
            (impulse_db(&w, SR) - 20.0).abs() < 1e-4,
            "{}",
            impulse_db(&w, SR)
        );
        // A second loud block does not move the median: same value.
        w[50 * block..51 * block].iter_mut().for_each(|v| *v = 0.1);
        assert!((impulse_db(&w, SR) - 20.0).abs() < 1e-4);
    }

    /// A knock that raises the energy of the 1 s window by less than 1 dB (what the pooled
    /// embedding sees) raises the impulse value by more than 8 dB.
    #[test]
    fn a_short_impact_stands_out_where_the_window_energy_does_not() {
        let mut w = noise(SR as usize, 0.1, 1);
        let steady = impulse_db(&w, SR);
        assert!(steady < 4.0, "steady noise: {steady} dB");
        let energy = |x: &[f32]| x.iter().map(|&v| f64::from(v * v)).sum::<f64>();
        let before = energy(&w);
        let rms = (before / w.len() as f64).sqrt() as f32;
        // Decaying ring: peak 10x the machine's RMS, amplitude time constant 10 ms.
        let at = SR as usize / 2;
        for i in 0..(0.06 * SR as f64) as usize {
            let env = (-(i as f32) / (0.010 * SR as f32)).exp();
            w[at + i] += 10.0 * rms * env * (i as f32 * 0.7).sin();
        }
        let rise_db = 10.0 * (energy(&w) / before).log10();
        assert!(rise_db < 1.5, "window energy rose {rise_db} dB");
        let with = impulse_db(&w, SR);
        assert!(
            with > steady + 8.0,
            "impact {with} dB vs steady {steady} dB"
        );
    }

    #[test]
    fn silence_and_short_input_are_zero() {
        assert_eq!(impulse_db(&[0.0; 32_000], SR), 0.0);
        assert_eq!(impulse_db(&[0.5; 100], SR), 0.0);
        assert_eq!(impulse_db(&[], SR), 0.0);
        // Mostly silence with a little sound: finite.
        let mut w = vec![0.0f32; 32_000];
        w[0..640].iter_mut().for_each(|v| *v = 0.1);
        assert!(impulse_db(&w, SR).is_finite());
    }
}
