//! The default index: the profile's normal embeddings in memory.
//!
//! Rows are stored L2-normalised in one contiguous row-major buffer so that the exact search is a
//! single linear pass of dot products that the compiler vectorises (eight independent
//! accumulators). The approximate mode builds an HNSW graph (hnsw_rs) over the same rows and then
//! re-computes the distances of the returned candidates with the exact kernel, so both modes
//! report numerically identical distances for the same neighbour.

use hnsw_rs::prelude::{Distance, Hnsw};
use ndarray::ArrayView2;

use super::config::{EmbeddedConfig, SearchMode};
use super::{IndexError, Neighbor, VectorIndex};

/// Embedded normal set; `search` is synchronous and lock-free (shared `&self`).
pub struct EmbeddedIndex {
    dim: usize,
    /// n x dim, row-major, each row unit-length.
    data: Vec<f32>,
    ids: Vec<String>,
    mode: SearchMode,
    ef_search: usize,
    graph: Option<Hnsw<'static, f32, CosineDistance>>,
}

/// Cosine distance on unit vectors for hnsw_rs. Written here rather than using the crate's
/// `DistDot`, which asserts `dot <= 1` and so can panic on rounding for unit vectors.
#[derive(Clone, Copy, Default)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - dot(a, b)).max(0.0)
    }
}

impl EmbeddedIndex {
    /// Copies and normalises `embeddings` (rows = windows). Zero rows are refused: they have no
    /// direction, so their cosine distance is undefined.
    pub fn new(
        embeddings: ArrayView2<'_, f32>,
        ids: Vec<String>,
        cfg: &EmbeddedConfig,
    ) -> Result<Self, IndexError> {
        let (n, dim) = embeddings.dim();
        if ids.len() != n {
            return Err(IndexError::Build(format!(
                "{n} embeddings but {} ids: the profile is inconsistent, re-run `earshot learn`",
                ids.len()
            )));
        }
        if dim == 0 {
            return Err(IndexError::Build("embeddings have 0 dimensions".into()));
        }
        let mut data = Vec::with_capacity(n * dim);
        for (i, row) in embeddings.outer_iter().enumerate() {
            let start = data.len();
            data.extend(row.iter().copied());
            let r = &mut data[start..];
            if !normalise(r) {
                return Err(IndexError::Build(format!(
                    "embedding `{}` is zero or not finite; the profile is damaged, re-run `earshot learn`",
                    ids[i]
                )));
            }
        }
        let graph = match cfg.mode {
            SearchMode::Exact => None,
            SearchMode::Hnsw if n == 0 => None,
            SearchMode::Hnsw => {
                let max_layer = 16.min(((n as f64).ln().ceil() as usize).max(1));
                let g = Hnsw::<f32, CosineDistance>::new(
                    cfg.hnsw.m,
                    n,
                    max_layer,
                    cfg.hnsw.ef_construction,
                    CosineDistance,
                );
                let rows: Vec<(&[f32], usize)> = data
                    .chunks_exact(dim)
                    .enumerate()
                    .map(|(i, r)| (r, i))
                    .collect();
                g.parallel_insert_slice(&rows);
                Some(g)
            }
        };
        Ok(EmbeddedIndex {
            dim,
            data,
            ids,
            mode: cfg.mode,
            ef_search: cfg.hnsw.ef_search,
            graph,
        })
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Changes the HNSW search breadth (recall vs speed) without rebuilding the graph.
    pub fn set_ef_search(&mut self, ef_search: usize) {
        self.ef_search = ef_search.max(1);
    }

    pub fn mode(&self) -> SearchMode {
        self.mode
    }

    /// Synchronous k-NN for the offline scorer: nearest first, cosine distances.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, IndexError> {
        let hits = self.search_indices(query, k)?;
        Ok(hits
            .into_iter()
            .map(|(i, d)| Neighbor {
                id: self.ids[i].clone(),
                distance: d,
            })
            .collect())
    }

    /// Like [`search`](Self::search) but returns row numbers instead of ids (no allocation of
    /// strings; used by recall measurements and the benchmark).
    pub fn search_indices(&self, query: &[f32], k: usize) -> Result<Vec<(usize, f32)>, IndexError> {
        if query.len() != self.dim {
            return Err(IndexError::Dimension {
                expected: self.dim,
                got: query.len(),
            });
        }
        let mut q = query.to_vec();
        if !normalise(&mut q) {
            return Err(IndexError::Config(
                "query embedding is zero or not finite; cannot compute a cosine distance".into(),
            ));
        }
        let k = k.min(self.len());
        if k == 0 {
            return Ok(Vec::new());
        }
        match &self.graph {
            None => Ok(self.exact(&q, k)),
            Some(g) => {
                let ef = self.ef_search.max(k);
                let mut hits: Vec<(usize, f32)> = g
                    .search(&q, k, ef)
                    .into_iter()
                    .map(|n| (n.d_id, self.distance_to_row(&q, n.d_id)))
                    .collect();
                hits.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
                hits.truncate(k);
                Ok(hits)
            }
        }
    }

    /// Brute force over all rows keeping the k best in a small sorted buffer; ties broken by row
    /// number so results are deterministic.
    fn exact(&self, q: &[f32], k: usize) -> Vec<(usize, f32)> {
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        for (i, row) in self.data.chunks_exact(self.dim).enumerate() {
            let d = (1.0 - dot(q, row)).max(0.0);
            if best.len() == k {
                // Strictly better only: an equal distance at a later row loses the tie.
                if d >= best[k - 1].1 {
                    continue;
                }
                best.pop();
            }
            let pos = best.partition_point(|&(_, bd)| bd <= d);
            best.insert(pos, (i, d));
        }
        best
    }

    fn distance_to_row(&self, q: &[f32], i: usize) -> f32 {
        let row = &self.data[i * self.dim..(i + 1) * self.dim];
        (1.0 - dot(q, row)).max(0.0)
    }
}

#[async_trait::async_trait]
impl VectorIndex for EmbeddedIndex {
    fn dim(&self) -> usize {
        self.dim
    }

    fn describe(&self) -> String {
        let mode = match self.mode {
            SearchMode::Exact => "exact".to_string(),
            SearchMode::Hnsw => format!("hnsw ef_search={}", self.ef_search),
        };
        format!(
            "embedded index: {} normal embeddings x {} dims, {mode}",
            self.len(),
            self.dim
        )
    }

    async fn knn(&self, query: &[f32], k: usize) -> Result<Vec<Neighbor>, IndexError> {
        self.search(query, k)
    }
}

/// Dot product with eight independent accumulators so the loop vectorises (AVX/NEON) without
/// `unsafe`; the summation order is fixed, so results are reproducible.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Scales `v` to unit length in place; false if it has no direction (zero or non-finite).
pub fn normalise(v: &mut [f32]) -> bool {
    let norm = (v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    let inv = (1.0 / norm) as f32;
    v.iter_mut().for_each(|x| *x *= inv);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_sum_for_odd_lengths() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        let naive: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (*x as f64) * (*y as f64))
            .sum();
        assert!((dot(&a, &b) as f64 - naive).abs() < 1e-5);
    }

    #[test]
    fn zero_rows_are_refused_with_the_id() {
        let e = ndarray::Array2::<f32>::zeros((2, 4));
        let err = EmbeddedIndex::new(
            e.view(),
            vec!["a".into(), "b".into()],
            &EmbeddedConfig::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("`a`"), "{err}");
    }
}
