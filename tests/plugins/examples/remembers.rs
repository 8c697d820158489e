//! Leaves each deploy's commit in its linear memory, behind a marker, then reads the whole
//! memory for every marked commit it can find: its own (so the search is shown to work)
//! and any left by an earlier call, which a fresh instance must never see. Reports
//! `own=<bool> earlier=<comma-separated commits>`.
use pier_plugin_sdk::*;
include!("common.rs");

/// Put before each commit kept in memory; built at run time, so that the marker bytes
/// exist in memory only where a call left them (and in the pattern searched for).
fn marker() -> Vec<u8> {
    ["pier", "-left-by-", "call:"].concat().into_bytes()
}

struct Plugin;

impl Method for Plugin {
    fn describe() -> Description {
        describe_with("remembers", Permissions::none(), vec![])
    }

    fn deploy(_: Context, _: Vec<Answer>, build: BuildInfo) -> Result<DeployReport, MethodError> {
        let marker = marker();
        let mut left = marker.clone();
        left.extend_from_slice(build.commit.as_bytes());
        // On the heap, and left there: freed memory would do as well.
        let left: &'static [u8] = Box::leak(left.into_boxed_slice());
        std::hint::black_box(left);
        let size = core::arch::wasm32::memory_size(0) * 65536;
        let (mut own, mut earlier) = (false, Vec::new());
        // Address 0 is memory like any other in WebAssembly; volatile reads keep the
        // compiler from assuming anything about memory it did not allocate.
        let byte = |at: usize| unsafe { core::ptr::read_volatile(at as *const u8) };
        let mut at = 1;
        while at + marker.len() + 40 <= size {
            if (0..marker.len()).all(|i| byte(at + i) == marker[i]) {
                let found: Vec<u8> = (0..40).map(|i| byte(at + marker.len() + i)).collect();
                if found.iter().all(u8::is_ascii_hexdigit) {
                    let found = String::from_utf8(found).unwrap_or_default();
                    if found == build.commit {
                        own = true;
                    } else if !earlier.contains(&found) {
                        earlier.push(found);
                    }
                }
            }
            at += 1;
        }
        let summary = format!("own={own} earlier={}", earlier.join(","));
        Ok(DeployReport { summary, url: None, release: None })
    }

    unused_exports!();
}

export_method!(Plugin);
