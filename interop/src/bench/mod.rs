//! `sixpath-bench`: a load generator that measures a SOCKS5 proxy (or a
//! direct connection, the limit) against a sink/source server it runs
//! itself on loopback.
//!
//! # Layout
//!
//! - [`sink`]: the loopback server: reads a 16-byte request head (bytes
//!   up, bytes down), consumes the upload, sends the download (a fixed
//!   pattern), closes.
//! - [`socks5`]: the minimal SOCKS5 CONNECT client (no authentication).
//! - [`workload`]: bulk throughput, connection rate, idle connections.
//! - [`multipath`]: the sink on any address and timed single downloads,
//!   checked against the sink's pattern, for the multipath figures on the
//!   testbed; [`multipath_report`]: their tables, and the soak's.
//! - [`report`]: medians into Markdown tables and an SVG bar chart.

// Byte and connection counts here stay far below 2^52, where the
// conversion to f64 for statistics is exact.
#![allow(clippy::cast_precision_loss)]
// Quantile ranks are computed from a clamped, non-negative fraction.
#![allow(clippy::cast_sign_loss)]

pub mod multipath;
pub mod multipath_report;
pub mod report;
pub mod sink;
pub mod socks5;
pub mod workload;

/// The median of `v` (mean of the middle two for an even count); `NaN`
/// when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    let at = |i: usize| sorted.get(i).copied().unwrap_or(f64::NAN);
    match sorted.len() {
        0 => f64::NAN,
        len if len % 2 == 1 => at(mid),
        _ => f64::midpoint(at(mid - 1), at(mid)),
    }
}

/// The `q` quantile (0..=1) of sorted `v`, nearest rank; `NaN` when empty.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    // Nearest rank: ceil(q·n), at least 1; q is clamped, so never negative.
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len() - 1))
        .copied()
        .unwrap_or(f64::NAN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(&[3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&[4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn quantile_is_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert!((quantile(&v, 0.5) - 50.0).abs() < f64::EPSILON);
        assert!((quantile(&v, 0.99) - 99.0).abs() < f64::EPSILON);
        assert!((quantile(&v, 1.0) - 100.0).abs() < f64::EPSILON);
    }
}
