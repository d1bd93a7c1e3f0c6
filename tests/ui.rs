//! The `conv!` macro's compile errors and their caret placement, locked in with trybuild.
//!
//! `tests/ui/fail` holds one file per rule of the grammar, each with the exact `.stderr` the
//! compiler prints. After an intentional change to a message, regenerate with
//! `TRYBUILD=overwrite cargo test --test ui` and read every changed `.stderr`. Valid uses are
//! an ordinary test, `tests/macro_forms.rs`: a trybuild pass case would build (not just check)
//! a second copy of every dev-dependency.

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/fail/*.rs");
}
