//! The ABI contract checked before instantiation: which ABI a module speaks, the exports we
//! call and their types, and a module's imports against the table the host defines them from
//! (`imports::IMPORTS`). `docs/ABI.md` is the prose version.

use wasmer::{ExternType, FunctionType, Type};

use crate::error::LoadError;
use crate::imports::IMPORTS;

/// Which ABI a module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AbiVersion {
    /// The original design's ABI: `handle(ptr, len) -> ptr` to NUL-terminated bytes, taking
    /// `"METHOD\nPATH\n"`; `on_message(ptr, len)` with the payload only. A module that exports
    /// no `modhost_abi_version` speaks this.
    V0,
    /// modhost ABI 1: full `binary` envelopes (`HttpRequest`/`HttpResponse`/`Message`),
    /// `handle(ptr, len) -> i64` returning `(ptr << 32) | len`, `alloc`/`dealloc`.
    V1,
}

impl AbiVersion {
    /// The number a module's `modhost_abi_version` export returns (0 for the original ABI).
    pub fn number(self) -> i32 {
        match self {
            AbiVersion::V0 => 0,
            AbiVersion::V1 => 1,
        }
    }
}

/// Name of the export that marks a module as speaking ABI 1 or later.
pub const ABI_VERSION_EXPORT: &str = "modhost_abi_version";

/// The optional ABI 1 export that hands a version's in-memory state over at a hot swap:
/// `snapshot() -> i64`, `(ptr << 32) | len` of the state in guest memory.
pub const SNAPSHOT_EXPORT: &str = "snapshot";

/// The optional ABI 1 export that takes the state over: `restore(ptr, len) -> i32`, 0 = ok.
pub const RESTORE_EXPORT: &str = "restore";

/// The optional ABI 1 export that takes several bus messages in one call:
/// `on_messages(ptr, len)`, an encoded `binary::MessageBatch` whose count field the guest
/// overwrites with the index of the message it is handling (`docs/ABI.md`).
pub const ON_MESSAGES_EXPORT: &str = "on_messages";

/// The optional ABI 1 marker export `modhost_shared_nothing: () -> ()`, never called: the module
/// keeps nothing in instance memory that another instance would need (its state, if any, is in
/// the key-value store), so any number of instances may serve it side by side.
pub const SHARED_NOTHING_EXPORT: &str = "modhost_shared_nothing";

