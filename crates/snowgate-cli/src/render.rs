//! Text renderings of the broker's JSON answers for people.

use serde_json::Value;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

fn list(v: &Value, empty: &str) -> String {
    let items: Vec<&str> = v
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
        .unwrap_or_default();
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

/// `snowgate status`.
pub fn status(v: &Value) -> String {
    let mut out = format!("{}\n", s(&v["summary"]));
    if let Some(problem) = v["keyring_problem"].as_str() {
        out.push_str(&format!("Keyring:   {problem}\n"));
    }
    if let Some(err) = v["sign_in"]["last_error"].as_str() {
        out.push_str(&format!("IdP error: {err}\n"));
    }
    out.push_str(&format!("IdP:       {}\n", s(&v["issuer"])));
    match v["team_server"].as_str() {
        Some(server) => {
            let team = &v["team"];
            let state = if team["reachable"] == false {
                "unreachable".to_string()
            } else if team["events"] == "connected" {
                "connected, following events".to_string()
            } else {
                "connecting".to_string()
            };
            out.push_str(&format!("Mode:      team ({server}, {state})\n"));
            if let Some(caller) = team.get("caller").filter(|c| c.is_object()) {
                out.push_str(&format!(
                    "Server:    signed in as {} ({}); groups: {}\n",
                    s(&caller["subject"]),
                    s(&team["auth"]),
                    list(&caller["groups"], "none")
                ));
            }
            out.push_str(&audit_lines(&team["audit"]));
        }
        None => out.push_str("Mode:      solo (local ledger)\n"),
    }
    out.push_str(&format!(
        "Snowflake: {} ({})\n",
        s(&v["account"]),
        s(&v["snowflake_url"])
    ));
    let gateway = &v["gateway"];
    match gateway["problem"].as_str() {
        Some(problem) => out.push_str(&format!("Gateway:   {problem}\n")),
        None => out.push_str(&format!(
            "Gateway:   {} ({}, {} open session{})\n",
            list(&v["gateway_listen"], "-"),
            gateway["state"].as_str().unwrap_or("not serving"),
            gateway["open_sessions"].as_u64().unwrap_or(0),
            if gateway["open_sessions"].as_u64() == Some(1) {
                ""
            } else {
                "s"
            }
        )),
    }
    out.push_str(&format!(
        "Roles:     {}\n",
        list(&v["roles"], "none configured")
    ));
    for note in v["notes"].as_array().into_iter().flatten() {
        if let Some(n) = note.as_str().filter(|n| !n.starts_with("gateway: ")) {
            out.push_str(&format!("Note:      {n}\n"));
        }
    }
    out
}

/// The status's audit lines in team mode: what waits in the local outbox and why, and what
/// the server refused.
fn audit_lines(audit: &Value) -> String {
    let n = |k: &str| audit[k].as_u64().unwrap_or(0);
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let (waiting, others, people, refused) =
        (n("waiting"), n("others"), n("other_people"), n("refused"));
    let mut out = String::new();
    if waiting == 0 && refused == 0 {
        out.push_str("Audit:     every record of this desktop is in the team server's log\n");
    }
    if waiting > others {
        let mine = waiting - others;
        out.push_str(&format!(
            "Audit:     {mine} record{} wait{} for the team server, kept in the local outbox\n",
            plural(mine),
            if mine == 1 { "s" } else { "" }
        ));
    }
    if others > 0 {
        out.push_str(&format!(
            "Audit:     {others} record{} of {} who signed out before {} went out wait{} in the local outbox; they go to the team server when {} signs in again on this desktop\n",
            plural(others),
            if people == 1 { "another person".to_string() } else { format!("{people} other people") },
            if others == 1 { "it" } else { "they" },
            if others == 1 { "s" } else { "" },
            if people == 1 { "that person" } else { "each" },
        ));
    }
    if refused > 0 {
        out.push_str(&format!(
            "Audit:     {refused} record{} refused by the team server {} kept in the local outbox and not sent again: {}\n",
            plural(refused),
            if refused == 1 { "is" } else { "are" },
            audit["refused_reason"].as_str().unwrap_or("no reason given"),
        ));
    }
    out
}

/// `snowgate whoami`.
pub fn whoami(v: &Value) -> String {
    let mut out = format!("Subject:   {}\n", s(&v["subject"]));
    if let Some(email) = v["email"].as_str() {
        out.push_str(&format!("Email:     {email}\n"));
    }
    if let Some(name) = v["name"].as_str() {
        out.push_str(&format!("Name:      {name}\n"));
    }
    out.push_str(&format!("Groups:    {}\n", list(&v["groups"], "none")));
    if v.get("server_groups").is_some() {
        out.push_str(&format!(
            "Groups at the team server: {}\n",
            list(&v["server_groups"], "none")
        ));
    }
    if let Some(p) = v["server_problem"].as_str() {
        out.push_str(&format!("Team server: {p}\n"));
    }
    out.push_str(&format!("Issuer:    {}\n", s(&v["issuer"])));
    out.push_str(&format!("Signed in: {}\n", s(&v["last_sign_in"])));
    if let Some(exp) = v["idp_access_token_expires_at"].as_str() {
        out.push_str(&format!("IdP token expires:  {exp}\n"));
    }
    if let Some(tokens) = v["snowflake_tokens"].as_array() {
        for t in tokens {
            out.push_str(&format!(
                "Snowflake token for {} expires: {}\n",
                s(&t["role"]),
                s(&t["expires_at"])
            ));
        }
    }
    out.push_str(&format!(
        "Kept in:   {}\n",
        match v["vault"].as_str() {
            Some("os_keyring") => "the OS keyring",
            Some("session_only") => "memory only (session-only mode)",
            Some(other) => other,
            None => "-",
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::audit_lines;

    #[test]
    fn the_audit_lines_say_what_waits_whose_it_is_and_what_was_refused() {
        assert_eq!(
            audit_lines(&json!({ "waiting": 0, "others": 0, "refused": 0 })),
            "Audit:     every record of this desktop is in the team server's log\n"
        );
        let text = audit_lines(&json!({
            "waiting": 5, "others": 3, "other_people": 1, "refused": 2,
            "refused_reason": "records[0]: there is no grant g_1"
        }));
        assert!(
            text.contains("2 records wait for the team server"),
            "{text}"
        );
        assert!(
            text.contains("3 records of another person who signed out before they went out wait"),
            "{text}"
        );
        assert!(text.contains("when that person signs in again"), "{text}");
        assert!(
            text.contains("2 records refused by the team server are kept in the local outbox and not sent again: records[0]: there is no grant g_1"),
            "{text}"
        );
        assert!(!text.contains("every record"), "{text}");
        let one = audit_lines(&json!({ "waiting": 1, "others": 0, "refused": 0 }));
        assert!(one.contains("1 record waits for the team server"), "{one}");
    }
}
