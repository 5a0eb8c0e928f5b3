//! Shared test pieces, one job per file. Start with `app.rs`.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `app.rs` | [`TestApp`]: the service in-process on 127.0.0.1:0, built with `TestApp::builder(sts_endpoint)` or `TestApp::emulated()` |
//! | `process.rs` | [`ServiceProcess`]: the real binary as a child, on loopback ports reserved for it |
//! | `sts.rs` | [`MockSts`]: the scriptable STS fake (replies per call, per role, per action; arrival times) |
//! | `raw_sts.rs` | [`RawSts`]: an STS on raw TCP for byte-level faults (resets, short bodies, refusals) |
//! | `fake.rs` | the base of every fake remote service: a loopback server and a script of replies |
//! | `metadata.rs`, `uri.rs` | the credential chain's remote sources: ECS metadata, credentials URI |
//! | `jwt.rs` | signed JWTs from the fixture keys, and a JWKS server |
//! | `http.rs`, `logs.rs`, `metrics.rs` | reading what the service answers, logs and counts |
//! | `files.rs`, `ports.rs`, `time.rs` | temp files, held loopback ports, waiting and tokio time |

mod app;
mod fake;
mod files;
mod http;
mod jwt;
mod logs;
mod metadata;
mod metrics;
mod ports;
mod process;
mod raw_sts;
mod sts;
mod time;
mod uri;

pub(crate) use app::{ROLE_ARN, TEST_KEY_ID, TEST_KEY_SECRET, TestApp};
pub(crate) use fake::{FakeServer, expiration_in};
pub(crate) use files::{TempDir, TempFile};
pub(crate) use http::{Answer, http_client, send};
pub(crate) use jwt::{
    JWT_AUDIENCE, JWT_ISSUER, JWT_SECRET, JwksServer, bearer, ec_key, hs256_jwt, hs256_key,
    jwt_claims, jwt_fixture, jwt_fixture_path, rotated_rsa_key, rsa_key, sign_jwt, unix_now,
};
pub(crate) use logs::{LogCapture, assert_logged_denial, audit_line_for, audit_lines};
pub(crate) use metadata::{
    METADATA_CREDENTIALS_PATH, METADATA_TOKEN, MetadataCredentials, MetadataRequest, MetadataToken,
    MockMetadata,
};
pub(crate) use metrics::{sample, scrape};
pub(crate) use ports::ClosedPort;
pub(crate) use process::{Launch, ServiceProcess};
pub(crate) use raw_sts::{RawReply, RawSts, success_body};
pub(crate) use sts::{MockSts, Reply};
pub(crate) use time::{eventually, jump_ahead, max_in_window};
pub(crate) use uri::{MockCredentialsUri, UriReply};
