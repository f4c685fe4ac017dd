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
