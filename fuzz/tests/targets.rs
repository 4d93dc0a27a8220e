//! The fuzz targets run as CI runs them: each on its seeds in `corpus/TARGET/`
//! and on mutations of them (bytes flipped, cut, deep nesting, duplicate keys,
//! huge numbers, invalid UTF-8), from seeded generators so that a failure
//! names the seed that reproduces it. Coverage-guided runs are `cargo fuzz`'s
//! (README.md); this is the floor every change must pass.

use std::path::{Path, PathBuf};

/// xorshift64*: small, fast and the same everywhere.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: [&str; 16] = [
    "{",
    "}",
    "[",
    "]",
    "\"",
    "\\",
    ",",
    ":",
    "null",
    "1e999",
    "-0",
    "\\u0000",
    "\\ud800",
    "99999999999999999999999999",
    "\"id\": 1",
    "\u{10ffff}",
];

/// One mutation of `input`.
fn mutate(random: &mut Random, mut input: Vec<u8>) -> Vec<u8> {
    let at = |random: &mut Random, input: &Vec<u8>| random.below(input.len() + 1);
    match random.below(8) {
        0 if !input.is_empty() => {
            let i = random.below(input.len());
            input[i] = random.next() as u8;
        }
        1 => {
            let end = at(random, &input);
            input.truncate(end);
        }
        2 => {
            let piece = PIECES[random.below(PIECES.len())].as_bytes();
            let i = at(random, &input);
            input.splice(i..i, piece.iter().copied());
        }
        3 => {
            let depth = 1 + random.below(60_000);
            let (open, close) = if random.below(2) == 0 {
                ("[", "]")
            } else {
                ("{\"a\":", "}")
            };
            let nested = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            input = format!("{{\"name\": {nested}, \"id\": 1}}").into_bytes();
        }
        4 => {
            let copy = input.clone();
            let i = at(random, &input);
            input.splice(i..i, copy);
        }
        5 => {
            let digits = "7".repeat(1 + random.below(6000));
            input = format!("{{\"id\": {digits}, \"amount\": \"{digits}.5\"}}").into_bytes();
        }
        6 => {
            input = (0..random.below(64)).map(|_| random.next() as u8).collect();
        }
        _ => {
            let i = at(random, &input);
            input.insert(i, b'\xff');
        }
    }
    input
}

/// The seeds of a target.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    let mut seeds: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|err| panic!("{}: {err}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
        .iter()
        .map(|seed| std::fs::read(seed).unwrap())
        .collect()
}

#[test]
fn every_target_survives_its_seeds_and_their_mutations() {
    for (target, body) in strata_fuzz::TARGETS {
        let seeds = corpus(target);
        for seed in &seeds {
            body(seed);
        }
        let runs = if target.ends_with("_record") {
            2_000
        } else {
            600
        };
        for run in 1..=runs as u64 {
            let mut random = Random(run.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut input = seeds[random.below(seeds.len())].clone();
            for _ in 0..1 + random.below(4) {
                input = mutate(&mut random, input);
            }
            let outcome = std::panic::catch_unwind(|| body(&input));
            assert!(
                outcome.is_ok(),
                "{target}: seed {run} failed on {:?}",
                String::from_utf8_lossy(&input[..input.len().min(200)])
            );
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_recursed_into() {
    let deep = format!(
        "INSERT INTO a.b SELECT {}1{} FROM a.c",
        "(".repeat(50_000),
        ")".repeat(50_000)
    );
    assert!(strata_pipelines::parse_pipelines(Path::new("deep.sql"), &deep).is_err());
    let nested = format!(
        "{{\"name\": {}1{}, \"id\": 1}}",
        "[".repeat(40_000),
        "]".repeat(40_000)
    );
    strata_fuzz::json_record(nested.as_bytes());
}
