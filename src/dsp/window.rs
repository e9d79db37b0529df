//! Sliding windows over a mono stream: `length` samples every `hop` samples.

/// Cuts a stream into overlapping windows. Keeps only the samples a future window still
/// needs, so memory is bounded by one window whatever the stream's length.
#[derive(Debug)]
pub struct Windower {
    length: usize,
    hop: usize,
    buf: Vec<f32>,
    /// Stream index of `buf[0]`.
    buf_start: u64,
    /// Stream index where the next window starts.
    next_start: u64,
}

impl Windower {
    /// `length` and `hop` in samples; both must be > 0 (checked by config validation).
    pub fn new(length: usize, hop: usize) -> Self {
        let length = length.max(1);
        Self {
            length,
            hop: hop.max(1),
            buf: Vec::with_capacity(length * 2),
            buf_start: 0,
            next_start: 0,
        }
    }

    pub fn length(&self) -> usize {
        self.length
    }
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Stream index just after the last sample pushed (gaps included): where the stream is.
    pub fn position(&self) -> u64 {
        self.buf_start + self.buf.len() as u64
    }

    /// Pushes samples and calls `emit(start_sample, window)` for every window completed.
    pub fn push(&mut self, samples: &[f32], mut emit: impl FnMut(u64, &[f32])) {
        self.buf.extend_from_slice(samples);
        loop {
            let off = (self.next_start - self.buf_start) as usize;
            if off + self.length > self.buf.len() {
                break;
            }
            emit(self.next_start, &self.buf[off..off + self.length]);
            self.next_start += self.hop as u64;
        }
        // Drop what no future window needs (samples before next_start).
        let keep_from = ((self.next_start - self.buf_start) as usize).min(self.buf.len());
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.buf_start += keep_from as u64;
        }
    }

    /// Skips the stream forward over `n` missing samples (a capture gap): windows never span
    /// a gap, since a window half made of missing audio is not a real sound.
    pub fn gap(&mut self, n: u64) {
        let end = self.buf_start + self.buf.len() as u64 + n;
        self.buf.clear();
        self.buf_start = end;
        self.next_start = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_match_direct_slicing_whatever_the_push_sizes() {
        let signal: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        for chunk in [1usize, 7, 64, 1000] {
            let mut w = Windower::new(100, 30);
            let mut got = Vec::new();
            for c in signal.chunks(chunk) {
                w.push(c, |start, win| got.push((start, win.to_vec())));
            }
            let want: Vec<(u64, Vec<f32>)> = (0..)
                .map(|k| k * 30)
                .take_while(|s| s + 100 <= 1000)
                .map(|s| (s as u64, signal[s..s + 100].to_vec()))
                .collect();
            assert_eq!(got, want, "chunk size {chunk}");
        }
    }

    #[test]
    fn gap_restarts_windows_after_the_gap() {
        let mut w = Windower::new(10, 5);
        let mut starts = Vec::new();
        w.push(&[0.0; 12], |s, _| starts.push(s));
        w.gap(100);
        w.push(&[0.0; 10], |s, _| starts.push(s));
        assert_eq!(starts, vec![0, 112]);
    }
}
