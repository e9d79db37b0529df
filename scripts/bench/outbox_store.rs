//! Measurement behind the alert outbox design (src/alert/outbox.rs): durable enqueue and
//! ack of a 600-byte alert with redb 2.6 (one commit each) against an append-only log
//! (append + fdatasync; ack appended unsynced). Not part of the build: run it in a scratch
//! project with `redb = "2"`: `cargo run --release -- DIR` (DIR on the disk to measure).
use std::io::Write;
use std::time::Instant;
const T: redb::TableDefinition<u64, &[u8]> = redb::TableDefinition::new("outbox");
fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let n = 300u64;
    let rec = vec![b'x'; 600];
    // redb: one insert + commit per alert, then one remove + commit.
    let p = format!("{dir}/probe.redb");
    let _ = std::fs::remove_file(&p);
    let db = redb::Database::create(&p).unwrap();
    let mut put = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let w = db.begin_write().unwrap();
        { let mut tb = w.open_table(T).unwrap(); tb.insert(i, rec.as_slice()).unwrap(); }
        w.commit().unwrap();
        put.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut ack = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let w = db.begin_write().unwrap();
        { let mut tb = w.open_table(T).unwrap(); tb.remove(i).unwrap(); }
        w.commit().unwrap();
        ack.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // log: append + fdatasync per alert, ack appended without sync.
    let lp = format!("{dir}/probe.log");
    let _ = std::fs::remove_file(&lp);
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&lp).unwrap();
    let mut lput = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&rec).unwrap(); f.sync_data().unwrap();
        lput.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut lack = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        f.write_all(&rec[..40]).unwrap();
        lack.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let med = |v: &mut Vec<f64>| { v.sort_by(|a, b| a.partial_cmp(b).unwrap()); (v[v.len()/2], v[v.len()*95/100]) };
    println!("redb put median/p95 ms {:?} ack {:?}", med(&mut put), med(&mut ack));
    println!("log  put median/p95 ms {:?} ack {:?}", med(&mut lput), med(&mut lack));
    let _ = std::fs::remove_file(&p); let _ = std::fs::remove_file(&lp);
}
