//! The configured admin: made to exist when the service starts
//! (`SHOPEEZY_ADMIN_EMAIL`, `SHOPEEZY_ADMIN_PASSWORD`).

use shopeezy_common::db::Db;

use crate::domain::{Email, Name, Password, Role, Username};
use crate::error::Error;
use crate::passwords::Hasher;
use crate::store::{self, Changes, NewUser};

/// Makes the configured admin exist: creates it, or gives an existing user of
/// that email the admin role. An existing user's password is left alone.
pub async fn ensure_admin(
    db: &Db,
    hasher: &Hasher,
    email: &str,
    password: &str,
) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("SHOPEEZY_ADMIN_EMAIL: {e}"))?;
    if let Some(user) = store::by_login(db, email.as_str()).await? {
        if user.role != Role::Admin {
            store::update(
                db,
                user.id,
                Changes {
                    role: Some(Role::Admin),
                    ..Changes::default()
                },
            )
            .await?;
            tracing::info!(email = email.as_str(), "made the configured user an admin");
        }
        return Ok(());
    }
    let password =
        Password::parse(password).map_err(|e| anyhow::anyhow!("SHOPEEZY_ADMIN_PASSWORD: {e}"))?;
    let local: String = email
        .as_str()
        .split('@')
        .next()
        .unwrap_or("admin")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(24)
        .collect();
    let password_hash = hasher.hash(&password).await?;
    // The natural username may be taken by a customer: then add a suffix.
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    for candidate in [format!("{local}-admin"), format!("admin-{}", &suffix[..8])] {
        let new = NewUser {
            name: Name::parse("Administrator")?,
            username: Username::parse(&candidate).or_else(|_| Username::parse("admin"))?,
            email: email.clone(),
            password_hash: password_hash.clone(),
            role: Role::Admin,
        };
        match store::create(db, new).await {
            Err(Error::Conflict("username_taken", _)) => continue,
            other => {
                other?;
                break;
            }
        }
    }
    tracing::info!("created the configured admin");
    Ok(())
}
