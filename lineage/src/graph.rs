//! The lineage graph (petgraph): tables, their columns and the pipelines
//! between them, and the queries served on it.
//!
//! ```text
//!   ods.orders ─has─▶ ods.orders.user_id ─join key─┐
//!        └─reads─▶ pipeline:dwd_orders ─writes─▶ dwd.orders ─has─▶ dwd.orders.user_city
//!   dim.users ─has─▶ dim.users.city ────direct──────────────────────────▲
//! ```
//!
//! Node ids: a table is `space.table`, a column `space.table.column`, a
//! pipeline `pipeline:name`. Depth counts tables at table level (a pipeline
//! and the table after it are one step) and columns at column level.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use petgraph::Direction as Way;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use serde::{Deserialize, Serialize};
use strata_catalog::TableDef;

use crate::derive::{PipelineLineage, UseKind};
use crate::error::{LineageError, Result};

pub type NodeId = String;

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Node {
    Table {
        name: String,
        layer: String,
        connector: String,
        owner: Option<String>,
        description: Option<String>,
    },
    Column {
        table: String,
        name: String,
        data_type: String,
    },
    Pipeline {
        name: String,
        target: String,
    },
}

impl Node {
    pub fn id(&self) -> NodeId {
        match self {
            Node::Table { name, .. } => name.clone(),
            Node::Column { table, name, .. } => format!("{table}.{name}"),
            Node::Pipeline { name, .. } => format!("pipeline:{name}"),
        }
    }

    /// The table a table or column node belongs to.
    pub fn table(&self) -> Option<&str> {
        match self {
            Node::Table { name, .. } => Some(name),
            Node::Column { table, .. } => Some(table),
            Node::Pipeline { .. } => None,
        }
    }
}

/// What an edge says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EdgeKind {
    /// Table → its column.
    Has,
    /// Table → a pipeline that reads it.
    Reads,
    /// Pipeline → the table it writes.
    Writes,
    /// Source column → target column, through `pipeline`.
    Column { kind: UseKind, pipeline: String },
}

/// An edge, by its ends' ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edge {
    pub from: NodeId,
    pub to: NodeId,
    #[serde(flatten)]
    pub kind: EdgeKind,
}

/// Which way to follow lineage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Upstream,
    Downstream,
    Both,
}

/// Part of the graph, as answered to a query.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subgraph {
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

/// What changing or dropping a column breaks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Impact {
    pub column: NodeId,
    /// Downstream columns, each with how it uses the column it was reached
    /// from, and how many pipelines away it is.
    pub columns: Vec<(NodeId, UseKind, usize)>,
    pub tables: Vec<NodeId>,
    pub pipelines: Vec<NodeId>,
}

/// The whole graph.
#[derive(Debug, Clone, Default)]
pub struct LineageGraph {
    graph: DiGraph<Node, EdgeKind>,
    by_id: HashMap<NodeId, NodeIndex>,
}

impl LineageGraph {
    /// The graph of `tables` and the pipelines between them.
    pub fn build(tables: &[TableDef], pipelines: &[PipelineLineage]) -> Self {
        let mut graph = Self::default();
        for def in tables {
            let table = def.name.to_string();
            graph.add(Node::Table {
                name: table.clone(),
                layer: def.layer.as_str().to_string(),
                connector: def.kind.connector().to_string(),
                owner: def.owner.clone(),
                description: def.description.clone(),
            });
            for field in def.schema.fields() {
                let column = graph.add(Node::Column {
                    table: table.clone(),
                    name: field.name().clone(),
                    data_type: strata_catalog::ddl::types::flink_type_name(field.data_type()),
                });
                graph.connect(&table, &column, EdgeKind::Has);
            }
        }
        for pipeline in pipelines {
            let id = graph.add(Node::Pipeline {
                name: pipeline.name.clone(),
                target: pipeline.target.clone(),
            });
            for source in &pipeline.sources {
                graph.connect(source, &id, EdgeKind::Reads);
            }
            graph.connect(&id, &pipeline.target, EdgeKind::Writes);
            for (column, origins) in &pipeline.columns {
                let to = format!("{}.{column}", pipeline.target);
                for origin in origins {
                    let from = format!("{}.{}", origin.table, origin.column);
                    graph.connect(
                        &from,
                        &to,
                        EdgeKind::Column {
                            kind: origin.kind,
                            pipeline: pipeline.name.clone(),
                        },
                    );
                }
            }
        }
        graph
    }

    fn add(&mut self, node: Node) -> NodeId {
        let id = node.id();
        if !self.by_id.contains_key(&id) {
            let index = self.graph.add_node(node);
            self.by_id.insert(id.clone(), index);
        }
        id
    }

    /// Adds an edge between known nodes (an unknown end, a table the catalog
    /// no longer has, is left out).
    fn connect(&mut self, from: &str, to: &str, kind: EdgeKind) {
        if let (Some(&a), Some(&b)) = (self.by_id.get(from), self.by_id.get(to)) {
            self.graph.add_edge(a, b, kind);
        }
    }

