//! The loopback listener that receives the browser sign-in's redirect (RFC 8252).
//!
//! It binds `127.0.0.1:0`, so the redirect URI is `http://127.0.0.1:<port>/callback`, and
//! accepts exactly one redirect for the sign-in it was armed for:
//!
//! - `GET /callback` with the armed `state` (and, if present, the right `iss`, RFC 9207) hands
//!   the code to the waiting sign-in, then waits for the sign-in's outcome and shows the person
//!   a page: "Signed in to Snowgate — you can close this tab and return to the app", or what
//!   went wrong.
//! - `GET /callback` with another `state`, or none, is answered 400 and changes nothing: the
//!   sign-in stays armed for its own redirect, so a stray or hostile request (an old tab,
//!   another program) can't end a sign-in the person is in the middle of.
//! - A request from another OS user's process is answered 403 and changes nothing: only the
//!   user who started the sign-in can deliver its code (Linux; the owner of the peer's socket
//!   is read from `/proc/net/tcp`, as the gateway does; elsewhere the OS can't tell, and the
//!   `state` check stands alone).
//! - `GET /start/<token>` sends the browser on (303) to the armed authorization request. The
//!   browser is opened on this short local URL, so the full request (its `state`, nonce and
//!   PKCE challenge) never appears on a command line, where other local users could read it
//!   in `/proc`. The token is random per listener; the same-user check below applies.
//! - Any other path, or any request once the one redirect was taken (or before the listener is
//!   armed), is answered 404 and changes nothing.
//!
//! The listener is served by axum on its own task and shuts down when dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use openidconnect::{CsrfToken, RedirectUrl};
use tokio::sync::oneshot;

use super::error::CallbackError;

/// The path of the redirect URI.
pub const CALLBACK_PATH: &str = "/callback";
/// The path prefix of the start URL.
const START_PATH: &str = "/start/";
/// How long the page waits for the sign-in to finish before it answers anyway.
const OUTCOME_WAIT: Duration = Duration::from_secs(60);

/// A redirect that carried the armed `state` and a code.
pub struct Arrival {
    code: String,
    reply: oneshot::Sender<Reply>,
}

/// What the browser is answered once the sign-in has looked at the code.
enum Reply {
    /// A page saying how the sign-in ended: `Ok(who)` or `Err(what went wrong)`.
    Outcome(Result<String, String>),
    /// A redirect back to the IdP: the sign-in goes on there (e.g. on its consent page).
    Redirect(url::Url),
}

impl Arrival {
    /// The authorization code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// Tells the browser page how the sign-in ended: `Ok(who)` or `Err(what went wrong)`.
    pub fn finish(self, outcome: Result<String, String>) {
        let _ = self.reply.send(Reply::Outcome(outcome));
    }

    /// Sends the browser on to `url` (303 See Other), for a sign-in that asks the IdP again.
    /// Arm the listener for that request first.
    pub fn redirect(self, url: url::Url) {
        let _ = self.reply.send(Reply::Redirect(url));
    }
}

struct Armed {
    state: CsrfToken,
    issuer: String,
    /// Where the start URL sends the browser.
    authorize_url: url::Url,
    sender: oneshot::Sender<Result<Arrival, CallbackError>>,
}

struct Shared {
    armed: Mutex<Option<Armed>>,
    /// The start URL's random token.
    start_token: String,
    /// The listener's own address, to find a peer's socket owner.
    local: SocketAddr,
}

