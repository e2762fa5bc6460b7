//! One rule for refusals on every verb (approve, deny, revoke, extend, cancel): someone who may
//! not see a grant (neither its requester nor an approver of its role) is told only that there
//! is no grant they can act on, in the same words as for an id that names no grant, and learns
//! nothing of it; someone who can see it is told why they can't act. Against the real server,
//! the rig's IdP and PostgreSQL.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

fn id_of(g: &Value) -> String {
    g["id"].as_str().unwrap().to_string()
}

/// Every verb on grant `id` as the holder of `token`: (verb, reply).
async fn every_verb(server: &Replica, token: &str, id: &str) -> Vec<(&'static str, Reply)> {
    let calls: [(&'static str, Value); 5] = [
        ("approve", json!({})),
        ("deny", json!({ "comment": "no" })),
        ("revoke", json!({ "comment": "no" })),
        ("extend", json!({ "by_secs": 600, "reason": "more time" })),
        ("cancel", json!({})),
    ];
    let mut replies = Vec::new();
    for (verb, body) in calls {
        let r = server
            .post(&format!("/v1/grants/{id}/{verb}"), token, body)
            .await;
        replies.push((verb, r));
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_who_cannot_see_a_grant_is_told_only_that_there_is_none_they_can_act_on() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, mallory) = tokio::join!(rig.token("alice"), rig.token("mallory"));
    let pending = id_of(&server.request(&alice, "ANALYST", 3600).await);
    let active = id_of(&server.request(&alice, "READONLY", 600).await);
    let unknown = "g_aaaaaaaaaaaaaaaaaaaa";

    for id in [pending.as_str(), active.as_str(), unknown] {
        let words = format!(
            "there is no grant {id} you can act on; `snowgate grants --all` lists the ones you can"
        );
        for (verb, r) in every_verb(&server, &mallory, id).await {
            println!("mallory {verb} {id}: {} {}", r.status, r.message());
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{verb} {id}: {r:?}");
            assert_eq!(r.code(), "not_found", "{verb} {id}: {r:?}");
            assert_eq!(r.message(), words, "{verb} {id}");
            for secret in ["alice", "ANALYST", "READONLY", "managers"] {
                assert!(
                    !r.text.contains(secret),
                    "{verb} {id} tells mallory {secret}: {r:?}"
                );
            }
        }
        let r = server
            .get(&format!("/v1/grants/{id}"), Some(&mallory))
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        assert_eq!(r.message(), words, "GET {id}");
    }
    // Nothing was written.
    let g = server
        .get(&format!("/v1/grants/{pending}"), Some(&alice))
        .await;
    assert_eq!(g.json["grant"]["version"], 1, "{g:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_who_can_see_a_grant_is_told_why_they_cannot_act_on_it() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let pending = id_of(&server.request(&alice, "ANALYST", 3600).await);
    let active = id_of(&server.request(&alice, "READONLY", 600).await);

    // The requester: no decisions on her own request, no revoking or extending what is still
    // pending.
    let want = [
        (
            "approve",
            json!({}),
            "your own request; ask someone in managers",
        ),
        ("deny", json!({ "comment": "no" }), "your own request"),
        ("revoke", json!({}), "still pending"),
        (
            "extend",
            json!({ "by_secs": 600, "reason": "more time" }),
            "still pending",
        ),
    ];
    for (verb, body, want) in want {
        let r = server
            .post(&format!("/v1/grants/{pending}/{verb}"), &alice, body)
            .await;
        println!("alice {verb}: {} {}", r.status, r.message());
        assert!(r.message().contains(want), "alice {verb}: {r:?}");
        assert_ne!(r.status, StatusCode::NOT_FOUND, "alice {verb}: {r:?}");
    }
    // An approver: only the requester extends or cancels.
    for (verb, id) in [("extend", &active), ("cancel", &pending)] {
        let body = if verb == "extend" {
            json!({ "by_secs": 600, "reason": "more time" })
        } else {
            json!({})
        };
        let r = server
            .post(&format!("/v1/grants/{id}/{verb}"), &bob, body)
            .await;
        println!("bob {verb}: {} {}", r.status, r.message());
        assert_eq!(r.status, StatusCode::FORBIDDEN, "bob {verb}: {r:?}");
        assert!(r.message().contains("only the requester"), "{r:?}");
    }
}
