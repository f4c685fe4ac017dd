//! Who is calling: a user's id and role, as the account service vouches
//! for them. How a request proves it is the HTTP layer's concern
//! (`http::auth`).

use serde::Serialize;
use uuid::Uuid;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Shops.
    Customer,
    /// Sells its own products and installs plugins for them.
    Seller,
    /// Runs the platform.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Seller => "seller",
            Self::Admin => "admin",
        }
    }

    /// The role the account service names so; any name it does not know
    /// is a customer's (the least privilege).
    pub fn from_account(name: &str) -> Self {
        match name {
            "admin" => Self::Admin,
            "seller" => Self::Seller,
            _ => Self::Customer,
        }
    }
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's id.
    pub id: Uuid,
    /// The user's current role.
    pub role: Role,
}

impl Caller {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may act on something owned by `owner`: the owner
    /// itself, or an admin.
    pub fn may_manage(&self, owner: Uuid) -> bool {
        self.is_admin() || self.id == owner
    }
}
