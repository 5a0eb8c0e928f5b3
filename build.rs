//! Hands the git revision the binary is built from to the code as `STSVEND_GIT_REVISION`, for
//! the `stsvend_build_info` metric. `STSVEND_BUILD_REVISION` set at build time wins (an image
//! built from a tarball or a `.dockerignore`d `.git` can pass it as a build argument); without
//! either, nothing is set and the metric says `unknown`. Never fails the build.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=STSVEND_BUILD_REVISION");
    // The one reading of the build environment; clippy.toml's ban is about the service's code.
    #[allow(clippy::disallowed_methods)]
    let given = std::env::var("STSVEND_BUILD_REVISION").ok();
    let revision = given
        .filter(|r| is_revision(r))
        .or_else(git_revision)
        .filter(|r| is_revision(r));
    if let Some(revision) = revision {
        println!("cargo:rustc-env=STSVEND_GIT_REVISION={revision}");
    }
    pack_relative_relocations();
    symbol_order();
}

/// Linux glibc builds link `stsvend` with packed relative relocations (DT_RELR): its 0.8 MB
/// `.rela.dyn`, read once by the loader and kept mapped, shrinks to a few KB (README,
/// Performance, "Round 3: memory"). Set here rather than in `.cargo/config.toml` because a
/// `RUSTFLAGS` in the environment would replace that silently. glibc 2.36 (bookworm) or later
/// runs such a binary; an older one refuses it at start (GLIBC_ABI_DT_RELR), never misloads
/// it. The image's static-pie musl targets are left alone: their start code relocates the
/// binary itself, and that path (musl 1.2.4 or later, the x86_64 and aarch64 cross linkers)
/// is not tested with the flag yet.
fn pack_relative_relocations() {
    // The target's, not the build script's, configuration (clippy.toml's ban is about the
    // service's code).
    #[allow(clippy::disallowed_methods)]
    let cfg = |name: &str| std::env::var(name).unwrap_or_default();
    if cfg("CARGO_CFG_TARGET_OS") == "linux" && cfg("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// x86_64 Linux glibc builds lay out `stsvend`'s functions in the order of
/// `bench/symbol-order.txt` (written by `scripts/symbol_order.sh`): the code that serves cached
/// tokens first, in one block of about 0.4 MB, then the start-up code, rather than spread over
/// 8.6 MB of `.text`, where every page fault maps a 64 KiB neighbourhood (README, Performance,
/// "Round 4"). Only rust-lld, this target's default linker since Rust 1.90, knows the
/// option: an older rustc, or flags that choose another linker, leave the layout alone. Names
/// the binary lacks (the list is stale) are skipped, never misplaced.
fn symbol_order() {
    const LIST: &str = "bench/symbol-order.txt";
    println!("cargo:rerun-if-changed={LIST}");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    #[allow(clippy::disallowed_methods)]
    let cfg = |name: &str| std::env::var(name).unwrap_or_default();
    let target = (
        cfg("CARGO_CFG_TARGET_ARCH"),
        cfg("CARGO_CFG_TARGET_OS"),
        cfg("CARGO_CFG_TARGET_ENV"),
    );
    if target != ("x86_64".into(), "linux".into(), "gnu".into()) {
        return;
    }
    let flags = cfg("CARGO_ENCODED_RUSTFLAGS");
    let other_linker = ["linker", "link-self-contained", "fuse-ld"]
        .iter()
        .any(|f| flags.contains(f));
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join(LIST);
    let Some(list) = list.to_str().filter(|p| !p.contains(',')) else {
        return;
    };
    if other_linker || !Path::new(list).exists() {
        return;
    }
    if !rustc_has_lld_default(&cfg("RUSTC")) {
        // Said, since the binary then keeps twice the code resident, which no test sees.
        println!(
            "cargo:warning=stsvend is linked without {LIST}: `$RUSTC --version` did not say 1.90 or later"
        );
        return;
    }
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={list}");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
}

/// Whether `rustc` is 1.90 or later, the first to link `x86_64-unknown-linux-gnu` with rust-lld.
fn rustc_has_lld_default(rustc: &str) -> bool {
    let Some(out) = Command::new(rustc).arg("--version").output().ok() else {
        return false;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let mut version = text
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split(['.', '-'])
        .map(|n| n.parse::<u32>().unwrap_or(0));
    let (major, minor) = (version.next().unwrap_or(0), version.next().unwrap_or(0));
    (major, minor) >= (1, 90)
}

/// The short commit id of `HEAD`, and rebuild triggers on whatever moves it (a commit, a
/// checkout). Worktrees keep `HEAD` and the branch refs in different places: ask git for both.
fn git_revision() -> Option<String> {
    let revision = git(&["rev-parse", "--short=12", "HEAD"])?;
    for path in ["HEAD", "packed-refs"] {
        watch(git(&["rev-parse", "--git-path", path]));
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(git(&["rev-parse", "--git-path", &branch]));
    }
    Some(revision)
}

fn watch(path: Option<String>) {
    if let Some(path) = path.filter(|p| Path::new(p).exists()) {
        println!("cargo:rerun-if-changed={path}");
    }
}

/// `git args` in the crate's directory, its trimmed output when it succeeds.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    out.status.success().then(|| text.trim().to_owned())
}

/// A label-safe revision: 4 to 64 hex digits (a short or full commit id).
fn is_revision(text: &str) -> bool {
    (4..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit())
}
