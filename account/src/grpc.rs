//! The gRPC `shopeezy.auth.v1.AuthService` that other services call.

use prost_types::Timestamp;
use shopeezy_proto::auth::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::auth::authenticate;
use crate::error::quote;
use crate::startup::AppState;
use crate::store::{self, User};

/// Most ids one `GetUsers` call may ask for.
const MAX_GET_USERS: usize = 1000;

/// The service's implementation.
#[derive(Debug, Clone)]
pub struct AuthGrpc {
    state: AppState,
}

impl AuthGrpc {
    /// The service over the app's state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

fn user_message(u: &User) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        name: u.name.clone(),
        username: u.username.clone(),
        email: u.email.clone(),
        role: u.role.as_str().to_owned(),
        created_at: Some(timestamp(u.created_at)),
        updated_at: Some(timestamp(u.updated_at)),
    }
}

fn parse_id(raw: &str) -> Result<Uuid, Status> {
    Uuid::parse_str(raw)
        .map_err(|_| Status::invalid_argument(format!("{} is not a UUID", quote(raw))))
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthGrpc {
    async fn validate_token(
        &self,
        request: Request<pb::ValidateTokenRequest>,
    ) -> Result<Response<pb::ValidateTokenResponse>, Status> {
        let started = std::time::Instant::now();
        let result = authenticate(&self.state, &request.into_inner().token).await;
        let outcome = match &result {
            Ok(_) => "valid",
            Err(crate::error::Error::RevocationUnavailable(_)) => "unavailable",
            Err(_) => "invalid",
        };
        metrics::histogram!("account_validate_token_seconds", "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        let caller = result?;
        Ok(Response::new(pb::ValidateTokenResponse {
            user_id: caller.user.id.to_string(),
            username: caller.user.username.clone(),
            email: caller.user.email.clone(),
            role: caller.user.role.as_str().to_owned(),
            expires_at: Some(Timestamp {
                seconds: caller.claims.exp as i64,
                nanos: 0,
            }),
            token_id: caller.claims.jti.to_string(),
        }))
    }

    async fn get_user(
        &self,
        request: Request<pb::GetUserRequest>,
    ) -> Result<Response<pb::User>, Status> {
        let id = parse_id(&request.into_inner().user_id)?;
        let user = store::by_id(&self.state.db, id)
            .await?
            .ok_or_else(|| Status::not_found("no such user"))?;
        Ok(Response::new(user_message(&user)))
    }

    async fn get_users(
        &self,
        request: Request<pb::GetUsersRequest>,
    ) -> Result<Response<pb::GetUsersResponse>, Status> {
        let ids = request.into_inner().user_ids;
        if ids.len() > MAX_GET_USERS {
            return Err(Status::invalid_argument(format!(
                "at most {MAX_GET_USERS} ids per call"
            )));
        }
        let ids = ids
            .iter()
            .map(|id| parse_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let users = store::by_ids(&self.state.db, &ids).await?;
        Ok(Response::new(pb::GetUsersResponse {
            users: users.iter().map(user_message).collect(),
        }))
    }
}
