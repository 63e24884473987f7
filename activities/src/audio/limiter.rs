//! The soft limiter of docs/contracts/pipeline.md §4.5 (a **reflow decision**): a plain sum of N
//! speakers can exceed full scale; samples above `t` = 0.891 (−1 dBFS) are bent smoothly towards
//! 1.0 with `t + (1−t)·tanh((|x|−t)/(1−t))`, samples at or below `t` pass unchanged. The output
//! never reaches 1.0, so the MP3 never clips, and normal speech levels are not touched.

/// Threshold: −1 dBFS.
pub const THRESHOLD: f32 = 0.891;
/// The largest output: the `f32` just below 1.0 (`tanh` rounds to exactly 1 in `f32` for
/// loud inputs, and full scale is where a codec clips).
pub const CEILING: f32 = 0.999_999_94;

/// Limit one sample.
#[inline]
pub fn soft_limit(x: f32) -> f32 {
    let a = x.abs();
    if a <= THRESHOLD {
        return x;
    }
    let room = 1.0 - THRESHOLD;
    (THRESHOLD + room * ((a - THRESHOLD) / room).tanh())
        .min(CEILING)
        .copysign(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_the_threshold_nothing_changes() {
        for x in [0.0, 0.1, -0.5, 0.891, -0.891] {
            assert_eq!(soft_limit(x), x);
        }
    }

    #[test]
    fn above_it_the_output_stays_below_full_scale_and_keeps_order_and_sign() {
        let mut last = THRESHOLD;
        for i in 1..=40_000 {
            let x = THRESHOLD + i as f32 * 0.001; // up to ~4.9, four loud speakers at once
            let y = soft_limit(x);
            assert!(y < 1.0 && y >= last, "{x} -> {y}");
            assert_eq!(soft_limit(-x), -y);
            last = y;
        }
        // Continuous at the threshold: no click where limiting starts.
        assert!((soft_limit(THRESHOLD + 1e-4) - THRESHOLD).abs() < 2e-4);
    }
}
