//! Acknowledged writes survive `kill -9`: a child `sluice` writes keys to the redb
//! store and prints each key once its put returned; the test kills it at a random
//! moment, reopens the store and finds every acknowledged key.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use sluice_store::{LocalStore, LocalStoreOptions, Store};

const KEYS_PER_RUN: usize = 3000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_put_survives_sigkill() {
    let seed = fastrand_seed();
    let mut rng = fastrand_lite(seed);
    eprintln!("random seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("redb://{}", dir.path().display());
    let mut total_acked = 0;
    for run in 0..3 {
        // Kill after a random number of acknowledgements: a random moment in the write
        // loop (at least 350 a run, so three runs always acknowledge 1,000 or more).
        let kill_after = 350 + rng() % 1000;
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["debug", "write-keys", "--store", &url])
            .args(["--count", &KEYS_PER_RUN.to_string()])
            .args(["--prefix", &format!("crash/{run}/")])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sluice");
        let stdout = child.stdout.take().unwrap();
        let mut acked = Vec::new();
        for line in BufReader::new(stdout).lines() {
            acked.push(line.unwrap());
            if acked.len() as u64 == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        child.wait().unwrap();
        assert_eq!(
            acked.len() as u64,
            kill_after,
            "the writer ended before it was killed"
        );
        total_acked += acked.len();

        let store = LocalStore::open_redb(dir.path(), LocalStoreOptions::default()).unwrap();
        for key in &acked {
            let kv =
                store.get(key).await.unwrap().unwrap_or_else(|| {
                    panic!("acknowledged key {key} lost (seed {seed}, run {run})")
                });
            assert_eq!(kv.value, key.as_bytes());
        }
    }
    assert!(total_acked >= 1000, "only {total_acked} keys acknowledged");
}

fn fastrand_seed() -> u64 {
    std::env::var("SLUICE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        })
}

/// A small xorshift generator, so the test needs no extra crate and a seed replays a run.
fn fastrand_lite(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed | 1;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}
