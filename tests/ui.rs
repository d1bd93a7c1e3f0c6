//! The `conv!` macro's compile errors and their caret placement, locked in with trybuild.
//!
//! `tests/ui/pass` holds valid uses that must compile; `tests/ui/fail` holds one file per
//! rule of the grammar, each with the exact `.stderr` the compiler prints. After an
//! intentional change to a message, regenerate with `TRYBUILD=overwrite cargo test --test ui`
//! and read every changed `.stderr`.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/fail/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
