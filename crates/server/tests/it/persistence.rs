//! The `users` example against the real `modhost` binary: its users outlive a hot swap, a
//! `SIGKILL` in the middle of a burst of writes and a restart, four instances see one state,
//! and two concurrent creates of one email never both succeed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::sync::Mutex;

use crate::support::{Project, client, eventually, get};

/// A `modhost serve` child over `root`, killed on drop.
struct Modhost {
    child: Child,
    addr: SocketAddr,
}

impl Modhost {
    fn start(root: &Path, log_name: &str) -> Modhost {
        let (child, addr) = testkit::spawn_modhost(
            Path::new(env!("CARGO_BIN_EXE_modhost")),
            root,
            &root.join(log_name),
        );
        Modhost { child, addr }
    }

    fn kill(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Modhost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a user; `Some(id)` when the server acknowledged it with a 201.
async fn create(addr: SocketAddr, email: &str) -> Result<Option<u64>, String> {
    let body = format!(r#"{{"name":"P","email":"{email}"}}"#);
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://{addr}/m/users"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = client()
        .request(request)
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|error| error.to_string())?
        .to_bytes();
    match status {
        201 => {
            let user: serde_json::Value = serde_json::from_slice(&body).unwrap();
            Ok(Some(user["id"].as_u64().unwrap()))
        }
        409 => Ok(None),
        other => Err(format!("{other}: {}", String::from_utf8_lossy(&body))),
    }
}

/// Every user, following the `link` header page by page: `(id, email)`.
async fn all_users(addr: SocketAddr) -> Vec<(u64, String)> {
    let mut users = Vec::new();
    let mut path = "/m/users?limit=1000".to_owned();
    loop {
        let reply = get(addr, &path).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        let next = reply
            .headers
            .get("link")
            .map(|link| link.to_str().unwrap().to_owned());
        let page: Vec<serde_json::Value> = serde_json::from_str(&reply.body).unwrap();
        users.extend(page.iter().map(|user| {
            (
                user["id"].as_u64().unwrap(),
                user["email"].as_str().unwrap().to_owned(),
            )
        }));
        match next {
            Some(link) => {
                path = link
                    .strip_prefix('<')
                    .and_then(|rest| rest.split_once('>'))
                    .unwrap()
                    .0
                    .to_owned();
            }
            None => return users,
        }
    }
}

fn write_config(root: &Path) {
    std::fs::write(
        root.join("modhost.toml"),
        "[modules.users]\ninstances = 4\n",
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_survive_a_swap_a_sigkill_mid_burst_and_a_restart() {
    let project = Project::new("persistence");
    let root: PathBuf = project.root.clone();
    write_config(&root);
    let wasm = testkit::example_module("users");
    project.install("users", &wasm);
    let server = Modhost::start(&root, "first.log");
    let addr = server.addr;

    // Two creates of one address at once, ten times: exactly one wins each time.
    for round in 0..10 {
        let email = format!("race{round}@example.org");
        let (a, b) = tokio::join!(create(addr, &email), create(addr, &email));
        let wins = [a.unwrap(), b.unwrap()].iter().flatten().count();
        assert_eq!(wins, 1, "round {round}: both or neither won");
    }

    // A new version swaps in; the users are still there.
    let before = all_users(addr).await;
    assert_eq!(before.len(), 10);
    project.install("users", &testkit::retagged(&wasm, "2"));
    eventually(Duration::from_secs(60), || async {
        let modules: Vec<serde_json::Value> =
            serde_json::from_str(&get(addr, "/_admin/modules").await.body).unwrap();
        modules[0]["swaps"] == 1
    })
    .await;
    assert_eq!(all_users(addr).await, before);

    // A burst of writes from eight clients; SIGKILL once 200 were acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..8 {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut turn = 0;
            while !stop.load(Ordering::Relaxed) {
                turn += 1;
                let email = format!("burst{writer}-{turn}@example.org");
                // After the kill, requests fail: those were never acknowledged.
                if let Ok(Some(id)) = create(addr, &email).await {
                    acknowledged.lock().await.push((id, email));
                }
            }
        }));
    }
    eventually(Duration::from_secs(120), || async {
        acknowledged.lock().await.len() >= 200
    })
    .await;
    server.kill();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acknowledged = acknowledged.lock().await.clone();

    // Restart on the same root: every acknowledged user is there, with its address.
    let server = Modhost::start(&root, "second.log");
    let addr = server.addr;
    let after = all_users(addr).await;
    for user in before.iter().chain(&acknowledged) {
        assert!(after.contains(user), "acknowledged {user:?} was lost");
    }
    // Four instances, one state: every read of every user succeeds, whichever instance.
    for (id, email) in acknowledged.iter().take(40) {
        let reply = get(addr, &format!("/m/users/{id}")).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert!(reply.body.contains(email.as_str()), "{}", reply.body);
    }
    let reply = get(addr, "/_admin/modules").await;
    assert_eq!(reply.status, 200);
    let modules: Vec<serde_json::Value> = serde_json::from_str(&reply.body).unwrap();
    assert_eq!(modules[0]["instances"], 4, "{}", reply.body);
    // Ids keep counting from where they were: none is handed out twice.
    let fresh = create(addr, "after-restart@example.org")
        .await
        .unwrap()
        .unwrap();
    assert!(
        after.iter().all(|(id, _)| *id < fresh),
        "id {fresh} was handed out before"
    );
    server.kill();
}
