//! The files a keyed operator's state is made of at one checkpoint: what its
//! entry in the checkpoint map holds.
//!
//! ```text
//!   STRATA-KEYED-1 │ key groups │ n │ (name │ kind │ checkpoint │ entries │ bytes) × n
//!   files:  base-j, run-m …, delta-(m+1) … delta-k     restore reads them in this order
//! ```
//!
//! A run is deltas merged: the keys written over several checkpoints, deleted
//! keys kept, so that it stands where its deltas stood.

use crate::error::Result;
use crate::state::{ByteReader, ByteWriter};

const MAGIC: &[u8] = b"STRATA-KEYED-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Every key at one checkpoint.
    Base,
    /// The keys written since the checkpoint before.
    Delta,
    /// The keys written since the file before it, up to this checkpoint:
    /// deltas merged, deleted keys kept.
    Run,
}

impl FileKind {
    fn tag(self) -> u8 {
        match self {
            FileKind::Base => 0,
            FileKind::Delta => 1,
            FileKind::Run => 2,
        }
    }

    pub fn prefix(self) -> &'static str {
        match self {
            FileKind::Base => "base",
            FileKind::Delta => "delta",
            FileKind::Run => "run",
        }
    }
}

/// One file of a keyed operator's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateFile {
    pub kind: FileKind,
    /// The checkpoint whose state it holds (a base) or ends (a delta, a run).
    pub checkpoint: i64,
    pub entries: u64,
    pub bytes: u64,
}

impl StateFile {
    /// Its name in the operator's folder: the kind and the checkpoint, so that
    /// names of one kind sort as the files were written.
    pub fn name(&self) -> String {
        format!("{}-{:020}.arrow", self.kind.prefix(), self.checkpoint)
    }

    /// The checkpoint of a file named as [`Self::name`] names one of `kind`.
    pub fn checkpoint_in(name: &str, kind: FileKind) -> Option<i64> {
        name.strip_prefix(kind.prefix())?
            .strip_prefix('-')?
            .strip_suffix(".arrow")?
            .parse()
            .ok()
    }
}

/// The files of one keyed operator's state at one checkpoint: a base (none
/// before the first compaction), then runs and deltas in checkpoint order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    pub files: Vec<StateFile>,
}

impl Manifest {
    pub fn base(&self) -> Option<&StateFile> {
        self.files.iter().find(|f| f.kind == FileKind::Base)
    }

    /// The files after the base: runs and deltas.
    pub fn deltas(&self) -> impl Iterator<Item = &StateFile> {
        self.files.iter().filter(|f| f.kind != FileKind::Base)
    }

    /// The deltas after the last run (or the base): what a run merges.
    pub fn deltas_in_a_row(&self) -> Vec<&StateFile> {
        self.files
            .iter()
            .filter(|f| f.kind == FileKind::Delta)
            .collect()
    }

    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.files.iter().any(|f| f.name() == name)
    }

    pub fn encode(&self, key_groups: u16) -> Vec<u8> {
        let mut out = ByteWriter::default();
        out.bytes.extend_from_slice(MAGIC);
        out.u64(u64::from(key_groups));
        out.u64(self.files.len() as u64);
        for file in &self.files {
            out.u8(file.kind.tag());
            out.i64(file.checkpoint);
            out.u64(file.entries);
            out.u64(file.bytes);
        }
        out.bytes
    }

    /// Reads a manifest written for `key_groups` key groups.
    pub fn decode(bytes: &[u8], key_groups: u16) -> Result<Self> {
        if bytes.get(..MAGIC.len()) != Some(MAGIC) {
            return Err(ByteReader::new(bytes).corrupt("it is not a keyed state manifest"));
        }
        let mut input = ByteReader::new(&bytes[MAGIC.len()..]);
        let groups = input.u64()?;
        if groups != u64::from(key_groups) {
            return Err(input.corrupt(&format!(
                "it was written for {groups} key groups, not {key_groups}"
            )));
        }
        let mut files = Vec::new();
        for _ in 0..input.u64()? {
            let kind = match input.u8()? {
                0 => FileKind::Base,
                1 => FileKind::Delta,
                2 => FileKind::Run,
                other => return Err(input.corrupt(&format!("a file kind is {other}"))),
            };
            files.push(StateFile {
                kind,
                checkpoint: input.i64()?,
                entries: input.u64()?,
                bytes: input.u64()?,
            });
        }
        if !input.is_done() {
            return Err(input.corrupt("bytes follow the last file"));
        }
        Ok(Self { files })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_names_of_a_kind_sort_in_writing_order() {
        let file = |kind, checkpoint| StateFile {
            kind,
            checkpoint,
            entries: 3,
            bytes: 100,
        };
        let manifest = Manifest {
            files: vec![
                file(FileKind::Base, 9),
                file(FileKind::Run, 10),
                file(FileKind::Delta, 11),
                file(FileKind::Delta, 12),
            ],
        };
        let bytes = manifest.encode(128);
        assert_eq!(Manifest::decode(&bytes, 128).unwrap(), manifest);
        let err = Manifest::decode(&bytes, 64).unwrap_err().to_string();
        assert!(err.contains("written for 128 key groups"), "{err}");
        assert!(manifest.files[2].name() < manifest.files[3].name());
        assert_eq!(manifest.files[2].name(), "delta-00000000000000000011.arrow");
        assert_eq!(manifest.files[1].name(), "run-00000000000000000010.arrow");
        let base = manifest.files[0].name();
        assert_eq!(StateFile::checkpoint_in(&base, FileKind::Base), Some(9));
        assert_eq!(StateFile::checkpoint_in(&base, FileKind::Delta), None);
        assert!(Manifest::decode(b"STRATA-STATE-3", 128).is_err());
    }
}
