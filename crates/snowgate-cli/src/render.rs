//! Text renderings of the broker's answers for people.

use chrono::{DateTime, SecondsFormat, Utc};
use snowgate_engine::control::answers::WhoAmIAnswer;
use snowgate_engine::identity::IdentityStatus;
use snowgate_engine::team::AuditReportStatus;
use snowgate_engine::BrokerStatus;

fn list(items: &[String], empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(", ")
    }
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `snowgate status`.
pub fn status(v: &BrokerStatus) -> String {
    let mut out = format!("{}\n", v.summary);
    if let Some(problem) = &v.keyring_problem {
        out.push_str(&format!("Keyring:   {problem}\n"));
    }
    if let IdentityStatus::OfflineRetrying { last_error, .. } = &v.sign_in {
        out.push_str(&format!("IdP error: {last_error}\n"));
    }
    out.push_str(&format!("IdP:       {}\n", v.issuer));
    match (&v.team_server, &v.team) {
        (Some(server), Some(team)) => {
            let state = if !team.reachable {
                "unreachable"
            } else if team.events == "connected" {
                "connected, following events"
            } else {
                "connecting"
            };
            out.push_str(&format!("Mode:      team ({server}, {state})\n"));
            if let Some(caller) = &team.caller {
                out.push_str(&format!(
                    "Server:    signed in as {} ({}); groups: {}\n",
                    caller.subject,
                    team.auth,
                    list(&caller.groups, "none")
                ));
            }
            out.push_str(&audit_lines(&team.audit));
        }
        (Some(server), None) => out.push_str(&format!("Mode:      team ({server})\n")),
        (None, _) => out.push_str("Mode:      solo (local ledger)\n"),
    }
    match v.accounts.as_slice() {
        [] => out.push_str(&format!("Snowflake: {} ({})\n", v.account, v.snowflake_url)),
        accounts => {
            for (i, a) in accounts.iter().enumerate() {
                let label = if i == 0 { "Snowflake:" } else { "          " };
                let id = if a.name == a.account {
                    String::new()
                } else {
                    format!(" = {}", a.account)
                };
                out.push_str(&format!(
                    "{label} {}{id} ({}){}\n",
                    a.name,
                    a.snowflake_url,
                    if i == 0 && accounts.len() > 1 {
                        ", the default"
                    } else {
                        ""
                    }
                ));
            }
        }
    }
    let gateway = &v.gateway;
    match &gateway.problem {
        Some(problem) => out.push_str(&format!("Gateway:   {problem}\n")),
        None => out.push_str(&format!(
            "Gateway:   {} ({}, {} open session{})\n",
            list(&v.gateway_listen, "-"),
            if gateway.state.is_empty() {
                "not serving"
            } else {
                &gateway.state
            },
            gateway.open_sessions,
            if gateway.open_sessions == 1 { "" } else { "s" }
        )),
    }
    if let Some(tls) = &gateway.tls {
        out.push_str(&format!(
            "HTTPS:     {} (CA {}; leaf expires {})\n",
            list(&tls.listen, "-"),
            tls.ca_file,
            tls.leaf_expires_at.as_deref().unwrap_or("-")
        ));
    }
    out.push_str(&format!(
        "Roles:     {}\n",
        list(&v.roles, "none configured")
    ));
    for n in v.notes.iter().filter(|n| !n.starts_with("gateway: ")) {
        out.push_str(&format!("Note:      {n}\n"));
    }
    for ask in &v.tool_asks {
        out.push_str(&format!(
            "Asked:     {} asked for {} ({} login{}); {}\n",
            ask.tool,
            ask.role,
            ask.logins,
            if ask.logins == 1 { "" } else { "s" },
            match &ask.request {
                Some(id) => format!("requested as {id}"),
                None => format!(
                    "request it with `snowgate request {} --duration {} --reason \"...\"`",
                    ask.role,
                    snowgate_engine::duration::format(std::time::Duration::from_secs(
                        ask.duration_secs
                    ))
                ),
            }
        ));
    }
    out
}

/// The status's audit lines in team mode: what waits in the local outbox and why, and what
/// the server refused.
fn audit_lines(audit: &AuditReportStatus) -> String {
    let plural = |n: u64| if n == 1 { "" } else { "s" };
    let (waiting, others, people, refused) = (
        audit.waiting,
        audit.others,
        audit.other_people,
        audit.refused,
    );
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
            audit.refused_reason.as_deref().unwrap_or("no reason given"),
        ));
    }
    out
}

/// `snowgate whoami`.
pub fn whoami(answer: &WhoAmIAnswer) -> String {
    let v = &answer.who;
    let mut out = format!("Subject:   {}\n", v.subject);
    if let Some(email) = &v.email {
        out.push_str(&format!("Email:     {email}\n"));
    }
    if let Some(name) = &v.name {
        out.push_str(&format!("Name:      {name}\n"));
    }
    out.push_str(&format!("Groups:    {}\n", list(&v.groups, "none")));
    if let Some(groups) = &answer.server_groups {
        out.push_str(&format!(
            "Groups at the team server: {}\n",
            list(groups, "none")
        ));
    }
    if let Some(p) = &answer.server_problem {
        out.push_str(&format!("Team server: {p}\n"));
    }
    out.push_str(&format!("Issuer:    {}\n", v.issuer));
    out.push_str(&format!("Signed in: {}\n", time(&v.last_sign_in)));
    if let Some(exp) = &v.idp_access_token_expires_at {
        out.push_str(&format!("IdP token expires:  {}\n", time(exp)));
    }
    for t in &v.snowflake_tokens {
        out.push_str(&format!(
            "Snowflake token for {} expires: {}\n",
            t.role,
            time(&t.expires_at)
        ));
    }
    out.push_str(&format!("Kept in:   {}\n", v.vault));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use snowgate_engine::team::AuditReportStatus;

    use super::audit_lines;

    fn report(v: serde_json::Value) -> AuditReportStatus {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_audit_lines_say_what_waits_whose_it_is_and_what_was_refused() {
        assert_eq!(
            audit_lines(&report(
                json!({ "waiting": 0, "others": 0, "other_people": 0, "refused": 0 })
            )),
            "Audit:     every record of this desktop is in the team server's log\n"
        );
        let text = audit_lines(&report(json!({
            "waiting": 5, "others": 3, "other_people": 1, "refused": 2,
            "refused_reason": "records[0]: there is no grant g_1"
        })));
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
        let one = audit_lines(&report(
            json!({ "waiting": 1, "others": 0, "other_people": 0, "refused": 0 }),
        ));
        assert!(one.contains("1 record waits for the team server"), "{one}");
    }
}
