//! `strata dev kafka`: librdkafka's mock cluster as a standalone development
//! broker, so that `strata run` and `strata produce` in other processes can
//! share one, and it outlives them. Not for production: it keeps everything
//! in memory and forgets it when it stops.
//!
//! ```text
//!   client ──bootstrap──▶ 127.0.0.1:PORT (forwarded) ──▶ mock broker 127.0.0.1:<its own port>
//!          ◀──metadata: the mock broker's address── then talks to it directly
//! ```
//!
//! The mock cluster listens on a port of its own choosing; `--port` adds a
//! forwarder on a fixed port for the first connection, and the brokers'
//! metadata sends clients on to the mock broker itself.

use anyhow::Context;
use rdkafka::mocking::MockCluster;
use tokio::net::{TcpListener, TcpStream};

/// Runs the broker until Ctrl-C, with `topics` (`NAME` or `NAME:PARTITIONS`) created.
pub async fn serve(host: &str, port: u16, topics: &[String]) -> anyhow::Result<()> {
    let cluster = MockCluster::new(1).context("starting librdkafka's mock cluster")?;
    for topic in topics {
        let (name, partitions) = match topic.split_once(':') {
            Some((name, partitions)) => (
                name,
                partitions
                    .parse::<i32>()
                    .ok()
                    .filter(|&n| n > 0)
                    .with_context(|| {
                        format!("--topic {topic}: the partitions are a number above 0")
                    })?,
            ),
            None => (topic.as_str(), 1),
        };
        cluster
            .create_topic(name, partitions, 1)
            .with_context(|| format!("creating topic {name}"))?;
    }
    let broker = cluster.bootstrap_servers();
    let listener = TcpListener::bind((host, port)).await.with_context(|| {
        format!("binding {host}:{port}; choose another --port (0 picks a free one)")
    })?;
    let address = listener.local_addr()?;
    eprintln!(
        "strata dev kafka: a development broker (in memory; not for production) on {address}; bootstrap-servers = \"{address}\" (the broker itself is {broker}); Ctrl-C stops it"
    );
    tokio::select! {
        _ = forward(listener, broker) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}

/// Forwards each connection to the mock broker.
async fn forward(listener: TcpListener, broker: String) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            // Out of descriptors, say: try again shortly rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let broker = broker.clone();
        tokio::spawn(async move {
            if let Ok(mut upstream) = TcpStream::connect(&broker).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
    }
}
