//! `cairn-delayproxy`: gives a local object store the first-byte latency of a remote one, for
//! `bench/run.sh` (the `prefetch` workload with `BENCH_PF_DELAYS`).
//!
//! ```text
//! cairn-delayproxy LISTEN_ADDR UPSTREAM_ADDR DELAY_MS
//! ```
//!
//! Every byte a client sends is forwarded to the upstream `DELAY_MS` milliseconds after it
//! arrived (a delay line: order and throughput are kept, everything is shifted by the delay);
//! the upstream's answers come back at once. So each HTTP request, and therefore each GET's
//! first byte, is `DELAY_MS` later, while a response body streams at the store's speed: the
//! shape of a store across a network (the kernel has no `netem` here). Connections are
//! independent; the proxy runs until killed. Only for benchmarks on 127.0.0.1.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Most chunks waiting in one connection's delay line; a full line stops reading the client
/// (its bytes wait in the socket, as on a congested link).
const LINE_CHUNKS: usize = 1024;
/// Largest chunk read from a client at once.
const CHUNK: usize = 64 * 1024;
/// Buffer for the upstream's answers.
const RESPONSE_BUF: usize = 256 * 1024;

fn usage() -> ! {
    eprintln!("usage: cairn-delayproxy LISTEN_ADDR UPSTREAM_ADDR DELAY_MS");
    std::process::exit(2);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, delay] = args.as_slice() else {
        usage()
    };
    let (Ok(listen), Ok(upstream), Ok(delay_ms)) = (
        listen.parse::<SocketAddr>(),
        upstream.parse::<SocketAddr>(),
        delay.parse::<u64>(),
    ) else {
        usage()
    };
    let delay = Duration::from_millis(delay_ms);
    let listener = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cairn-delayproxy: cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    eprintln!("cairn-delayproxy: {listen} -> {upstream}, client bytes delayed {delay_ms} ms");
    loop {
        let (client, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cairn-delayproxy: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = relay(client, upstream, delay).await {
                eprintln!("cairn-delayproxy: connection: {e}");
            }
        });
    }
}

/// Relays one connection: client bytes through the delay line, upstream bytes straight back.
async fn relay(client: TcpStream, upstream: SocketAddr, delay: Duration) -> std::io::Result<()> {
    let server = TcpStream::connect(upstream).await?;
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (mut client_rd, mut client_wr) = client.into_split();
    let (mut server_rd, mut server_wr) = server.into_split();
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(LINE_CHUNKS);

    let inbound = async move {
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = client_rd.read(&mut buf).await?;
            if n == 0 {
                return Ok::<(), std::io::Error>(());
            }
            buf.truncate(n);
            if tx.send((Instant::now() + delay, buf)).await.is_err() {
                return Ok(());
            }
        }
    };
    let delayed = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            server_wr.write_all(&chunk).await?;
        }
        server_wr.shutdown().await
    };
    let outbound = async move {
        // Large reads: tokio::io::copy's 8 KiB buffer halves a single stream's speed.
        let mut buf = vec![0u8; RESPONSE_BUF];
        loop {
            let n = server_rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            client_wr.write_all(&buf[..n]).await?;
        }
        client_wr.shutdown().await
    };
    let (a, b, c) = tokio::join!(inbound, delayed, outbound);
    a.and(b).and(c)
}
