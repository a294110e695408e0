//! Resident memory of a process by kind of mapping, read from `/proc/<pid>/smaps`: wasm linear
//! memories, malloc heaps, thread and wasm stacks, compiled code, files, the rest.
//!
//! The kinds are recognised by the shape of the mappings, which is how wasmer and glibc make
//! them on x86_64 Linux:
//! - a linear memory is an anonymous read-write mapping followed at once by an anonymous
//!   `---p` reservation, together at least 4 GiB (wasmer reserves the 32-bit address space
//!   and its guard region up front and makes pages accessible as the memory grows);
//! - a malloc heap is `[heap]` (glibc's main arena) or a read-write part of a 64 MiB-aligned
//!   64 MiB reservation (the heap of one of glibc's per-thread arenas);
//! - a stack is a read-write mapping right above a `---p` guard page (which the kernel may
//!   have merged with a reservation below it): a thread's stack
//!   (glibc's `pthread_create`), or a coroutine stack on which wasmer runs wasm code
//!   (corosensei, 1 MiB unless configured otherwise), told apart by size;
//! - compiled code is an anonymous executable mapping.

use std::collections::BTreeMap;

use anyhow::Context as _;

/// What a mapping holds, as far as its shape tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// A wasm linear memory (only its touched pages are resident).
    LinearMemory,
    /// A malloc heap: `[heap]` or a per-thread arena's heap.
    MallocHeap,
    /// A thread's stack.
    ThreadStack,
    /// A 1 MiB stack wasmer runs wasm code on.
    WasmStack,
    /// Anonymous executable memory: compiled wasm code and trampolines.
    Code,
    /// Mapped from a file: the binary, shared libraries.
    File,
    /// Every other anonymous mapping: large malloc chunks, compiled modules' read-only data,
    /// wasmer's own allocations.
    OtherAnonymous,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 7] = [
        Kind::LinearMemory,
        Kind::MallocHeap,
        Kind::ThreadStack,
        Kind::WasmStack,
        Kind::Code,
        Kind::File,
        Kind::OtherAnonymous,
    ];

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::LinearMemory => "wasm linear memory",
            Kind::MallocHeap => "malloc heaps",
            Kind::ThreadStack => "thread stacks",
            Kind::WasmStack => "wasm (coroutine) stacks",
            Kind::Code => "compiled code",
            Kind::File => "file-backed",
            Kind::OtherAnonymous => "other anonymous",
        }
    }
}

/// Resident bytes and mapping counts per [`Kind`].
#[derive(Debug, Clone, Default)]
pub struct Breakdown {
    /// Resident bytes per kind.
    pub resident: BTreeMap<Kind, u64>,
    /// Mappings per kind.
    pub mappings: BTreeMap<Kind, u64>,
}

impl Breakdown {
    /// Resident bytes of `kind`.
    pub fn of(&self, kind: Kind) -> u64 {
        self.resident.get(&kind).copied().unwrap_or(0)
    }

    /// Every resident byte.
    pub fn total(&self) -> u64 {
        self.resident.values().sum()
    }

    /// Mappings of `kind`.
    pub fn count(&self, kind: Kind) -> u64 {
        self.mappings.get(&kind).copied().unwrap_or(0)
    }

    /// As JSON: `{kind: {"rss_bytes": …, "mappings": …}}`.
    pub fn json(&self) -> serde_json::Value {
        Kind::ALL
            .iter()
            .map(|kind| {
                (
                    kind.name().to_owned(),
                    serde_json::json!({"rss_bytes": self.of(*kind), "mappings": self.count(*kind)}),
                )
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    path: String,
    rss: u64,
}

impl Mapping {
    fn size(&self) -> u64 {
        self.end - self.start
    }

    fn anonymous(&self) -> bool {
        self.path.is_empty()
    }

    fn reserved(&self) -> bool {
        self.anonymous() && self.perms.starts_with("---")
    }

    fn read_write(&self) -> bool {
        self.anonymous() && self.perms.starts_with("rw")
    }
}

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;
/// glibc's `HEAP_MAX_SIZE` on 64-bit: the size and alignment of a non-main arena's heap.
const ARENA_HEAP: u64 = 64 * MIB;

/// Reads and classifies `/proc/<pid>/smaps`.
pub fn breakdown(pid: u32) -> anyhow::Result<Breakdown> {
    let path = format!("/proc/{pid}/smaps");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    Ok(classify(&parse(&text)?))
}

fn parse(text: &str) -> anyhow::Result<Vec<Mapping>> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else { continue };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            let perms = fields.next().context("smaps header without permissions")?;
            // offset, device, inode, then the path (which may contain spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            mappings.push(Mapping {
                start,
                end,
                perms: perms.to_owned(),
                path,
                rss: 0,
            });
        } else if first == "Rss:"
            && let Some(mapping) = mappings.last_mut()
        {
            let kib: u64 = fields.next().context("empty Rss line")?.parse()?;
            mapping.rss = kib * 1024;
        }
    }
    Ok(mappings)
}

