//! The demo's router: pages, the login API, and presence mounted from
//! `presence-axum`. Signing in hands out a signed token (the cookie or the
//! bearer token); signing out revokes its login everywhere.

use std::time::Duration;

use axum::extract::{FromRef, Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use presence_axum::{AllowedOrigins, Identity, PresenceRoutes};
use presence_core::{Presence, UserId, UserPresence};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::Login;
use crate::auth::{CurrentLogin, LOGIN_COOKIE, TrustedOrigin, one_lookup_per_request};
use crate::logins::Logins;
use crate::pages::{self, Frame, Member};
use crate::revocations::StoreDown;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) logins: Logins,
    pub(crate) presence: Presence,
    pub(crate) activity_throttle: Duration,
    /// The pages that may post to the login and logout routes: those that
    /// may use presence.
    pub(crate) origins: AllowedOrigins,
}

impl FromRef<AppState> for Logins {
    fn from_ref(state: &AppState) -> Self {
        state.logins.clone()
    }
}

impl FromRef<AppState> for AllowedOrigins {
    fn from_ref(state: &AppState) -> Self {
        state.origins.clone()
    }
}

/// The whole app, with presence's routes and activity layer.
pub(crate) fn router(state: AppState, routes: &PresenceRoutes<CurrentLogin>) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/members", get(members))
        .route("/channels/{name}", get(channel))
        .route("/login", get(login_page).post(login_form))
        .route("/logout", post(logout_form))
        .route("/api/login", post(api_login))
        .route("/api/logout", post(api_logout))
        .route("/static/demo.js", get(demo_js))
        .merge(routes.router())
        .layer(routes.activity_layer(state.clone()))
        // Outermost: the activity layer's copy of a request shares its
        // revocation lookup.
        .layer(axum::middleware::map_request(one_lookup_per_request))
        .with_state(state)
}

/// A page's signed-in login, or why not.
type Signed = Result<CurrentLogin, StatusCode>;

/// A page without its login: the way to the login page, unless the login
/// could not be checked (signing in again would not help).
fn not_signed_in(status: StatusCode) -> Response {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return (status, "your login cannot be checked now; try again").into_response();
    }
    Redirect::to("/login").into_response()
}

async fn dashboard(State(state): State<AppState>, me: Signed) -> Response {
    let login = match me {
        Ok(CurrentLogin(login, _)) => login,
        Err(status) => return not_signed_in(status),
    };
    match state.org_members(&login).await {
        Ok(members) => {
            let online: Vec<Member> = members
                .into_iter()
                .filter(|m| {
                    m.presence
                        .as_ref()
                        .is_some_and(|p| p.status != presence_core::Status::Offline)
                })
                .collect();
            let frame = state.frame(&login, &online);
            Html(pages::dashboard(&frame, &online)).into_response()
        }
        Err(response) => response,
    }
}

async fn members(State(state): State<AppState>, me: Signed) -> Response {
    let login = match me {
        Ok(CurrentLogin(login, _)) => login,
        Err(status) => return not_signed_in(status),
    };
    match state.org_members(&login).await {
        Ok(members) => {
            let frame = state.frame(&login, &members);
            Html(pages::members(&frame, &members)).into_response()
        }
        Err(response) => response,
    }
}

async fn channel(State(state): State<AppState>, Path(name): Path<String>, me: Signed) -> Response {
    let login = match me {
        Ok(CurrentLogin(login, _)) => login,
        Err(status) => return not_signed_in(status),
    };
    let valid = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return (StatusCode::NOT_FOUND, "no such channel").into_response();
    }
    match state.org_members(&login).await {
        Ok(mut members) => {
            if pages::counted_scope(&name, &login.org).is_some() {
                // Counts, not rows, for everyone present: only the
                // organisation's signed-in users get a row.
                let directory = state.logins.accounts().members(&login.org);
                members.retain(|m| directory.iter().any(|(id, _)| *id == m.user_id));
            }
            let frame = state.frame(&login, &members);
            Html(pages::channel(&frame, &name, &members)).into_response()
        }
        Err(response) => response,
    }
}

async fn login_page() -> Html<String> {
    Html(pages::login(None))
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    org: String,
}

