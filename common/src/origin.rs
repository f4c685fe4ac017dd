//! Web origins (`scheme://host[:port]`) named in configuration: the account
//! service's CORS list, the host's address of the account service that its
//! console's content security policy allows. One parser, so both refuse the
//! same mistakes.

/// An origin that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin {origin:?}: {why}")]
pub struct InvalidOrigin {
    /// The origin as given.
    pub origin: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// One origin as a browser sends it in `Origin`: `http(s)://host[:port]`,
/// nothing after, lowercased (schemes and hosts are case-insensitive and
/// browsers send them in lowercase). Browsers compare origins byte for byte,
/// so anything else — a path, a trailing `/`, a user name — would silently
/// never match: it is refused. The host may hold only letters, digits and
/// `-._:[]`, so an origin can be put into a header (a content security
/// policy) without adding to it.
pub fn parse_origin(origin: &str) -> Result<String, InvalidOrigin> {
    let invalid = |why| InvalidOrigin {
        origin: origin.to_owned(),
        why,
    };
    if origin.is_empty() {
        return Err(invalid("it is empty"));
    }
    let lower = origin.to_ascii_lowercase();
    let Some((scheme, authority)) = lower.split_once("://") else {
        return Err(invalid("it has no scheme (http:// or https://)"));
    };
    if scheme != "http" && scheme != "https" {
        return Err(invalid("its scheme is not http or https"));
    }
    if authority.contains(['/', '?', '#']) {
        return Err(invalid(
            "an origin has no path, query or trailing `/` (the browser sends scheme://host[:port])",
        ));
    }
    if authority.contains('@') {
        return Err(invalid("an origin has no user name or password"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-._:[]".contains(c);
    if !authority.chars().all(allowed) {
        return Err(invalid("its host has a character no host name has"));
    }
    let uri: axum::http::Uri = lower
        .parse()
        .map_err(|_| invalid("it is not a valid URL"))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_origins_lowercased() {
        assert_eq!(
            parse_origin("HTTPS://Console.Example.com:8443"),
            Ok("https://console.example.com:8443".to_owned())
        );
        assert!(parse_origin("http://[::1]:8081").is_ok());
    }

    #[test]
    fn refuses_what_a_browser_never_sends() {
        for bad in [
            "",
            "127.0.0.1:8080",
            "http://",
            "http://:8081",
            "http://a/",
            "http://a/console",
            "http://a?x",
            "ftp://a",
            "http://u@a",
            "http://a b",
            "http://a;b",
            "*",
        ] {
            assert!(parse_origin(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
