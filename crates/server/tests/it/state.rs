//! Module state through the server: the `kv` import against the real redb file under the
//! project root, across swaps and restarts; a damaged file stops the start instead of being
//! replaced; the admin and metrics endpoints count it.

use std::net::SocketAddr;
use std::time::Duration;

use binary::{Envelope, KvOp, KvRequest, KvResponse};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use server::ServerBuilder;

use crate::support::{Project, client, eventually, fixture_guest, get};

/// Sends `request` through the fixture guest's `/kv` route; returns the decoded answer.
pub(crate) async fn kv(addr: SocketAddr, request: KvRequest) -> KvResponse {
    let http = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/m/fixture/kv"))
        .body(Full::new(Bytes::from(request.encode())))
        .unwrap();
    let response = client().request(http).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    KvResponse::decode(&body).unwrap()
}

/// The fixture's entry in `/_admin/modules`.
async fn fixture_status(addr: SocketAddr) -> serde_json::Value {
    let modules: Vec<serde_json::Value> =
        serde_json::from_str(&get(addr, "/_admin/modules").await.body).unwrap();
    modules
        .into_iter()
        .find(|module| module["name"] == "fixture")
        .unwrap()
}

fn set(key: &str, value: &str) -> KvRequest {
    KvRequest::own(KvOp::Set {
        key: key.into(),
        value: value.into(),
    })
}

fn get_key(key: &str) -> KvRequest {
    KvRequest::own(KvOp::Get { key: key.into() })
}

/// The value of a get's answer, `None` when the key is missing.
pub(crate) fn value(response: KvResponse) -> Option<String> {
    match response {
        KvResponse::Entry { value, .. } => Some(String::from_utf8(value).unwrap()),
        KvResponse::Missing => None,
        other => panic!("not a get answer: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_swap_a_trap_and_a_restart() {
    let project = Project::new("state-restart");
    project.install("fixture", fixture_guest());
    let server = project.start().await;
    let addr = server.addr();
    assert!(matches!(
        kv(addr, set("ada", "lovelace")).await,
        KvResponse::Revision { .. }
    ));
    // A trap replaces the instance.
    assert_eq!(get(addr, "/m/fixture/panic").await.status, 500);
    assert_eq!(
        value(kv(addr, get_key("ada")).await).as_deref(),
        Some("lovelace")
    );
    // A new version (the same code with a custom section added) swaps in over the same keys.
    project.install("fixture", &testkit::retagged(fixture_guest(), "2"));
    eventually(Duration::from_secs(30), || async {
        fixture_status(addr).await["swaps"] == 1
    })
    .await;
    assert_eq!(
        value(kv(addr, get_key("ada")).await).as_deref(),
        Some("lovelace")
    );
    // The replaced version's counters join the totals when it has drained and closed.
    eventually(Duration::from_secs(10), || async {
        fixture_status(addr).await["kv_operations"]
            .as_u64()
            .is_some_and(|operations| operations >= 3)
    })
    .await;
    let status = fixture_status(addr).await;
    assert_eq!(status["kv_keys"], 1, "{status}");
    let metrics = get(addr, "/_admin/metrics").await.body;
    assert!(
        metrics.contains("modhost_module_kv_keys{module=\"fixture\"} 1"),
        "{metrics}"
    );
    let commits = metrics
        .lines()
        .find_map(|line| line.strip_prefix("modhost_kv_commit_seconds_count "))
        .unwrap();
    assert!(commits.parse::<u64>().unwrap() >= 1, "{metrics}");
    server.shutdown().await;

    // A new server over the same root finds the file and the key.
    let server = project.start().await;
    assert_eq!(
        value(kv(server.addr(), get_key("ada")).await).as_deref(),
        Some("lovelace")
    );
    assert!(
        project.root.join("state/modhost.redb").is_file(),
        "the database lives under the root"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_state_file_stops_the_start_and_is_kept() {
    let project = Project::new("state-corrupt");
    project.install("fixture", fixture_guest());
    let path = project.root.join("state/modhost.redb");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let garbage = b"this is not a redb database, but somebody's data".repeat(100);
    std::fs::write(&path, &garbage).unwrap();
    let error = ServerBuilder::new(project.config())
        .start()
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("corrupt"), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_store_modules_hear_so() {
    let project = Project::new("state-off");
    project.install("fixture", fixture_guest());
    let mut config = project.config();
    config.state.enabled = false;
    let server = ServerBuilder::new(config).start().await.unwrap();
    assert!(matches!(
        kv(server.addr(), get_key("k")).await,
        KvResponse::Error {
            kind: binary::KvErrorKind::Unavailable,
            ..
        }
    ));
    assert!(!project.root.join("state").exists());
    server.shutdown().await;
}
