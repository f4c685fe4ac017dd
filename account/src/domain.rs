//! Validated values: each is built by a `parse` that can fail, so handlers and
//! the store never see an invalid email, username, password or role.

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// An email address, lower-cased (addresses are compared case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Checks the address' shape: one `@`, a local part of 1–64 characters, a
    /// dotted domain, no spaces, at most 254 characters in all.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let email = raw.trim().to_lowercase();
        let invalid = || Error::invalid("email", "must be a valid email address");
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A username: 3–32 characters of `[a-z0-9_.-]` (input is lower-cased).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Lower-cases and checks a username.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let name = raw.trim().to_lowercase();
        let ok_char =
            |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-');
        if !(3..=32).contains(&name.len()) || !name.chars().all(ok_char) {
            return Err(Error::invalid(
                "username",
                "must be 3 to 32 characters of a-z, 0-9, '_', '.' or '-'",
            ));
        }
        Ok(Self(name))
    }

    /// The username.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A display name: 1–100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    /// Trims and checks a display name.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let name = raw.trim();
        let len = name.chars().count();
        if !(1..=100).contains(&len) || name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "name",
                "must be 1 to 100 characters without control characters",
            ));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password: 8–256 characters. Its text is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

impl Password {
    /// Checks a new password's length.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let len = raw.chars().count();
        if len < 8 {
            return Err(Error::invalid("password", "must be at least 8 characters"));
        }
        if len > 256 {
            return Err(Error::invalid("password", "must be at most 256 characters"));
        }
        Ok(Self(raw.to_owned()))
    }

    /// The password's text, for hashing.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Shops (the role at registration).
    Customer,
    /// Sells products and installs plugins for them.
    Seller,
    /// Runs the platform.
    Admin,
}

impl Role {
    /// The role's name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Seller => "seller",
            Self::Admin => "admin",
        }
    }

    /// The role of a stored name.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        match raw {
            "customer" => Ok(Self::Customer),
            "seller" => Ok(Self::Seller),
            "admin" => Ok(Self::Admin),
            _ => Err(Error::invalid("role", "must be customer, seller or admin")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_lowercased_and_checked() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ")
                .map(|e| e.0)
                .ok()
                .as_deref(),
            Some("ann@example.com")
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a n@example.com",
            "ann@exa_mple.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn usernames_are_lowercased_and_checked() {
        assert_eq!(
            Username::parse("Ann_B.c-1").map(|u| u.0).ok().as_deref(),
            Some("ann_b.c-1")
        );
        for bad in ["ab", "a b c", "ann!", &"x".repeat(33), "änn"] {
            assert!(Username::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn passwords_have_bounds() {
        assert!(Password::parse("1234567").is_err());
        assert!(Password::parse("12345678").is_ok());
        assert!(Password::parse(&"p".repeat(257)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("secret-secret").ok()),
            "Some(Password(***))"
        );
    }
}
