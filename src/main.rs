//! The `outpost` binary: all logic lives in the library (`outpost::cli`).

fn main() {
    std::process::exit(outpost::cli::main());
}