/// Renders a function type like `(i32, i32) -> i64`.
pub(crate) fn render(ty: &FunctionType) -> String {
    let list = |types: &[Type]| {
        types
            .iter()
            .map(|ty| format!("{ty:?}").to_lowercase())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let results = match ty.results() {
        [] => "()".to_owned(),
        [single] => format!("{single:?}").to_lowercase(),
        many => format!("({})", list(many)),
    };
    format!("({}) -> {results}", list(ty.params()))
}

fn ty(params: &[Type], results: &[Type]) -> FunctionType {
    FunctionType::new(params.to_vec(), results.to_vec())
}

use Type::{I32, I64};

/// Host imports (namespace `env`) that can hold the calling thread waiting on something else:
/// another module's reply, a remote server.
const ENV_WAITS: &[&str] = &["request", "http_send"];

/// WASI imports that sleep, poll or wait on a futex or a socket.
const WASI_WAITS: &[&str] = &[
    "poll_oneoff",
    "sched_yield",
    "thread_sleep",
    "futex_wait",
    "sock_accept",
    "sock_recv",
    "sock_send",
    "sock_connect",
];

/// The exports the host calls, with the types each ABI requires.
fn expected_export(name: &str, abi: AbiVersion) -> Option<FunctionType> {
    Some(match (name, abi) {
        ("_initialize" | "init", _) => ty(&[], &[]),
        ("drain", _) => ty(&[], &[I32]),
        ("on_message", _) => ty(&[I32, I32], &[]),
        (ON_MESSAGES_EXPORT, AbiVersion::V1) => ty(&[I32, I32], &[]),
        ("handle", AbiVersion::V0) => ty(&[I32, I32], &[I32]),
        ("handle", AbiVersion::V1) => ty(&[I32, I32], &[I64]),
        ("malloc" | "alloc", _) => ty(&[I32], &[I32]),
        ("dealloc", AbiVersion::V1) => ty(&[I32, I32], &[]),
        (SNAPSHOT_EXPORT, AbiVersion::V1) => ty(&[], &[I64]),
        (RESTORE_EXPORT, AbiVersion::V1) => ty(&[I32, I32], &[I32]),
        (ABI_VERSION_EXPORT, _) => ty(&[], &[I32]),
        (SHARED_NOTHING_EXPORT, AbiVersion::V1) => ty(&[], &[]),
        _ => return None,
    })
}

/// What the static checks learned about a module.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub abi: AbiVersion,
    pub has_init: bool,
    pub has_initialize: bool,
    pub has_drain: bool,
    pub has_on_message: bool,
    /// ABI 1 `on_messages` (with `on_message`, which it needs): messages queued together
    /// go to the guest in one call.
    pub has_on_messages: bool,
    pub has_handle: bool,
    pub has_dealloc: bool,
    /// ABI 1 `snapshot`: this version can hand its state over.
    pub has_snapshot: bool,
    /// ABI 1 `restore`: this version can take a predecessor's state over.
    pub has_restore: bool,
    /// `alloc` or `malloc`, whichever is exported (`alloc` preferred).
    pub allocator: Option<&'static str>,
    pub uses_wasi: bool,
    /// ABI 1 `modhost_shared_nothing`: any number of instances may serve the module.
    pub shared_nothing: bool,
    /// Imports something that waits (outbound HTTP, a bus request, a WASI sleep or poll):
    /// such a module never runs a request on the caller's thread.
    pub waits: bool,
}