/// A running loopback listener for one browser sign-in.
pub struct LoopbackListener {
    addr: SocketAddr,
    redirect_uri: RedirectUrl,
    start_url: url::Url,
    shared: Arc<Shared>,
    receiver: Option<oneshot::Receiver<Result<Arrival, CallbackError>>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl LoopbackListener {
    /// Binds `127.0.0.1:0` and starts serving. Not armed yet: every request gets a 404.
    pub async fn bind() -> std::io::Result<LoopbackListener> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let redirect_uri =
            RedirectUrl::new(format!("http://127.0.0.1:{}{CALLBACK_PATH}", addr.port()))
                .expect("a loopback URL is valid");
        let start_token = CsrfToken::new_random().secret().clone();
        let start_url = url::Url::parse(&format!(
            "http://127.0.0.1:{}{START_PATH}{start_token}",
            addr.port()
        ))
        .expect("a loopback URL is valid");
        let shared = Arc::new(Shared {
            armed: Mutex::new(None),
            start_token,
            local: addr,
        });
        let app = Router::new()
            .route(CALLBACK_PATH, get(callback))
            .route(&format!("{START_PATH}{{token}}"), get(start))
            .fallback(not_found)
            .with_state(shared.clone());
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stop.await;
            });
            // A browser may keep a connection open; do not let it hold the task forever.
            let _ = tokio::time::timeout(OUTCOME_WAIT * 10, serve).await;
        });
        tracing::debug!(%addr, "loopback redirect listener is up");
        Ok(LoopbackListener {
            addr,
            redirect_uri,
            start_url,
            shared,
            receiver: None,
            shutdown: Some(shutdown),
        })
    }

    /// `http://127.0.0.1:<port>/callback`.
    pub fn redirect_uri(&self) -> &RedirectUrl {
        &self.redirect_uri
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The short local URL to open in the browser: it sends the browser on to the armed
    /// authorization request.
    pub fn start_url(&self) -> &url::Url {
        &self.start_url
    }

    /// Arms the listener for the sign-in that sent `state` to `issuer` with the authorization
    /// request `authorize_url`.
    pub fn arm(&mut self, state: CsrfToken, issuer: &str, authorize_url: url::Url) {
        let (sender, receiver) = oneshot::channel();
        *self.shared.armed.lock().expect("loopback lock") = Some(Armed {
            state,
            issuer: issuer.to_string(),
            authorize_url,
            sender,
        });
        self.receiver = Some(receiver);
    }

    /// Waits up to `timeout` for the one redirect of the armed sign-in.
    pub async fn next(&mut self, timeout: Duration) -> Result<Arrival, CallbackError> {
        let receiver = self
            .receiver
            .take()
            .expect("the loopback listener is armed before it is awaited");
        match tokio::time::timeout(timeout, receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => {
                // Disarm, so a late redirect gets a 404 instead of a page that promises success.
                self.shared.armed.lock().expect("loopback lock").take();
                Err(CallbackError::TimedOut(crate::duration::format(timeout)))
            }
        }
    }
}

impl Drop for LoopbackListener {
    fn drop(&mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
    }
}

fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Whether the process on the other end of `peer` runs as this user. Where the OS can't say
/// (not Linux), every local peer passes and the `state` check stands alone.
fn same_user(local: SocketAddr, peer: SocketAddr) -> bool {
    use snowgate_gateway::peer;
    if !peer::same_user_check_supported() {
        return true;
    }
    peer::lookup(local, peer).is_some_and(|socket| socket.uid == peer::current_uid())
}

/// The start URL: a 303 to the armed authorization request, for this user's browser only.
async fn start(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(token): axum::extract::Path<String>,
) -> Response {
    if !same_user(shared.local, peer) {
        tracing::warn!(%peer, "refused a sign-in start from another OS user's process");
        return page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "This sign-in belongs to another user of this computer.",
        );
    }
    let target = {
        let armed = shared.armed.lock().expect("loopback lock");
        match armed.as_ref() {
            Some(a) if same(&token, &shared.start_token) => Some(a.authorize_url.clone()),
            _ => None,
        }
    };
    let Some(target) = target else {
        return not_found_page();
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(location) = target.as_str().parse() {
        headers.insert("location", location);
    }
    headers.insert("cache-control", "no-store".parse().expect("a header value"));
    headers.insert(
        "referrer-policy",
        "no-referrer".parse().expect("a header value"),
    );
    response
}

