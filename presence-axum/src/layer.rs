//! [`ActivityLayer`]: counts the host's authenticated HTTP requests as
//! activity, so a user browsing plain pages is present without a socket.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::FromRequestParts;
use axum::http::{Request, Response};
use presence_core::Presence;
use tower::{Layer, Service};

use crate::identity::Identity;
use crate::reply::NotActivity;

/// A tower layer marking HTTP activity for every request the host's
/// extractor `A` authenticates (see [`crate::PresenceRoutes::activity_layer`]).
///
/// The mark is taken after the response is ready, in a background task:
/// it never delays a page, a store outage never fails one, and a logout
/// request (whose login the host has removed by then) does not bring the
/// user back. Calls for one login within the service's coalescing window
/// (5 s by default) cost the store nothing. Responses of presence's own
/// routes are not activity.
pub struct ActivityLayer<A, S> {
    presence: Presence,
    state: S,
    _auth: PhantomData<fn() -> A>,
}

impl<A, S> ActivityLayer<A, S> {
    pub(crate) fn new(presence: Presence, state: S) -> Self {
        Self {
            presence,
            state,
            _auth: PhantomData,
        }
    }
}

impl<A, S: Clone> Clone for ActivityLayer<A, S> {
    fn clone(&self) -> Self {
        Self::new(self.presence.clone(), self.state.clone())
    }
}

impl<A, S> std::fmt::Debug for ActivityLayer<A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityLayer").finish_non_exhaustive()
    }
}

impl<I, A, S: Clone> Layer<I> for ActivityLayer<A, S> {
    type Service = ActivityService<I, A, S>;

    fn layer(&self, inner: I) -> Self::Service {
        ActivityService {
            inner,
            presence: self.presence.clone(),
            state: self.state.clone(),
            _auth: PhantomData,
        }
    }
}

/// The service of [`ActivityLayer`].
pub struct ActivityService<I, A, S> {
    inner: I,
    presence: Presence,
    state: S,
    _auth: PhantomData<fn() -> A>,
}

impl<I: Clone, A, S: Clone> Clone for ActivityService<I, A, S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            presence: self.presence.clone(),
            state: self.state.clone(),
            _auth: PhantomData,
        }
    }
}

impl<I, A, S> std::fmt::Debug for ActivityService<I, A, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActivityService").finish_non_exhaustive()
    }
}

impl<I, A, S, ReqBody, ResBody> Service<Request<ReqBody>> for ActivityService<I, A, S>
where
    I: Service<Request<ReqBody>, Response = Response<ResBody>>,
    I::Future: Send + 'static,
    A: FromRequestParts<S> + Into<Identity> + 'static,
    S: Clone + Send + Sync + 'static,
{
    type Response = Response<ResBody>;
    type Error = I::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let mut probe = parts.clone();
        let response = self.inner.call(Request::from_parts(parts, body));
        let presence = self.presence.clone();
        let state = self.state.clone();
        Box::pin(async move {
            let response = response.await?;
            if response.extensions().get::<NotActivity>().is_none() {
                tokio::spawn(async move {
                    let Ok(who) = A::from_request_parts(&mut probe, &state).await else {
                        return;
                    };
                    let identity: Identity = who.into();
                    let marked = presence
                        .mark_http_activity(&identity.user, &identity.login, &identity.member_of)
                        .await;
                    if let Err(failure) = marked {
                        tracing::warn!(user = %identity.user, error = %failure, "marking HTTP activity failed");
                    }
                });
            }
            Ok(response)
        })
    }
}