fn classify(mappings: &[Mapping]) -> Breakdown {
    let mut breakdown = Breakdown::default();
    for (index, mapping) in mappings.iter().enumerate() {
        let next = mappings
            .get(index + 1)
            .filter(|next| next.start == mapping.end);
        let previous = index
            .checked_sub(1)
            .map(|previous| &mappings[previous])
            .filter(|previous| previous.end == mapping.start);
        let reservation_after = next.filter(|next| next.reserved());
        let kind = if mapping.path == "[heap]" {
            Kind::MallocHeap
        } else if mapping.path == "[stack]" {
            Kind::ThreadStack
        } else if !mapping.anonymous() {
            Kind::File
        } else if mapping.perms.contains('x') {
            Kind::Code
        } else if mapping.read_write()
            && reservation_after.is_some_and(|after| mapping.size() + after.size() >= 4 * GIB)
        {
            Kind::LinearMemory
        } else if mapping.read_write()
            && mapping.start % ARENA_HEAP == 0
            && reservation_after.map_or(mapping.size(), |after| mapping.size() + after.size())
                == ARENA_HEAP
        {
            Kind::MallocHeap
        } else if mapping.read_write() && previous.is_some_and(|guard| guard.reserved()) {
            if mapping.size() == MIB {
                Kind::WasmStack
            } else {
                Kind::ThreadStack
            }
        } else {
            Kind::OtherAnonymous
        };
        *breakdown.resident.entry(kind).or_default() += mapping.rss;
        if !mapping.reserved() {
            *breakdown.mappings.entry(kind).or_default() += 1;
        }
    }
    breakdown
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 4096;

    fn header(start: u64, end: u64, perms: &str, path: &str) -> String {
        format!(
            "{start:x}-{end:x} {perms} 00000000 00:00 0 {path}\nRss: {} kB\n",
            0
        )
    }

    #[test]
    fn mappings_are_classified_by_shape() {
        let mut text = String::new();
        let rss = |text: &mut String, kib: u64| {
            let line = format!("Rss: {kib} kB\n");
            let cut = text.rfind("Rss:").unwrap();
            text.truncate(cut);
            text.push_str(&line);
        };
        // A linear memory: 1 MiB accessible, then the rest of a 6 GiB reservation.
        let base = 0x7000_0000_0000;
        text.push_str(&header(base, base + MIB, "rw-p", ""));
        rss(&mut text, 64);
        text.push_str(&header(base + MIB, base + 6 * GIB, "---p", ""));
        // A thread stack: a guard page, then 2 MiB.
        let stack = base + 8 * GIB;
        text.push_str(&header(stack, stack + PAGE, "---p", ""));
        text.push_str(&header(stack + PAGE, stack + PAGE + 2 * MIB, "rw-p", ""));
        rss(&mut text, 12);
        // A wasm stack: a guard page, then 1 MiB.
        let wasm_stack = base + 9 * GIB;
        text.push_str(&header(wasm_stack, wasm_stack + PAGE, "---p", ""));
        text.push_str(&header(
            wasm_stack + PAGE,
            wasm_stack + PAGE + MIB,
            "rw-p",
            "",
        ));
        rss(&mut text, 8);
        // An arena heap: 64 MiB-aligned, 132 KiB used of 64 MiB.
        let arena = base + 10 * GIB;
        text.push_str(&header(arena, arena + 132 * 1024, "rw-p", ""));
        rss(&mut text, 100);
        text.push_str(&header(arena + 132 * 1024, arena + ARENA_HEAP, "---p", ""));
        // Code, a file, and something else.
        let code = base + 11 * GIB;
        text.push_str(&header(code, code + 2 * PAGE, "r-xp", ""));
        rss(&mut text, 8);
        text.push_str(&header(
            code + 4 * PAGE,
            code + 8 * PAGE,
            "r--p",
            "/usr/lib/libc.so.6",
        ));
        rss(&mut text, 16);
        text.push_str(&header(code + 16 * PAGE, code + 20 * PAGE, "rw-p", ""));
        rss(&mut text, 4);

        let breakdown = classify(&parse(&text).unwrap());
        assert_eq!(breakdown.of(Kind::LinearMemory), 64 * 1024);
        assert_eq!(breakdown.of(Kind::ThreadStack), 12 * 1024);
        assert_eq!(breakdown.of(Kind::WasmStack), 8 * 1024);
        assert_eq!(breakdown.of(Kind::MallocHeap), 100 * 1024);
        assert_eq!(breakdown.of(Kind::Code), 8 * 1024);
        assert_eq!(breakdown.of(Kind::File), 16 * 1024);
        assert_eq!(breakdown.of(Kind::OtherAnonymous), 4 * 1024);
        assert_eq!(breakdown.total(), 212 * 1024);
        assert_eq!(breakdown.count(Kind::LinearMemory), 1);
    }
}
