//! What every service's configuration shares.

/// A configuration from `args` alone (the first is the program's name):
/// unlike [`clap::Parser::parse_from`], no environment variable is read, so
/// a test's configuration is the same whatever the developer's shell holds.
pub fn parse_args_only<C, I, T>(args: I) -> Result<C, clap::Error>
where
    C: clap::Parser,
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let command = C::command().mut_args(|arg| arg.env(None));
    C::from_arg_matches(&command.try_get_matches_from(args)?)
}

/// Set in the child process of [`in_child_with_env`].
const CHILD: &str = "SHOPEEZY_TEST_CHILD_WITH_ENV";

/// For a unit test that needs environment variables set, which a test
/// cannot do in its own process (other tests run in it): `true` in the
/// child run, where the test makes its assertions; otherwise runs the test
/// `name` of the module `module` (its `module_path!()`) again as a child
/// process of the test binary with `env` set, asserts that it passed, and
/// answers `false`.
pub fn in_child_with_env(module: &str, name: &str, env: &[(&str, &str)]) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let test = format!(
        "{}::{name}",
        module.split_once("::").map_or("", |(_, path)| path)
    );
    let output = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", &test, "--test-threads=1"])
        .env(CHILD, "1")
        .envs(env.iter().copied())
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child test failed or did not run: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    false
}
