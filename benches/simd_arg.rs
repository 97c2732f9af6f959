//! The bench binaries' `--simd` option (each includes this file with `#[path]`).

use std::fmt::Display;
use std::str::FromStr;

/// The level named after `--simd` on the command line, and that name's place among the
/// arguments (as `std::env::args` lists them), if `--simd` is there; a name that is no
/// level's panics with what the levels are. Generic over the level type, so that binaries
/// of crates that see it under different paths (`ferrograd`, `ferrograd_array`) share it.
pub fn simd_arg<L: FromStr>() -> Option<(usize, L)>
where
    L::Err: Display,
{
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == "--simd")? + 1;
    let name = args.get(at).map_or("", String::as_str);
    Some((at, name.parse().unwrap_or_else(|e| panic!("--simd: {e}"))))
}
