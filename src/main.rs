//! The `outpost` binary: all logic lives in the library (`outpost::cli`).

/// mimalloc: glibc malloc stalls for hundreds of milliseconds after a large purge frees
/// millions of small allocations (benches/RESULTS.md: gone with jemalloc preloaded; mimalloc is
/// the same kind of allocator and builds with just a C compiler).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(outpost::cli::main());
}
