//! Replays the fuzzer's committed inputs without the fuzzer: the seeds
//! (`fuzz/seeds/<target>`) and every input that once broke a harness
//! (`fuzz/regressions/<target>`), through the same harnesses `fuzz/run.sh`
//! runs under libFuzzer.

use std::path::PathBuf;

/// Runs `harness` on every file of the target's seeds and regressions;
/// returns how many there were.
fn replay(target: &str, harness: fn(&[u8])) -> usize {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut replayed = 0;
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.map(|entry| entry.expect("entry").path()).collect();
        paths.sort();
        for path in paths {
            let input = std::fs::read(&path).expect("a fuzz input");
            println!("replaying {}", path.display());
            harness(&input);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn decode_inputs_replay() {
    assert!(replay("decode", presence_axum::fuzzing::check_decode) > 0);
}

#[test]
fn connection_inputs_replay() {
    assert!(replay("connection", presence_axum::fuzzing::replay_connection) > 0);
}