async fn login_form(
    State(state): State<AppState>,
    _: TrustedOrigin,
    Form(form): Form<Credentials>,
) -> Response {
    let (login, token) = match state.logins.sign_in(&form.username, &form.org) {
        Ok(signed_in) => signed_in,
        Err(refused) => {
            return (
                StatusCode::BAD_REQUEST,
                Html(pages::login(Some(&refused.to_string()))),
            )
                .into_response();
        }
    };
    state.announce(&login).await;
    let cookie = format!("{LOGIN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax");
    let mut response = Redirect::to("/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn logout_form(State(state): State<AppState>, _: TrustedOrigin, me: Signed) -> Response {
    if let Ok(CurrentLogin(login, _)) = me {
        // A failure is logged; the browser forgets its cookie either way.
        let _ = state.sign_out(&login).await;
    }
    let mut response = Redirect::to("/login").into_response();
    let expired = format!("{LOGIN_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0");
    if let Ok(cookie) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn api_login(
    State(state): State<AppState>,
    _: TrustedOrigin,
    Json(body): Json<Credentials>,
) -> Response {
    match state.logins.sign_in(&body.username, &body.org) {
        Ok((login, token)) => {
            state.announce(&login).await;
            Json(json!({ "token": token, "user_id": login.user })).into_response()
        }
        Err(refused) => (
            StatusCode::BAD_REQUEST,
            Json(json!({ "code": "login_refused", "message": refused.to_string() })),
        )
            .into_response(),
    }
}

async fn api_logout(State(state): State<AppState>, _: TrustedOrigin, me: Signed) -> Response {
    match me {
        Ok(CurrentLogin(login, _)) => match state.sign_out(&login).await {
            Ok(()) => StatusCode::NO_CONTENT.into_response(),
            Err(_) => unavailable("logged out on this node only; try again"),
        },
        Err(StatusCode::SERVICE_UNAVAILABLE) => {
            unavailable("the token cannot be checked now; try again")
        }
        Err(status) => (
            status,
            Json(json!({ "code": "unauthenticated", "message": "unknown or expired token" })),
        )
            .into_response(),
    }
}

/// 503 `unavailable`, as presence answers when its store is away.
fn unavailable(message: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "code": "unavailable", "message": message })),
    )
        .into_response()
}

async fn demo_js() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        include_str!("../assets/demo.js"),
    )
}

impl AppState {
    /// Presence of everyone in the login's organisation: the users this
    /// node knows, and anyone the scope's snapshot shows.
    async fn org_members(&self, login: &Login) -> Result<Vec<Member>, Response> {
        let mut known = self.logins.accounts().members(&login.org);
        let unavailable = |error: presence_core::Error| {
            tracing::warn!(%error, "reading presence failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "presence is unavailable; try again",
            )
                .into_response()
        };
        let snapshot = self
            .presence
            .snapshot(&login.org.as_str().into())
            .await
            .map_err(unavailable)?;
        for user in &snapshot.users {
            if !known.iter().any(|(id, _)| id == user.user_id.as_str()) {
                known.push((user.user_id.to_string(), user.user_id.to_string()));
            }
        }
        let ids: Vec<UserId> = known
            .iter()
            .map(|(id, _)| UserId::from(id.as_str()))
            .collect();
        let statuses = self.presence.statuses(&ids).await.map_err(unavailable)?;
        Ok(known
            .into_iter()
            .zip(statuses)
            .map(|((user_id, name), presence)| Member {
                user_id,
                name,
                presence: Some(presence),
            })
            .collect())
    }

    fn frame<'a>(&self, login: &'a Login, members: &'a [Member]) -> Frame<'a> {
        let me: Option<&UserPresence> = members
            .iter()
            .find(|m| m.user_id == login.user)
            .and_then(|m| m.presence.as_ref());
        Frame {
            login,
            me,
            activity_throttle: self.activity_throttle,
            now: self.presence.clock().now(),
        }
    }

    /// A new login is ONLINE at once, before its first page.
    async fn announce(&self, login: &Login) {
        let identity = identity(login);
        if let Err(error) = presence_axum::login(&self.presence, &identity).await {
            tracing::warn!(user = %login.user, %error, "marking a login ONLINE failed");
        }
    }

    /// Revoke the login first, so nothing of it can count as activity
    /// again; then end its sessions (its sockets close). An error when the
    /// store did not take the revocation: the login still ends on this
    /// node, but other nodes (or the next run) may accept its token.
    async fn sign_out(&self, login: &Login) -> Result<(), StoreDown> {
        let revoked = self.logins.sign_out(login).await;
        if let Err(error) = &revoked {
            tracing::warn!(user = %login.user, %error, "recording a logout failed: it holds on this node only");
        }
        if let Err(error) = presence_axum::logout(&self.presence, &identity(login)).await {
            tracing::warn!(user = %login.user, %error, "ending a login's presence failed");
        }
        revoked
    }
}

fn identity(login: &Login) -> Identity {
    CurrentLogin(login.clone(), None).into()
}