    pub fn node_count(&self) -> usize {
        self.graph.node_count()
    }

    /// The node with this id, or an error naming the nearest ones.
    pub fn node(&self, id: &str) -> Result<&Node> {
        self.index(id).map(|i| &self.graph[i])
    }

    fn index(&self, id: &str) -> Result<NodeIndex> {
        self.by_id.get(id).copied().ok_or_else(|| {
            let tail = id.rsplit('.').next().unwrap_or(id);
            let mut near: Vec<&String> = self
                .by_id
                .keys()
                .filter(|known| {
                    known.ends_with(tail)
                        || known.starts_with(id)
                        || id.starts_with(known.as_str())
                })
                .collect();
            near.sort();
            near.truncate(5);
            LineageError::UnknownNode {
                node: id.to_string(),
                hint: if near.is_empty() {
                    "name a table as space.table, a column as space.table.column, or a pipeline as pipeline:name".to_string()
                } else {
                    format!(
                        "did you mean {}?",
                        near.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                    )
                },
            }
        })
    }

    /// The nodes within `depth` steps of `id`. At table level, tables and the
    /// pipelines between them; at column level, columns (a table starts from
    /// all of its columns) and their tables.
    pub fn around(
        &self,
        id: &str,
        direction: Direction,
        depth: usize,
        columns: bool,
    ) -> Result<Subgraph> {
        let start = self.index(id)?;
        let starts: Vec<NodeIndex> = match (&self.graph[start], columns) {
            (Node::Table { .. }, true) => self
                .graph
                .edges_directed(start, Way::Outgoing)
                .filter(|e| *e.weight() == EdgeKind::Has)
                .map(|e| e.target())
                .collect(),
            _ => vec![start],
        };
        let mut seen: BTreeSet<NodeIndex> = starts.iter().copied().collect();
        seen.insert(start);
        let ways: &[Way] = match direction {
            Direction::Upstream => &[Way::Incoming],
            Direction::Downstream => &[Way::Outgoing],
            Direction::Both => &[Way::Incoming, Way::Outgoing],
        };
        for &way in ways {
            let mut queue: VecDeque<(NodeIndex, usize)> = starts.iter().map(|&s| (s, 0)).collect();
            while let Some((node, steps)) = queue.pop_front() {
                for edge in self.graph.edges_directed(node, way) {
                    let next = if way == Way::Outgoing {
                        edge.target()
                    } else {
                        edge.source()
                    };
                    let cost = match (edge.weight(), columns) {
                        (EdgeKind::Column { .. }, true) => 1,
                        // A table reaches the next table through a pipeline: one step in
                        // all, taken on the way to the pipeline.
                        (EdgeKind::Reads, false) if way == Way::Outgoing => 1,
                        (EdgeKind::Writes, false) if way == Way::Outgoing => 0,
                        (EdgeKind::Writes, false) => 1,
                        (EdgeKind::Reads, false) => 0,
                        _ => continue,
                    };
                    if steps + cost > depth || !seen.insert(next) {
                        continue;
                    }
                    queue.push_back((next, steps + cost));
                }
            }
        }
        if columns {
            // Each column's table, so that a view can group columns by table.
            let tables: Vec<NodeIndex> = seen
                .iter()
                .filter_map(|&i| self.graph[i].table())
                .filter_map(|t| self.by_id.get(t).copied())
                .collect();
            seen.extend(tables);
        }
        Ok(self.subgraph(&seen))
    }

    /// The nodes and the edges between them.
    fn subgraph(&self, nodes: &BTreeSet<NodeIndex>) -> Subgraph {
        let mut out = Subgraph {
            nodes: nodes.iter().map(|&i| self.graph[i].clone()).collect(),
            edges: Vec::new(),
        };
        for &i in nodes {
            for edge in self.graph.edges_directed(i, Way::Outgoing) {
                if nodes.contains(&edge.target()) {
                    out.edges.push(Edge {
                        from: self.graph[i].id(),
                        to: self.graph[edge.target()].id(),
                        kind: edge.weight().clone(),
                    });
                }
            }
        }
        // In a stable order, so that an unchanged graph stores as the same text.
        out.edges
            .sort_by_cached_key(|e| (e.from.clone(), e.to.clone(), format!("{:?}", e.kind)));
        out
    }

    /// The shortest chain of nodes between two nodes, in the direction data
    /// flows (from `from` to `to`, or from `to` to `from`), through pipelines
    /// and column edges.
    pub fn path(&self, from: &str, to: &str) -> Result<Option<Vec<NodeId>>> {
        let (a, b) = (self.index(from)?, self.index(to)?);
        Ok(self
            .downstream_path(a, b)
            .or_else(|| self.downstream_path(b, a))
            .map(|path| path.into_iter().map(|i| self.graph[i].id()).collect()))
    }

