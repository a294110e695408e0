//! wasi-host benchmarks, each beside its baseline in the same run:
//! - `handle`: a 100-byte request through the worker thread (`LoadedModule::handle_blocking`)
//!   vs the same alloc + write + `handle` + read done with bare wasmer calls on this thread;
//! - `compile`: Cranelift compile vs loading the same module from the on-disk cache;
//! - `instantiate`: starting a one-instance pool (thread, store, WASI env, `init`) and
//!   closing it;
//! - `grants`: the `pages` example module instantiated without and with a directory grant
//!   (group `instantiate_pages`), and its `index.html` answered from the grant (a WASI file
//!   read) vs from a copy compiled into the module (group `serve_index_html`); run just these
//!   with `cargo bench -p wasi-host --bench host -- 'instantiate_pages|serve_index_html'`;
//! - `tiers`: the `users` example module compiled with Cranelift vs Singlepass (group
//!   `compile_users`), and `GET /` listing 20 users on an instance of each (group
//!   `list_users`): `cargo bench -p wasi-host --bench host -- 'compile_users|list_users'`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use binary::{Envelope, HttpRequest, HttpResponse};
use criterion::{Criterion, criterion_group, criterion_main};
use wasi_host::{Compiler, DirGrant, Grants, Host, HostConfig, ModuleConfig, NoBroadcast};

/// A v1 module whose `handle` returns a fixed encoded response stored at offset 0.
fn echo_module() -> Vec<u8> {
    let response = HttpResponse::new(200, b"ok".to_vec()).encode();
    let escaped: String = response
        .iter()
        .map(|byte| format!("\\{byte:02x}"))
        .collect();
    let source = format!(
        r#"(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 4096))
  (data (i32.const 0) "{escaped}")
  (func (export "modhost_abi_version") (result i32) (i32.const 1))
  (func (export "alloc") (param $len i32) (result i32)
    ;; A bump allocator that wraps: the bench never keeps buffers.
    (if (i32.gt_u (global.get $heap) (i32.const 60000)) (then (global.set $heap (i32.const 4096))))
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $len))))
  (func (export "handle") (param i32 i32) (result i64)
    (i64.const {len})))"#,
        len = response.len()
    );
    wat::parse_str(source).unwrap()
}

fn request() -> HttpRequest {
    let request = HttpRequest {
        body: vec![b'x'; 100 - 49],
        ..HttpRequest::new("GET", "/bench")
    };
    assert_eq!(request.encoded_len(), 100);
    request
}

fn handle(c: &mut Criterion) {
    let bytes = echo_module();
    let host = Host::standalone().unwrap();
    let module = host
        .load("bench", &bytes, &ModuleConfig::default())
        .unwrap();
    let request = request();

    // The baseline: the same work with bare wasmer on the calling thread.
    let mut store = wasmer::Store::default();
    let wasm_module = wasmer::Module::new(&store, &bytes).unwrap();
    let instance = wasmer::Instance::new(&mut store, &wasm_module, &wasmer::imports! {}).unwrap();
    let memory = instance.exports.get_memory("memory").unwrap().clone();
    let alloc = instance
        .exports
        .get_typed_function::<i32, i32>(&store, "alloc")
        .unwrap();
    let guest_handle = instance
        .exports
        .get_typed_function::<(i32, i32), i64>(&store, "handle")
        .unwrap();

    let mut group = c.benchmark_group("handle_100B");
    group.bench_function("bare_wasmer", |b| {
        b.iter(|| {
            let encoded = request.encode();
            let ptr = alloc.call(&mut store, encoded.len() as i32).unwrap();
            memory.view(&store).write(ptr as u64, &encoded).unwrap();
            let packed = guest_handle
                .call(&mut store, ptr, encoded.len() as i32)
                .unwrap();
            let mut out = vec![0u8; packed as u32 as usize];
            memory
                .view(&store)
                .read((packed >> 32) as u64, &mut out)
                .unwrap();
            black_box(HttpResponse::decode(&out).unwrap())
        })
    });
    group.bench_function("worker_thread", |b| {
        b.iter(|| black_box(module.handle_blocking(request.clone()).unwrap()))
    });
    group.finish();
    module.close();
}

fn fixture_wasm() -> Vec<u8> {
    testkit::fixture_guest().to_vec()
}

