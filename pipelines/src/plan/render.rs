//! A [`StreamPlan`] as Graphviz DOT.

use strata_lineage::graph::dot_quoted;

use super::StreamPlan;

impl StreamPlan {
    /// Operators as boxes (stateful ones doubled), edges labelled with the
    /// changelog kind and key of the stream they carry.
    pub fn to_dot(&self) -> String {
        let mut out = format!(
            "digraph {} {{\n  rankdir=LR;\n  node [shape=box];\n",
            dot_quoted(&self.pipeline)
        );
        for op in &self.operators {
            let mut label = format!("{}\n{}", op.id, op.kind.as_str());
            if let Some(state) = &op.state {
                label.push_str(&format!("\nstate: {}", state.holds));
            }
            let peripheries = if op.state.is_some() { 2 } else { 1 };
            out.push_str(&format!(
                "  {} [label={}, peripheries={peripheries}, tooltip={}];\n",
                dot_quoted(&op.id),
                dot_quoted(&label),
                dot_quoted(&op.detail)
            ));
        }
        for op in &self.operators {
            for input in &op.inputs {
                let from = self
                    .operator(input)
                    .expect("inputs name operators of the plan");
                let mut label = from.changelog.as_str().to_string();
                if !from.key.is_empty() {
                    label.push_str(&format!(" by ({})", from.key.join(", ")));
                }
                out.push_str(&format!(
                    "  {} -> {} [label={}];\n",
                    dot_quoted(input),
                    dot_quoted(&op.id),
                    dot_quoted(&label)
                ));
            }
        }
        out.push_str("}\n");
        out
    }
}