/// Checks exports and imports against the ABI before anything runs.
pub(crate) fn check(module_name: &str, module: &wasmer::Module) -> Result<Shape, LoadError> {
    let exports: Vec<(String, ExternType)> = module
        .exports()
        .map(|export| (export.name().to_owned(), export.ty().clone()))
        .collect();
    let has = |name: &str| exports.iter().any(|(export, _)| export == name);
    let abi = if has(ABI_VERSION_EXPORT) {
        AbiVersion::V1
    } else {
        AbiVersion::V0
    };

    for (name, extern_type) in &exports {
        let Some(expected) = expected_export(name, abi) else {
            continue;
        };
        let found = match extern_type {
            ExternType::Function(found) => found.clone(),
            other => {
                return Err(LoadError::ExportSignature {
                    module: module_name.to_owned(),
                    export: name.clone(),
                    found: format!("{other:?}").to_lowercase(),
                    expected: render(&expected),
                });
            }
        };
        if found != expected {
            return Err(LoadError::ExportSignature {
                module: module_name.to_owned(),
                export: name.clone(),
                found: render(&found),
                expected: render(&expected),
            });
        }
    }
    if !exports
        .iter()
        .any(|(name, ty)| name == "memory" && matches!(ty, ExternType::Memory(_)))
    {
        return Err(LoadError::MissingExport {
            module: module_name.to_owned(),
            export: "memory".into(),
            why: "the host reads and writes guest memory through it",
        });
    }
    let allocator = if has("alloc") {
        Some("alloc")
    } else if has("malloc") {
        Some("malloc")
    } else {
        None
    };
    let needs_allocator = has("handle") || has("on_message");
    if needs_allocator && allocator.is_none() {
        return Err(LoadError::MissingExport {
            module: module_name.to_owned(),
            export: "alloc".into(),
            why: "`handle` and `on_message` need an allocator export (`alloc` or `malloc`)",
        });
    }
    let has_on_messages = abi == AbiVersion::V1 && has(ON_MESSAGES_EXPORT);
    if has_on_messages && !has("on_message") {
        return Err(LoadError::MissingExport {
            module: module_name.to_owned(),
            export: "on_message".into(),
            why: "`on_messages` needs `on_message` for single messages and for the rest of a batch that failed before its first message",
        });
    }
    let has_restore = abi == AbiVersion::V1 && has(RESTORE_EXPORT);
    if has_restore && allocator.is_none() {
        return Err(LoadError::MissingExport {
            module: module_name.to_owned(),
            export: "alloc".into(),
            why: "`restore` needs an allocator export (`alloc` or `malloc`) for the state",
        });
    }

    let mut uses_wasi = false;
    let mut waits = false;
    for import in module.imports() {
        let namespace = import.module();
        if namespace.starts_with("wasi") {
            uses_wasi = true;
            waits |= WASI_WAITS.contains(&import.name());
            continue;
        }
        waits |= namespace == "env" && ENV_WAITS.contains(&import.name());
        let known = IMPORTS
            .iter()
            .find(|known| known.name == import.name())
            .map(|known| (known.ty)());
        let matches = match (namespace, &known, import.ty()) {
            ("env", Some(expected), ExternType::Function(found)) => found == expected,
            _ => false,
        };
        if !matches {
            let ty = match import.ty() {
                ExternType::Function(found) => render(found),
                other => format!("{other:?}").to_lowercase(),
            };
            let ty = match &known {
                Some(expected) if namespace == "env" => {
                    format!("{ty}, expected {}", render(expected))
                }
                _ => ty,
            };
            return Err(LoadError::UnknownImport {
                module: module_name.to_owned(),
                namespace: namespace.to_owned(),
                name: import.name().to_owned(),
                ty,
            });
        }
    }

    Ok(Shape {
        abi,
        has_init: has("init"),
        has_initialize: has("_initialize"),
        has_drain: has("drain"),
        has_on_message: has("on_message"),
        has_on_messages,
        has_handle: has("handle"),
        has_dealloc: abi == AbiVersion::V1 && has("dealloc"),
        has_snapshot: abi == AbiVersion::V1 && has(SNAPSHOT_EXPORT),
        has_restore,
        allocator,
        uses_wasi,
        shared_nothing: abi == AbiVersion::V1 && has(SHARED_NOTHING_EXPORT),
        waits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The import table is what docs/ABI.md lists: every import, with the type it gives.
    #[test]
    fn every_import_is_documented_with_its_type() {
        let doc = include_str!("../../../docs/ABI.md");
        for import in IMPORTS {
            let row = doc
                .lines()
                .find(|line| line.starts_with(&format!("| `{}(", import.name)))
                .unwrap_or_else(|| panic!("docs/ABI.md has no row for {:?}", import.name));
            let ty = format!("| `{}` |", render(&(import.ty)()));
            assert!(row.contains(&ty), "{row:?} should give the type {ty:?}");
        }
        let rows = doc
            .lines()
            .skip_while(|line| !line.starts_with("## Host imports"))
            .skip(4)
            .take_while(|line| line.starts_with("| `"))
            .count();
        assert_eq!(
            rows,
            IMPORTS.len(),
            "docs/ABI.md lists an import the host lacks"
        );
    }

    /// A module importing one of these never runs a request inline; a renamed import must not
    /// fall out of the list unnoticed.
    #[test]
    fn the_imports_that_wait_are_host_imports() {
        for name in ENV_WAITS {
            assert!(
                IMPORTS.iter().any(|import| import.name == *name),
                "{name:?} is not a host import"
            );
        }
    }

    #[test]
    fn types_render_like_the_docs() {
        assert_eq!(render(&ty(&[I32, I32], &[I64])), "(i32, i32) -> i64");
        assert_eq!(render(&ty(&[], &[])), "() -> ()");
        assert_eq!(render(&ty(&[I32], &[I32, I32])), "(i32) -> (i32, i32)");
    }
}