async fn callback(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
) -> Response {
    if !same_user(shared.local, peer) {
        tracing::warn!(%peer, "refused a sign-in redirect from another OS user's process");
        return page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "This sign-in belongs to another user of this computer.",
        );
    }
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let armed = {
        let mut slot = shared.armed.lock().expect("loopback lock");
        let Some(waiting) = slot.as_ref() else {
            tracing::debug!("a redirect arrived with no sign-in waiting; ignored");
            return not_found_page();
        };
        let state_ok = params
            .get("state")
            .is_some_and(|s| same(s, waiting.state.secret()));
        if !state_ok {
            // Not this sign-in's redirect: refused, and the sign-in stays armed for its own.
            tracing::warn!(%peer, "refused a sign-in redirect with a state that is not the armed one");
            return page(
                StatusCode::BAD_REQUEST,
                "Snowgate sign-in: wrong page",
                &format!(
                    "{}. Finish the sign-in in the tab Snowgate opened.",
                    CallbackError::WrongState
                ),
            );
        }
        slot.take().expect("checked above")
    };
    let outcome = if let Some(iss) = params.get("iss").filter(|i| {
        super::oidc::normalize_issuer(i) != super::oidc::normalize_issuer(&armed.issuer)
    }) {
        Err(CallbackError::WrongIssuer {
            expected: armed.issuer.clone(),
            found: iss.clone(),
        })
    } else if let Some(error) = params.get("error") {
        Err(CallbackError::Denied {
            error: error.clone(),
            description: params.get("error_description").cloned(),
        })
    } else if let Some(code) = params.get("code") {
        Ok(code.clone())
    } else {
        Err(CallbackError::NoCode)
    };
    match outcome {
        Err(e) => {
            tracing::debug!(error = %e, "the sign-in redirect was refused");
            let _ = armed.sender.send(Err(e.clone()));
            page(
                StatusCode::BAD_REQUEST,
                "Snowgate sign-in failed",
                &format!("{e}."),
            )
        }
        Ok(code) => {
            let (reply, answer) = oneshot::channel();
            if armed.sender.send(Ok(Arrival { code, reply })).is_err() {
                return not_found().await;
            }
            match tokio::time::timeout(OUTCOME_WAIT, answer).await {
                Ok(Ok(Reply::Redirect(url))) => {
                    let mut response = StatusCode::SEE_OTHER.into_response();
                    let headers = response.headers_mut();
                    if let Ok(location) = url.as_str().parse() {
                        headers.insert("location", location);
                    }
                    headers.insert("cache-control", "no-store".parse().expect("a header value"));
                    response
                }
                Ok(Ok(Reply::Outcome(Ok(who)))) => page(
                    StatusCode::OK,
                    "Signed in to Snowgate",
                    &format!(
                        "Signed in to Snowgate as {who} — you can close this tab and return to the app."
                    ),
                ),
                Ok(Ok(Reply::Outcome(Err(why)))) => page(
                    StatusCode::BAD_REQUEST,
                    "Snowgate sign-in failed",
                    &format!("Snowgate could not complete the sign-in: {why}. Return to the app and try again."),
                ),
                _ => page(
                    StatusCode::OK,
                    "Snowgate received the sign-in",
                    "Snowgate received the sign-in — you can close this tab and return to the app to see whether it worked.",
                ),
            }
        }
    }
}

async fn not_found() -> Response {
    not_found_page()
}

