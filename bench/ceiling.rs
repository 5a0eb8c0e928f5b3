//! The ceiling: the least an axum server can do on `GET /get_sts_token` — hand back a fixed body
//! of the same bytes and headers stsvend answers with. Nothing serving that path on this machine
//! can be faster, so stsvend's figures are reported as a fraction of this one's.
//!
//! `bench-ceiling BODY_FILE [--listen ADDR]` prints `listening on ADDR` once bound.

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(body_file) = args.next() else {
        eprintln!("usage: bench-ceiling BODY_FILE [--listen ADDR]");
        std::process::exit(2);
    };
    let listen = match (args.next().as_deref(), args.next()) {
        (Some("--listen"), Some(addr)) => addr,
        _ => "127.0.0.1:0".to_owned(),
    };
    let body = Bytes::from(std::fs::read(&body_file)?);
    let app = Router::new().route(
        "/get_sts_token",
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-store"),
                    ],
                    body,
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
