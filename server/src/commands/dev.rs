//! `strata dev`: tools for trying Strata on one machine.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum DevCommand {
    /// A development Kafka broker (librdkafka's mock cluster, in memory; not for production)
    /// in a process of its own, so that it outlives the strata processes that use it.
    Kafka {
        /// The port clients bootstrap from; 0 picks a free one.
        #[arg(long, default_value_t = 9092)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// A topic to create at start, NAME or NAME:PARTITIONS (repeatable).
        #[arg(long = "topic")]
        topics: Vec<String>,
    },
}

pub(crate) async fn run(command: DevCommand) -> anyhow::Result<()> {
    let DevCommand::Kafka { port, host, topics } = command;
    strata_server::dev_kafka::serve(&host, port, &topics).await
}