    fn downstream_path(&self, from: NodeIndex, to: NodeIndex) -> Option<Vec<NodeIndex>> {
        let mut previous: HashMap<NodeIndex, NodeIndex> = HashMap::new();
        let mut queue = VecDeque::from([from]);
        while let Some(node) = queue.pop_front() {
            if node == to {
                let mut path = vec![to];
                let mut at = to;
                while let Some(&before) = previous.get(&at) {
                    path.push(before);
                    at = before;
                }
                path.reverse();
                return Some(path);
            }
            for next in self.graph.neighbors_directed(node, Way::Outgoing) {
                if next != from && !previous.contains_key(&next) {
                    previous.insert(next, node);
                    queue.push_back(next);
                }
            }
        }
        None
    }

    /// What breaks if the column `id` changes type or is dropped: every column
    /// downstream of it (whatever the use), their tables, and the pipelines in between.
    pub fn impact(&self, id: &str) -> Result<Impact> {
        let start = self.index(id)?;
        if !matches!(self.graph[start], Node::Column { .. }) {
            return Err(LineageError::UnknownNode {
                node: id.to_string(),
                hint: "impact analysis starts from a column: space.table.column".to_string(),
            });
        }
        let mut reached: BTreeMap<NodeIndex, (UseKind, usize)> = BTreeMap::new();
        let mut pipelines = BTreeSet::new();
        let mut queue = VecDeque::from([(start, 0)]);
        while let Some((node, distance)) = queue.pop_front() {
            for edge in self.graph.edges_directed(node, Way::Outgoing) {
                let EdgeKind::Column { kind, pipeline } = edge.weight() else {
                    continue;
                };
                pipelines.insert(format!("pipeline:{pipeline}"));
                let next = edge.target();
                if next == start {
                    continue;
                }
                match reached.get_mut(&next) {
                    // Reached again as near: a value use outranks a condition.
                    Some((use_kind, at)) if *at == distance + 1 => {
                        *use_kind = (*use_kind).min(*kind)
                    }
                    Some(_) => {}
                    None => {
                        reached.insert(next, (*kind, distance + 1));
                        queue.push_back((next, distance + 1));
                    }
                }
            }
        }
        let tables: BTreeSet<NodeId> = reached
            .keys()
            .filter_map(|&i| self.graph[i].table().map(str::to_string))
            .collect();
        Ok(Impact {
            column: id.to_string(),
            columns: reached
                .into_iter()
                .map(|(i, (kind, distance))| (self.graph[i].id(), kind, distance))
                .collect(),
            tables: tables.into_iter().collect(),
            pipelines: pipelines.into_iter().collect(),
        })
    }

    /// The whole graph, for storing.
    pub fn to_json(&self) -> String {
        let everything: BTreeSet<NodeIndex> = self.graph.node_indices().collect();
        serde_json::to_string(&self.subgraph(&everything)).expect("the graph serializes")
    }

    /// A graph stored by [`to_json`](Self::to_json).
    pub fn from_json(json: &str) -> Result<Self> {
        let stored: Subgraph = serde_json::from_str(json)?;
        let mut graph = Self::default();
        for node in stored.nodes {
            graph.add(node);
        }
        for edge in stored.edges {
            graph.connect(&edge.from, &edge.to, edge.kind);
        }
        Ok(graph)
    }
}

impl Subgraph {
    /// Graphviz DOT: tables as boxes, pipelines as ellipses, columns as
    /// plain nodes; value edges solid, condition edges (join keys, filters,
    /// grouping) dashed.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph lineage {\n  rankdir=LR;\n");
        for node in &self.nodes {
            let (shape, label) = match node {
                Node::Table { name, layer, .. } => ("box", format!("{name}\n{layer}")),
                Node::Column {
                    name, data_type, ..
                } => ("plaintext", format!("{name} {data_type}")),
                Node::Pipeline { name, .. } => ("ellipse", name.clone()),
            };
            out.push_str(&format!(
                "  {} [shape={shape}, label={}];\n",
                dot_quoted(&node.id()),
                dot_quoted(&label)
            ));
        }
        for edge in &self.edges {
            let style = match &edge.kind {
                EdgeKind::Column { kind, .. } if !kind.is_direct() => {
                    format!(" [style=dashed, label={}]", dot_quoted(kind.as_str()))
                }
                EdgeKind::Column { kind, .. } => format!(" [label={}]", dot_quoted(kind.as_str())),
                EdgeKind::Has => " [style=dotted, arrowhead=none]".to_string(),
                EdgeKind::Reads | EdgeKind::Writes => String::new(),
            };
            out.push_str(&format!(
                "  {} -> {}{style};\n",
                dot_quoted(&edge.from),
                dot_quoted(&edge.to)
            ));
        }
        out.push_str("}\n");
        out
    }
}

/// `text` as a DOT string: quotes and backslashes escaped, a line break as
/// DOT's `\n` (Rust's `{:?}` would escape that backslash, and more, again).
pub fn dot_quoted(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