fn not_found_page() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "No Snowgate sign-in is waiting for this page.",
    )
}

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\"></head>\
         <body style=\"font-family: system-ui, sans-serif; margin: 4em auto; max-width: 36em\">\
         <h1>{t}</h1><p>{m}</p></body></html>\n",
        t = escape(title),
        m = escape(message)
    );
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert("cache-control", "no-store".parse().expect("a header value"));
    headers.insert(
        "referrer-policy",
        "no-referrer".parse().expect("a header value"),
    );
    response
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_url() -> url::Url {
        url::Url::parse("https://idp.test/auth?state=s&nonce=n&code_challenge=c").unwrap()
    }

    #[tokio::test]
    async fn the_start_url_sends_the_browser_on_to_the_armed_request_and_holds_none_of_it() {
        let mut l = LoopbackListener::bind().await.unwrap();
        let start = l.start_url().clone();
        assert!(start.as_str().starts_with("http://127.0.0.1:"), "{start}");
        assert_eq!(start.query(), None, "{start}");
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        // Before it is armed there is nowhere to go.
        let resp = client.get(start.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 404);
        l.arm(CsrfToken::new("s".into()), "https://idp.test", auth_url());
        let resp = client.get(start.clone()).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 303);
        assert_eq!(resp.headers()["location"], auth_url().as_str());
        // Another token is not the start URL.
        let mut other = start.clone();
        other.set_path("/start/not-the-token");
        assert_eq!(
            client.get(other).send().await.unwrap().status().as_u16(),
            404
        );
        // Another OS user's process is refused.
        if let Some(status) = tokio::task::spawn_blocking(move || get_as_nobody(start.as_str()))
            .await
            .unwrap()
        {
            if snowgate_gateway::peer::same_user_check_supported() {
                assert_eq!(status, "403");
            }
        }
    }

    async fn get(url: &str) -> (u16, String) {
        let resp = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .get(url)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    #[tokio::test]
    async fn the_armed_redirect_gets_the_success_page() {
        let mut l = LoopbackListener::bind().await.unwrap();
        assert!(l.redirect_uri().as_str().starts_with("http://127.0.0.1:"));
        assert!(l.redirect_uri().as_str().ends_with("/callback"));
        l.arm(CsrfToken::new("s1".into()), "https://idp.test", auth_url());
        let url = format!(
            "{}?code=c1&state=s1&iss=https%3A%2F%2Fidp.test",
            l.redirect_uri().as_str()
        );
        let browser = tokio::spawn(async move { get(&url).await });
        let arrival = l.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(arrival.code(), "c1");
        arrival.finish(Ok("alice".into()));
        let (status, body) = browser.await.unwrap();
        assert_eq!(status, 200);
        assert!(
            body.contains("you can close this tab and return to the app"),
            "{body}"
        );
        // The one redirect was taken: another is a 404.
        let (status, _) = get(l.redirect_uri().as_str()).await;
        assert_eq!(status, 404);
    }

    #[tokio::test]
    async fn a_sign_in_that_asks_again_sends_the_browser_back_and_takes_the_next_redirect() {
        let mut l = LoopbackListener::bind().await.unwrap();
        l.arm(CsrfToken::new("s1".into()), "https://idp.test", auth_url());
        let first = format!("{}?code=c1&state=s1", l.redirect_uri().as_str());
        let browser = tokio::spawn(async move {
            reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(&first)
                .send()
                .await
                .unwrap()
        });
        let arrival = l.next(Duration::from_secs(5)).await.unwrap();
        l.arm(CsrfToken::new("s2".into()), "https://idp.test", auth_url());
        arrival.redirect(url::Url::parse("https://idp.test/auth?prompt=consent").unwrap());
        let resp = browser.await.unwrap();
        assert_eq!(resp.status().as_u16(), 303);
        assert_eq!(
            resp.headers()["location"],
            "https://idp.test/auth?prompt=consent"
        );
        // The next redirect, for the new request, is taken.
        let second = format!("{}?code=c2&state=s2", l.redirect_uri().as_str());
        let browser = tokio::spawn(async move { get(&second).await });
        let arrival = l.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(arrival.code(), "c2");
        arrival.finish(Ok("alice".into()));
        assert_eq!(browser.await.unwrap().0, 200);
    }

    #[tokio::test]
    async fn a_redirect_with_the_wrong_state_is_refused_and_the_sign_in_waits_for_its_own() {
        let mut l = LoopbackListener::bind().await.unwrap();
        l.arm(
            CsrfToken::new("right".into()),
            "https://idp.test",
            auth_url(),
        );
        let (status, body) =
            get(&format!("{}?code=c&state=wrong", l.redirect_uri().as_str())).await;
        assert_eq!(status, 400);
        assert!(body.contains("does not belong"), "{body}");
        let (status, _) = get(&format!("{}?code=c", l.redirect_uri().as_str())).await;
        assert_eq!(status, 400, "no state at all is refused the same way");
        // The stray requests disarmed nothing: the sign-in's own redirect still lands.
        let url = format!("{}?code=c-right&state=right", l.redirect_uri().as_str());
        let browser = tokio::spawn(async move { get(&url).await });
        let arrival = l.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(arrival.code(), "c-right");
        arrival.finish(Ok("alice".into()));
        assert_eq!(browser.await.unwrap().0, 200);
    }

    /// Runs a GET of `url` as another OS user (`nobody`), as another local account's process
    /// would; `None` where this test can't switch users (not root).
    fn get_as_nobody(url: &str) -> Option<String> {
        use std::os::unix::process::CommandExt;
        if snowgate_gateway::peer::current_uid() != 0 {
            return None;
        }
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(
                "import sys, urllib.request, urllib.error\n\
                 try:\n    r = urllib.request.urlopen(sys.argv[1]); print(r.status)\n\
                 except urllib.error.HTTPError as e:\n    print(e.code)",
            )
            .arg(url)
            .uid(65534)
            .gid(65534)
            .output()
            .expect("running python3 as nobody");
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    #[tokio::test]
    async fn another_os_user_cannot_reach_the_listener_and_changes_nothing() {
        let mut l = LoopbackListener::bind().await.unwrap();
        l.arm(CsrfToken::new("s".into()), "https://idp.test", auth_url());
        let forged = format!("{}?code=attacker&state=s", l.redirect_uri().as_str());
        let answer = tokio::task::spawn_blocking(move || get_as_nobody(&forged))
            .await
            .unwrap();
        let Some(status) = answer else {
            eprintln!("skipped: switching to another OS user needs root");
            return;
        };
        if snowgate_gateway::peer::same_user_check_supported() {
            assert_eq!(status, "403", "another user's request is refused");
            let url = format!("{}?code=mine&state=s", l.redirect_uri().as_str());
            let browser = tokio::spawn(async move { get(&url).await });
            let arrival = l.next(Duration::from_secs(5)).await.unwrap();
            assert_eq!(arrival.code(), "mine", "the forged code never arrived");
            arrival.finish(Ok("alice".into()));
            assert_eq!(browser.await.unwrap().0, 200);
        }
    }

    #[tokio::test]
    async fn other_paths_and_unarmed_listeners_answer_404_and_change_nothing() {
        let mut l = LoopbackListener::bind().await.unwrap();
        let base = format!("http://{}", l.addr());
        assert_eq!(get(&format!("{base}/callback?code=c&state=s")).await.0, 404);
        l.arm(CsrfToken::new("s".into()), "https://idp.test", auth_url());
        assert_eq!(get(&format!("{base}/favicon.ico")).await.0, 404);
        assert_eq!(get(&format!("{base}/?code=c&state=s")).await.0, 404);
        let url = format!("{base}/callback?code=c2&state=s");
        let browser = tokio::spawn(async move { get(&url).await });
        let arrival = l.next(Duration::from_secs(5)).await.unwrap();
        assert_eq!(arrival.code(), "c2");
        arrival.finish(Err("the ID token was rejected".into()));
        let (status, body) = browser.await.unwrap();
        assert_eq!(status, 400);
        assert!(body.contains("the ID token was rejected"), "{body}");
    }

    #[tokio::test]
    async fn an_error_redirect_from_the_idp_is_reported() {
        let mut l = LoopbackListener::bind().await.unwrap();
        l.arm(CsrfToken::new("s".into()), "https://idp.test", auth_url());
        let (status, _) = get(&format!(
            "{}?error=access_denied&error_description=End-User+aborted&state=s",
            l.redirect_uri().as_str()
        ))
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            l.next(Duration::from_secs(1)).await.err(),
            Some(CallbackError::Denied {
                error: "access_denied".into(),
                description: Some("End-User aborted".into())
            })
        );
    }

    #[tokio::test]
    async fn a_redirect_from_another_issuer_is_refused() {
        let mut l = LoopbackListener::bind().await.unwrap();
        l.arm(CsrfToken::new("s".into()), "https://idp.test", auth_url());
        let (status, _) = get(&format!(
            "{}?code=c&state=s&iss=https%3A%2F%2Fevil.test",
            l.redirect_uri().as_str()
        ))
        .await;
        assert_eq!(status, 400);
        assert!(matches!(
            l.next(Duration::from_secs(1)).await,
            Err(CallbackError::WrongIssuer { .. })
        ));
    }

    #[tokio::test]
    async fn nobody_coming_back_times_out() {
        let mut l = LoopbackListener::bind().await.unwrap();
        l.arm(CsrfToken::new("s".into()), "https://idp.test", auth_url());
        let err = l.next(Duration::from_millis(50)).await.err().unwrap();
        assert!(matches!(err, CallbackError::TimedOut(_)));
        // A late redirect finds nothing waiting.
        let (status, _) = get(&format!("{}?code=c&state=s", l.redirect_uri().as_str())).await;
        assert_eq!(status, 404);
    }
}
