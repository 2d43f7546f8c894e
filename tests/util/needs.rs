//! Programs some tests need (PostgreSQL, Chromium, a C++ toolchain, openssl, ...). A test
//! whose program is missing fails at once with one line saying what is missing and how to
//! get it (the same words as `scripts/test`), not a panic deep inside the test. A test
//! that skipped itself would prove nothing, so none does.

use std::path::PathBuf;

/// The message for a missing program: `what` it is, the Debian `package` that has it.
pub fn missing(what: &str, package: &str) -> String {
    format!(
        "missing {what}: install it with `sudo apt-get install {package}`, or run `scripts/test --install` (installs everything the tests need)"
    )
}

/// The first of `names` on the PATH (or in `extra_dirs`); fails the test with
/// [`missing`] if none is there.
pub fn program(names: &[&str], extra_dirs: &[&str], what: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(extra_dirs.iter().map(PathBuf::from));
    for dir in dirs {
        for n in names {
            let p = dir.join(n);
            if p.is_file() {
                return p;
            }
        }
    }
    panic!("{}", missing(what, package))
}
