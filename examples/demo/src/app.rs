//! The demo's router: pages, the login API, and presence mounted from
//! `presence-axum`.

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

use crate::accounts::{Accounts, Login};
use crate::auth::{CurrentLogin, LOGIN_COOKIE, TrustedOrigin};
use crate::pages::{self, Frame, Member};

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) accounts: Accounts,
    pub(crate) presence: Presence,
    pub(crate) activity_throttle: Duration,
    /// The pages that may post to the login and logout routes: those that
    /// may use presence.
    pub(crate) origins: AllowedOrigins,
}

impl FromRef<AppState> for Accounts {
    fn from_ref(state: &AppState) -> Self {
        state.accounts.clone()
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
        .with_state(state)
}

/// A page's signed-in login, or the way to the login page.
type Signed = Result<CurrentLogin, StatusCode>;

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

async fn dashboard(State(state): State<AppState>, me: Signed) -> Response {
    let Ok(CurrentLogin(login)) = me else {
        return to_login();
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
    let Ok(CurrentLogin(login)) = me else {
        return to_login();
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
    let Ok(CurrentLogin(login)) = me else {
        return to_login();
    };
    let valid = (1..=32).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return (StatusCode::NOT_FOUND, "no such channel").into_response();
    }
    match state.org_members(&login).await {
        Ok(members) => {
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
    let login = match state.accounts.sign_in(&form.username, &form.org) {
        Ok(login) => login,
        Err(refused) => {
            return (
                StatusCode::BAD_REQUEST,
                Html(pages::login(Some(&refused.to_string()))),
            )
                .into_response();
        }
    };
    state.announce(&login).await;
    let cookie = format!(
        "{LOGIN_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
        login.id
    );
    let mut response = Redirect::to("/").into_response();
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(SET_COOKIE, cookie);
    }
    response
}

async fn logout_form(State(state): State<AppState>, _: TrustedOrigin, me: Signed) -> Response {
    if let Ok(CurrentLogin(login)) = me {
        state.sign_out(&login).await;
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
    match state.accounts.sign_in(&body.username, &body.org) {
        Ok(login) => {
            state.announce(&login).await;
            Json(json!({ "token": login.id, "user_id": login.user })).into_response()
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
        Ok(CurrentLogin(login)) => {
            state.sign_out(&login).await;
            StatusCode::NO_CONTENT.into_response()
        }
        Err(status) => (
            status,
            Json(json!({ "code": "unauthenticated", "message": "unknown or expired token" })),
        )
            .into_response(),
    }
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
        let mut known = self.accounts.members(&login.org);
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

    /// Forget the login first, so nothing of it can count as activity
    /// again; then end its sessions (its sockets close).
    async fn sign_out(&self, login: &Login) {
        self.accounts.sign_out(&login.id);
        if let Err(error) = presence_axum::logout(&self.presence, &identity(login)).await {
            tracing::warn!(user = %login.user, %error, "ending a login's presence failed");
        }
    }
}

fn identity(login: &Login) -> Identity {
    CurrentLogin(login.clone()).into()
}
