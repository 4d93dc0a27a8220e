//! A checkpoint is a versioned map: operator id → (fingerprint, bytes).
//!
//! ```text
//!   file:     STRATA-STATE-3 │ n │ (id │ fingerprint │ bytes) × n
//!   restore:  the plan's stateful operators ⟷ the entries
//!               same ids, same fingerprints ──▶ each operator restores its own bytes
//!               otherwise ──────────────────▶ refused, naming the operators that no longer fit
//! ```
//!
//! An operator's entry is written under the id the [`StreamPlan`] gives it,
//! with the fingerprint it declares (what its bytes depend on: its keys,
//! aggregates and the columns of the rows it holds). A plan that changed
//! nothing restores; one whose stateful operators changed is refused before
//! anything is read, so no state is ever misread. The runner keeps its own
//! entry ([`RUNTIME`]: the watermark of the last commit and the source's),
//! which no plan change invalidates. Checkpoints of earlier versions (one
//! positional blob) are told apart by their magic bytes and restored once.

use std::collections::BTreeMap;

use crate::error::{PipelineError, Result, StateChange};
use crate::plan::StreamPlan;
use crate::state::{ByteReader, ByteWriter};

/// The magic bytes a versioned checkpoint starts with.
pub const MAGIC: &[u8] = b"STRATA-STATE-3";

/// The id of the runner's own entry.
pub const RUNTIME: &str = "runtime";

/// One operator's checkpointed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub fingerprint: String,
    pub bytes: Vec<u8>,
}

/// The state of every stateful operator of a pipeline at one commit.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    entries: BTreeMap<String, Entry>,
}

impl Checkpoint {
    pub fn put(&mut self, id: &str, fingerprint: &str, bytes: Vec<u8>) {
        self.entries.insert(
            id.to_string(),
            Entry {
                fingerprint: fingerprint.to_string(),
                bytes,
            },
        );
    }