fn compile(c: &mut Criterion) {
    let bytes = fixture_wasm();
    let cache_dir =
        std::env::temp_dir().join(format!("modhost-bench-cache-{}", std::process::id()));
    let cached = HostConfig {
        cache_dir: Some(cache_dir.clone()),
        ..HostConfig::default()
    };
    let fresh = |config: &HostConfig| {
        Host::new(config.clone(), bus::Bus::new(), Arc::new(NoBroadcast)).unwrap()
    };
    fresh(&cached).compile("warm", &bytes).unwrap();

    let mut group = c.benchmark_group(format!("compile_{}KB", bytes.len() / 1024));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    let cold_host = fresh(&HostConfig::default());
    group.bench_function("cranelift", |b| {
        // A new host each time: no in-memory cache either.
        b.iter_batched(
            || fresh(&HostConfig::default()),
            |host| black_box(host.compile("cold", &bytes).unwrap()),
            criterion::BatchSize::PerIteration,
        )
    });
    group.bench_function("disk_cache", |b| {
        b.iter_batched(
            || fresh(&cached),
            |host| black_box(host.compile("warm", &bytes).unwrap()),
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
    drop(cold_host);

    let host = fresh(&HostConfig::default());
    let compiled = host.compile("fixture", &bytes).unwrap();
    let mut group = c.benchmark_group("instantiate");
    group.sample_size(20);
    group.bench_function("pool_of_1_with_init", |b| {
        b.iter(|| {
            let module = host
                .instantiate(&compiled, &ModuleConfig::default())
                .unwrap();
            module.close();
        })
    });
    group.finish();
    let _ = std::fs::remove_dir_all(cache_dir);
}

fn grants(c: &mut Criterion) {
    let bytes = testkit::example_module("pages");
    let host = Host::standalone().unwrap();
    let compiled = host.compile("pages", &bytes).unwrap();
    let granted = ModuleConfig {
        grants: Grants {
            dirs: vec![DirGrant {
                guest: "/assets".into(),
                host: testkit::repo_root().join("modules/pages/assets"),
                read_only: true,
            }],
            ..Grants::default()
        },
        ..ModuleConfig::default()
    };

    let mut group = c.benchmark_group("instantiate_pages");
    group.sample_size(20);
    for (name, config) in [
        ("no_grant", ModuleConfig::default()),
        ("one_grant", granted.clone()),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let module = host.instantiate(&compiled, &config).unwrap();
                module.close();
            })
        });
    }
    group.finish();

    let module = host.instantiate(&compiled, &granted).unwrap();
    module.go_live().unwrap();
    let mut group = c.benchmark_group("serve_index_html");
    for (name, path) in [("from_memory", "/_inline"), ("from_grant", "/index.html")] {
        let request = HttpRequest::new("GET", path);
        let first = module.handle_blocking(request.clone()).unwrap();
        assert_eq!(first.status, 200, "{path}");
        group.bench_function(name, |b| {
            b.iter(|| black_box(module.handle_blocking(request.clone()).unwrap()))
        });
    }
    group.finish();
    module.close();
}

fn tiers(c: &mut Criterion) {
    let bytes = testkit::example_module("users");
    let config_for = |compiler| HostConfig {
        compiler,
        store: Some(Arc::new(state::MemoryStore::new(state::Config::default()))),
        ..HostConfig::default()
    };
    let fresh =
        |compiler| Host::new(config_for(compiler), bus::Bus::new(), Arc::new(NoBroadcast)).unwrap();
    let tiers = [
        ("cranelift", Compiler::Cranelift),
        ("singlepass", Compiler::Singlepass),
    ];

    let mut group = c.benchmark_group("compile_users");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    for (name, compiler) in tiers {
        group.bench_function(name, |b| {
            // A new host each time: nothing cached.
            b.iter_batched(
                || fresh(compiler),
                |host| black_box(host.compile("users", &bytes).unwrap()),
                criterion::BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("list_users");
    for (name, compiler) in tiers {
        let host = fresh(compiler);
        let module = host
            .load("users", &bytes, &ModuleConfig::default())
            .unwrap();
        module.go_live().unwrap();
        for index in 0..20 {
            let create = HttpRequest {
                body: format!(r#"{{"name":"User {index}","email":"user{index}@example.com"}}"#)
                    .into_bytes(),
                ..HttpRequest::new("POST", "/")
            };
            let created = module.handle_blocking(create).unwrap();
            assert_eq!(
                created.status,
                201,
                "{}",
                String::from_utf8_lossy(&created.body)
            );
        }
        let list = HttpRequest::new("GET", "/");
        let first = module.handle_blocking(list.clone()).unwrap();
        assert_eq!(first.status, 200);
        group.bench_function(name, |b| {
            b.iter(|| black_box(module.handle_blocking(list.clone()).unwrap()))
        });
        module.close();
    }
    group.finish();
}

criterion_group!(benches, handle, compile, grants, tiers);
criterion_main!(benches);
