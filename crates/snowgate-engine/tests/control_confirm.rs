//! The tray's confirmation of control requests that hand out a secret, over a real control
//! socket: a request for a token or a tool secret waits for the [`Confirmer`], goes through when
//! it allows, and is refused with a sentence when it denies or does not answer in time; other
//! requests, and a broker without a gate (`snowgate up`), are not held.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use snowgate_engine::control::{
    ConfirmAsk, ConfirmGate, Confirmer, ControlClient, ControlError, ControlServer, ErrorKind,
    Handler, Request,
};

/// Answers every request with its method, and counts what it answered.
#[derive(Default)]
struct Echo {
    handled: Mutex<Vec<String>>,
}

impl Handler for Echo {
    async fn handle(&self, request: Request) -> Result<serde_json::Value, ControlError> {
        let method = request.method();
        self.handled.lock().unwrap().push(method.clone());
        Ok(serde_json::json!({ "answered": method }))
    }
}

/// How the scripted person answers.
#[derive(Clone, Copy)]
enum Answer {
    Allow,
    Deny,
    Never,
}

/// A person who answers as scripted, and remembers what they were asked.
struct Person {
    answer: Answer,
    asked: Mutex<Vec<ConfirmAsk>>,
    /// Questions taken down (their future dropped) without an answer.
    abandoned: Arc<AtomicUsize>,
}

impl Person {
    fn new(answer: Answer) -> Arc<Person> {
        Arc::new(Person {
            answer,
            asked: Mutex::new(Vec::new()),
            abandoned: Arc::new(AtomicUsize::new(0)),
        })
    }
}

struct Abandoned(Arc<AtomicUsize>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Confirmer for Person {
    fn confirm(&self, ask: ConfirmAsk) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        self.asked.lock().unwrap().push(ask);
        let answer = self.answer;
        let abandoned = self.abandoned.clone();
        Box::pin(async move {
            match answer {
                Answer::Allow => true,
                Answer::Deny => false,
                Answer::Never => {
                    let _guard = Abandoned(abandoned);
                    std::future::pending::<()>().await;
                    unreachable!()
                }
            }
        })
    }
}

/// A control socket served with `gate`, and a client on it.
async fn serve(
    dir: &tempfile::TempDir,
    gate: Option<Arc<ConfirmGate>>,
) -> (Arc<Echo>, ControlClient, tokio::task::JoinHandle<()>) {
    let path = dir.path().join("run/control.sock");
    let server = ControlServer::bind(&path).await.unwrap();
    let echo = Arc::new(Echo::default());
    let task = tokio::spawn(server.serve_gated(echo.clone(), gate));
    let client = ControlClient::connect(&path).await.unwrap();
    (echo, client, task)
}

fn token() -> Request {
    Request::Token {
        role: "ANALYST".into(),
    }
}

fn tool_secret() -> Request {
    Request::ToolSecretCreate {
        name: "dbt".into(),
        rotate: false,
    }
}

#[tokio::test]
async fn an_allowed_request_goes_through_and_the_person_sees_what_and_who() {
    let dir = tempfile::tempdir().unwrap();
    let person = Person::new(Answer::Allow);
    let gate = Arc::new(ConfirmGate::new(person.clone()));
    let (echo, mut client, _task) = serve(&dir, Some(gate)).await;

    let answer = client.call(&token()).await.unwrap();
    assert_eq!(answer["answered"], "token");
    let answer = client.call(&tool_secret()).await.unwrap();
    assert_eq!(answer["answered"], "tool_secret_create");
    assert_eq!(
        *echo.handled.lock().unwrap(),
        ["token", "tool_secret_create"]
    );

    let asked = person.asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0].method, "token");
    assert_eq!(asked[0].what, "a Snowflake token for role ANALYST");
    assert_eq!(asked[1].what, "a connection secret for tool \"dbt\"");
    assert_ne!(asked[0].id, asked[1].id);
    // The asker is this test process: the socket's peer credentials name it.
    assert_eq!(asked[0].pid, Some(std::process::id()));
    let exe = std::env::current_exe().unwrap().display().to_string();
    assert_eq!(asked[0].process.as_deref(), Some(exe.as_str()));
    assert_eq!(asked[0].timeout_secs, 60);
}

#[tokio::test]
async fn a_denied_request_is_refused_with_a_sentence_and_never_reaches_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let person = Person::new(Answer::Deny);
    let gate = Arc::new(ConfirmGate::new(person.clone()));
    let (echo, mut client, _task) = serve(&dir, Some(gate)).await;

    let e = client.call(&tool_secret()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert_eq!(
        e.message,
        "a connection secret for tool \"dbt\" was denied in the Snowgate tray; ask again and \
         choose Allow if you started this"
    );
    let e = client.call(&token()).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(
        e.message
            .starts_with("a Snowflake token for role ANALYST was denied"),
        "{e}"
    );
    assert!(echo.handled.lock().unwrap().is_empty());

    // Requests that hand out no secret are not held, and the connection still works.
    let answer = client.call(&Request::Status).await.unwrap();
    assert_eq!(answer["answered"], "status");
    let answer = client.call(&Request::ToolSecretList).await.unwrap();
    assert_eq!(answer["answered"], "tool_secret_list");
    assert_eq!(person.asked.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn an_unanswered_request_is_refused_when_its_time_is_up_and_the_question_taken_down() {
    let dir = tempfile::tempdir().unwrap();
    let person = Person::new(Answer::Never);
    let gate = Arc::new(ConfirmGate::with_timeout(
        person.clone(),
        Duration::from_millis(300),
    ));
    let (echo, mut client, _task) = serve(&dir, Some(gate)).await;

    let started = std::time::Instant::now();
    let e = client.call(&token()).await.unwrap_err();
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    assert_eq!(e.kind, ErrorKind::Forbidden);
    assert!(
        e.message
            .contains("needs your confirmation in the Snowgate tray"),
        "{e}"
    );
    assert!(echo.handled.lock().unwrap().is_empty());
    assert_eq!(person.abandoned.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn without_a_gate_as_in_snowgate_up_nothing_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let (echo, mut client, _task) = serve(&dir, None).await;
    let answer = client.call(&token()).await.unwrap();
    assert_eq!(answer["answered"], "token");
    let answer = client.call(&tool_secret()).await.unwrap();
    assert_eq!(answer["answered"], "tool_secret_create");
    assert_eq!(echo.handled.lock().unwrap().len(), 2);
}
