//! Table and column lineage (to come): a petgraph model of the warehouse,
//! impact analysis, and OpenLineage output, derived from the catalog and the
//! pipelines' SQL.
