//! Detection quality on a labelled set, the DCASE Task 2 way: per machine, learn from the
//! training normals, score every test clip, and report the ROC AUC and the partial AUC over
//! false-positive rates 0..0.1 for each scorer.
//!
//! pAUC is standardised like scikit-learn's `roc_auc_score(max_fpr=0.1)` (McClish), which
//! is what the DCASE baselines call; 0.5 is chance for both numbers.
//!
//! [`identify`] measures how well the sound catalog names a fault it has examples of, and
//! [`after_feedback`] how many false events "that was normal" removes on audio it never saw.

use serde::Serialize;
use std::path::{Path, PathBuf};

pub mod after_feedback;
pub mod identify;

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{path}: cannot read manifest: {source}")]
    Read { path: PathBuf, source: csv::Error },
    #[error("cannot read manifest: {0}")]
    File(#[from] crate::files::PathError),
    #[error("{path}: the manifest needs the columns path,machine,split,label (found: {found})")]
    Columns { path: PathBuf, found: String },
    #[error("{path}, line {line}: {detail}")]
    Row {
        path: PathBuf,
        line: u64,
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub path: PathBuf,
    pub machine: String,
    pub split: Split,
    pub anomaly: bool,
    /// The fault of an anomalous clip (the optional `anomaly_type` column, DCASE's name for
    /// it): what fault identification ([`identify`]) must name. `None` for normal clips, and
    /// when the column is missing or empty.
    pub anomaly_type: Option<String>,
}

/// Reads a `path,machine,split,label[,anomaly_type]` CSV (other columns ignored). Relative
/// paths are taken from `root`, else from the manifest's directory.
pub fn read_manifest(path: &Path, root: Option<&Path>) -> Result<Vec<Entry>, ManifestError> {
    let base = root
        .map(Path::to_owned)
        .or_else(|| path.parent().map(Path::to_owned))
        .unwrap_or_default();
    let read_err = |source| ManifestError::Read {
        path: path.to_owned(),
        source,
    };
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(crate::files::open_regular(path)?);
    let headers = rdr.headers().map_err(read_err)?.clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let (Some(pc), Some(mc), Some(sc), Some(lc)) =
        (col("path"), col("machine"), col("split"), col("label"))
    else {
        return Err(ManifestError::Columns {
            path: path.to_owned(),
            found: headers.iter().collect::<Vec<_>>().join(","),
        });
    };
    let tc = col("anomaly_type");
    let mut out = Vec::new();
    for rec in rdr.records() {
        let rec = rec.map_err(read_err)?;
        let line = rec.position().map_or(0, |p| p.line());
        let row_err = |detail: String| ManifestError::Row {
            path: path.to_owned(),
            line,
            detail,
        };
        let get = |i: usize| rec.get(i).unwrap_or("");
        let split = match get(sc).to_ascii_lowercase().as_str() {
            "train" => Split::Train,
            "test" => Split::Test,
            other => return Err(row_err(format!("split {other:?} must be train or test"))),
        };
        let anomaly = match get(lc).to_ascii_lowercase().as_str() {
            "normal" => false,
            "anomaly" | "anomalous" => true,
            other => {
                return Err(row_err(format!(
                    "label {other:?} must be normal or anomaly"
                )));
            }
        };
        if get(pc).is_empty() || get(mc).is_empty() {
            return Err(row_err("path and machine must not be empty".into()));
        }
        if split == Split::Train && anomaly {
            return Err(row_err(
                "an anomaly in the train split: learning uses normal audio only".into(),
            ));
        }
        let p = PathBuf::from(get(pc));
        out.push(Entry {
            path: if p.is_absolute() { p } else { base.join(p) },
            machine: get(mc).to_owned(),
            split,
            anomaly,
            anomaly_type: tc
                .map(get)
                .filter(|t| anomaly && !t.is_empty())
                .map(str::to_owned),
        });
    }
    Ok(out)
}

/// ROC AUC; `None` unless both classes are present.
pub fn auc(scores: &[f32], anomaly: &[bool]) -> Option<f64> {
    let pts = roc(scores, anomaly)?;
    Some(trapezoid(&pts))
}

/// Standardised partial AUC over FPR in [0, max_fpr] (McClish correction).
pub fn pauc(scores: &[f32], anomaly: &[bool], max_fpr: f64) -> Option<f64> {
    let pts = roc(scores, anomaly)?;
    let mut part = Vec::new();
    for w in pts.windows(2) {
        let (a, b) = (w[0], w[1]);
        if part.is_empty() {
            part.push(a);
        }
        if b.0 <= max_fpr {
            part.push(b);
        } else {
            if a.0 < max_fpr {
                let t = (max_fpr - a.0) / (b.0 - a.0);
                part.push((max_fpr, a.1 + t * (b.1 - a.1)));
            }
            break;
        }
    }
    let area = trapezoid(&part);
    let min_area = 0.5 * max_fpr * max_fpr;
    let max_area = max_fpr;
    Some(0.5 * (1.0 + (area - min_area) / (max_area - min_area)))
}

/// ROC points (fpr, tpr) from (0,0) to (1,1), one per distinct score (ties move diagonally).
fn roc(scores: &[f32], anomaly: &[bool]) -> Option<Vec<(f64, f64)>> {
    let pos = anomaly.iter().filter(|&&a| a).count();
    let neg = anomaly.len() - pos;
    if pos == 0 || neg == 0 || scores.len() != anomaly.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut pts = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]].total_cmp(&s).is_eq() {
            if anomaly[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        pts.push((fp as f64 / neg as f64, tp as f64 / pos as f64));
    }
    Some(pts)
}

fn trapezoid(pts: &[(f64, f64)]) -> f64 {
    pts.windows(2)
        .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_pauc_match_scikit_learn() {
        // Values from sklearn.metrics.roc_auc_score on the same arrays
        // (auc 0.75, pauc with max_fpr=0.1 0.7368421052631579; for the second set
        // auc 0.875, pauc 0.868421052631579).
        let y = [false, false, true, true];
        let s = [0.1f32, 0.4, 0.35, 0.8];
        assert!((auc(&s, &y).unwrap() - 0.75).abs() < 1e-12);
        assert!((pauc(&s, &y, 0.1).unwrap() - 0.736_842_105_263_157_9).abs() < 1e-9);
        let y2 = [
            false, true, false, true, false, true, false, false, true, false,
        ];
        let s2 = [0.1f32, 0.9, 0.3, 0.8, 0.35, 0.2, 0.05, 0.5, 0.7, 0.15];
        assert!((auc(&s2, &y2).unwrap() - 0.875).abs() < 1e-9);
        assert!((pauc(&s2, &y2, 0.1).unwrap() - 0.868_421_052_631_579).abs() < 1e-9);
    }

    #[test]
    fn perfect_random_and_degenerate() {
        let y = [false, false, true, true];
        assert_eq!(auc(&[0.0, 0.1, 0.9, 1.0], &y), Some(1.0));
        assert_eq!(pauc(&[0.0, 0.1, 0.9, 1.0], &y, 0.1), Some(1.0));
        assert_eq!(auc(&[0.5; 4], &y), Some(0.5));
        assert_eq!(auc(&[0.5; 2], &[true, true]), None);
    }
}