    /// Takes an operator's entry out.
    pub fn take(&mut self, id: &str) -> Option<Entry> {
        self.entries.remove(id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = ByteWriter::default();
        out.bytes.extend_from_slice(MAGIC);
        out.u64(self.entries.len() as u64);
        for (id, entry) in &self.entries {
            out.bytes(id.as_bytes());
            out.bytes(entry.fingerprint.as_bytes());
            out.bytes(&entry.bytes);
        }
        out.bytes
    }

    /// Reads a versioned checkpoint; `None` when `bytes` are not one (an
    /// earlier version's blob, or something else).
    pub fn decode(bytes: &[u8]) -> Result<Option<Self>> {
        let Some(rest) = bytes.strip_prefix(MAGIC) else {
            return Ok(None);
        };
        let mut input = ByteReader::new(rest);
        let text = |input: &mut ByteReader, what: &str| -> Result<String> {
            let bytes = input.bytes()?;
            String::from_utf8(bytes.to_vec())
                .map_err(|_| input.corrupt(&format!("an entry's {what} is not UTF-8")))
        };
        let mut checkpoint = Checkpoint::default();
        for _ in 0..input.u64()? {
            let id = text(&mut input, "id")?;
            let fingerprint = text(&mut input, "fingerprint")?;
            let bytes = input.bytes()?.to_vec();
            if checkpoint
                .entries
                .insert(id.clone(), Entry { fingerprint, bytes })
                .is_some()
            {
                return Err(input.corrupt(&format!("the operator {id} has two entries")));
            }
        }
        if !input.is_done() {
            return Err(input.corrupt("bytes left over"));
        }
        Ok(Some(checkpoint))
    }

    /// Checks that the checkpoint holds exactly the state `plan` declares,
    /// operator by operator, and that its runner's entry was kept on the same
    /// time (`runtime`: empty for event time); otherwise names what changed.
    pub fn fit(&self, plan: &StreamPlan, runtime: &str) -> Result<()> {
        let mut changes = Vec::new();
        if let Some(entry) = self.entries.get(RUNTIME)
            && entry.fingerprint != runtime
        {
            changes.push(StateChange {
                operator: RUNTIME.to_string(),
                kind: "the pipeline's time (its watermark is of event time or of the clock)"
                    .to_string(),
                written: Some(entry.fingerprint.clone()),
                planned: Some(runtime.to_string()),
            });
        }
        for (id, state) in plan.states() {
            let kind = plan
                .operator(id)
                .map_or("operator", |op| op.kind.as_str())
                .to_string();
            match self.entries.get(id) {
                Some(entry) if entry.fingerprint == state.fingerprint => {}
                written => changes.push(StateChange {
                    operator: id.to_string(),
                    kind,
                    written: written.map(|entry| entry.fingerprint.clone()),
                    planned: Some(state.fingerprint.clone()),
                }),
            }
        }
        for (id, entry) in &self.entries {
            if id != RUNTIME && plan.operator(id).is_none_or(|op| op.state.is_none()) {
                changes.push(StateChange {
                    operator: id.clone(),
                    kind: "operator no longer in the plan".to_string(),
                    written: Some(entry.fingerprint.clone()),
                    planned: None,
                });
            }
        }
        match changes.is_empty() {
            true => Ok(()),
            false => Err(PipelineError::StateMismatch {
                pipeline: plan.pipeline.clone(),
                changes,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Changelog, OperatorKind, PlanOperator, StateInfo};

    fn plan(states: &[(&str, &str)]) -> StreamPlan {
        StreamPlan {
            pipeline: "p".to_string(),
            target: "t".to_string(),
            operators: states
                .iter()
                .map(|(id, fingerprint)| PlanOperator {
                    id: id.to_string(),
                    kind: OperatorKind::GroupAggregate,
                    detail: String::new(),
                    inputs: Vec::new(),
                    changelog: Changelog::Upsert,
                    key: Vec::new(),
                    watermark: None,
                    schema: Vec::new(),
                    state: Some(StateInfo {
                        holds: "groups".to_string(),
                        fingerprint: fingerprint.to_string(),
                    }),
                    refused: None,
                })
                .collect(),
        }
    }

    #[test]
    fn entries_round_trip_through_bytes() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.put("aggregate", "Sum(a)", vec![1, 2, 3]);
        checkpoint.put(RUNTIME, "", Vec::new());
        let decoded = Checkpoint::decode(&checkpoint.encode()).unwrap().unwrap();
        assert_eq!(decoded, checkpoint);
        assert_eq!(decoded.ids().collect::<Vec<_>>(), ["aggregate", RUNTIME]);
    }

    #[test]
    fn an_earlier_versions_blob_is_not_a_versioned_checkpoint() {
        assert!(Checkpoint::decode(b"STRATA-STATE-2\0\0").unwrap().is_none());
    }

    #[test]
    fn truncated_and_padded_checkpoints_are_corrupt_not_misread() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.put("lag-1", "LAG(v)", vec![9; 16]);
        let bytes = checkpoint.encode();
        for cut in MAGIC.len()..bytes.len() {
            let err = Checkpoint::decode(&bytes[..cut]).unwrap_err().to_string();
            assert!(err.contains("corrupt"), "{cut}: {err}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        let err = Checkpoint::decode(&padded).unwrap_err().to_string();
        assert!(err.contains("bytes left over"), "{err}");
    }

    #[test]
    fn an_unchanged_plan_fits_and_a_changed_operator_is_named() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.put("aggregate", "Sum(a)", Vec::new());
        checkpoint.put("lag-1", "LAG(v)", Vec::new());
        checkpoint.put(RUNTIME, "", Vec::new());
        checkpoint
            .fit(&plan(&[("aggregate", "Sum(a)"), ("lag-1", "LAG(v)")]), "")
            .unwrap();

        let err = checkpoint
            .fit(&plan(&[("aggregate", "Max(a)"), ("lag-1", "LAG(v)")]), "")
            .unwrap_err();
        let PipelineError::StateMismatch { changes, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(changes.len(), 1, "{err}");
        assert_eq!(changes[0].operator, "aggregate");
        let text = err.to_string();
        assert!(
            text.contains("aggregate") && text.contains("Sum(a)") && text.contains("Max(a)"),
            "{text}"
        );
    }

    #[test]
    fn operators_added_or_removed_do_not_fit() {
        let mut checkpoint = Checkpoint::default();
        checkpoint.put("lag-1", "LAG(v)", Vec::new());
        let err = checkpoint
            .fit(&plan(&[("aggregate", "Sum(a)")]), "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("aggregate") && err.contains("lag-1") && err.contains("no longer"),
            "{err}"
        );
    }
}
