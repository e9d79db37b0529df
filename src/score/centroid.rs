//! The first score: distance from a window's embedding to the nearest centre of the normal
//! clusters. k-means (linfa-clustering) summarises normal operation as a few modes (idle,
//! loaded, ...); a window far from every mode is unusual.
//!
//! linfa works on ndarray 0.16 while the rest of earshot uses 0.17: the conversion happens
//! here only, by copying rows (cheap next to fitting).

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;

#[derive(Debug, thiserror::Error)]
pub enum CentroidError {
    #[error(
        "cannot fit {k} clusters to {n} normal windows: give more normal audio or a smaller `kmeans_k`"
    )]
    TooFew { k: usize, n: usize },
    #[error("k-means failed: {0}")]
    Fit(String),
}

/// The default number of clusters for `n` normal windows: about one per 8 windows squared
/// out, so a minute of audio gives ~4 modes and an hour ~30, capped at 32.
pub fn default_k(n: usize) -> usize {
    (((n as f64) / 8.0).sqrt().round() as usize)
        .clamp(1, 32)
        .min(n.max(1))
}

/// Fits `k` centroids to the rows of `x` (L2-normalised embeddings). Deterministic.
pub fn fit(x: &Array2<f32>, k: usize) -> Result<Array2<f32>, CentroidError> {
    let (n, d) = x.dim();
    if k == 0 || n < k {
        return Err(CentroidError::TooFew { k, n });
    }
    let data = ndarray16::Array2::from_shape_vec((n, d), x.iter().map(|&v| f64::from(v)).collect())
        .map_err(|e| CentroidError::Fit(e.to_string()))?;
    let dataset = DatasetBase::from(data);
    let model = KMeans::params(k)
        .n_runs(4)
        .max_n_iterations(200)
        .tolerance(1e-6)
        .fit(&dataset)
        .map_err(|e| CentroidError::Fit(e.to_string()))?;
    let c = model.centroids();
    Array2::from_shape_vec(c.dim(), c.iter().map(|&v| v as f32).collect())
        .map_err(|e| CentroidError::Fit(e.to_string()))
}

/// Euclidean distance from `q` to the nearest row of `centroids`.
pub fn nearest_distance(centroids: &Array2<f32>, q: &[f32]) -> f32 {
    centroids
        .rows()
        .into_iter()
        .map(|c| c.iter().zip(q).map(|(a, b)| (a - b) * (a - b)).sum::<f32>())
        .fold(f32::INFINITY, f32::min)
        .sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_well_separated_clusters() {
        let mut rows = Vec::new();
        for i in 0..60 {
            let base = if i % 2 == 0 { [1.0, 0.0] } else { [0.0, 1.0] };
            let jitter = (i as f32 * 0.37).sin() * 0.01;
            rows.extend_from_slice(&[base[0] + jitter, base[1] - jitter]);
        }
        let x = Array2::from_shape_vec((60, 2), rows).unwrap();
        let c = fit(&x, 2).unwrap();
        assert!(nearest_distance(&c, &[1.0, 0.0]) < 0.02);
        assert!(nearest_distance(&c, &[0.0, 1.0]) < 0.02);
        assert!(nearest_distance(&c, &[0.7, 0.7]) > 0.5);
        assert!(matches!(fit(&x, 61), Err(CentroidError::TooFew { .. })));
    }

    #[test]
    fn default_k_grows_slowly() {
        assert_eq!(default_k(1), 1);
        assert_eq!(default_k(200), 5);
        assert_eq!(default_k(100_000), 32);
    }
}
