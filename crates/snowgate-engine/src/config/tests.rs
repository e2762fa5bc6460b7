//! The config's specification: what loads, what is refused, and how errors are located.

use std::path::Path;
use std::time::Duration;

use super::*;

const GOOD: &str = r#"
[identity]
issuer = "https://idp.example.com"
client_id = "snowgate-desktop"
snowflake_audience = "https://snowflake.example.com"

[snowflake]
account = "acme-prod"
user_claim = "email"

[[roles]]
name = "ANALYST"
description = "Read the marts"
max_duration = "8h"
approvers = ["managers"]
auto_approve_up_to = "1h"
"#;

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new("/etc/snowgate.toml")).map_err(|e| e.to_string())
}

#[test]
fn tool_secrets_are_required_by_default_exactly_where_the_os_cant_say_who_connects() {
    let unset = parse(GOOD).unwrap().gateway;
    // Linux: the gateway checks each connection's owner, so secrets are opt-in.
    assert!(!unset.tool_secrets_required_where(true));
    // Elsewhere any local user could reach the port: secrets are the default.
    assert!(unset.tool_secrets_required_where(false));
    let on = parse(&format!("{GOOD}\n[gateway]\nrequire_tool_secrets = true\n"))
        .unwrap()
        .gateway;
    assert!(on.tool_secrets_required_where(true));
    assert!(on.tool_secrets_required_where(false));
    let off = parse(&format!(
        "{GOOD}\n[gateway]\nrequire_tool_secrets = false\n"
    ))
    .unwrap()
    .gateway;
    assert!(
        !off.tool_secrets_required_where(false),
        "an explicit choice stands"
    );
    // On this machine (Linux) the unset default follows the OS check.
    assert_eq!(
        unset.tool_secrets_required(),
        !snowgate_gateway::peer::same_user_check_supported()
    );
}

#[test]
fn a_minimal_config_gets_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.gateway.listen.0, vec![DEFAULT_LISTEN.parse().unwrap()]);
    assert_eq!(c.gateway.require_tool_secrets, None);
    assert_eq!(
        c.snowflake.default_account().effective_url().as_str(),
        "https://acme-prod.snowflakecomputing.com/"
    );
    assert_eq!(c.identity.groups_claim(), "groups");
    let role = c.role("ANALYST").unwrap();
    assert_eq!(role.max_duration.0, Duration::from_secs(8 * 3600));
    assert_eq!(role.approvals_required.0, 1);
    assert!(role.extensions);
}

fn with_provider(lines: &str) -> String {
    GOOD.replace(
        "client_id = \"snowgate-desktop\"",
        &format!("client_id = \"snowgate-desktop\"\n{lines}"),
    )
    .replace("user_claim = \"email\"\n", "")
}

#[test]
fn a_provider_preset_fills_in_its_keys_and_each_can_be_overridden() {
    let c = parse(GOOD).unwrap();
    let s = c.identity.provider_settings();
    assert_eq!(s.provider, Provider::Generic);
    assert_eq!(s.audience_parameter, AudienceParameter::Resource);
    assert_eq!(s.consent_prompt, ConsentPrompt::Retry);

    let text = with_provider("provider = \"entra\"").replace(
        "approvers = [\"managers\"]",
        "approvers = [\"6f1c2a9e-3b7d-4c1e-9a2f-0d8b5e4c3a21\"]",
    );
    let c = parse(&text).unwrap();
    let s = c.identity.provider_settings();
    assert_eq!(s.audience_parameter, AudienceParameter::ScopePrefix);
    assert_eq!(s.groups_form, GroupsForm::ObjectIds);
    assert_eq!(s.consent_prompt, ConsentPrompt::Never);
    assert_eq!(
        c.snowflake.default_account().user_claim(),
        "preferred_username"
    );
    // The effective config shows what the preset decided.
    let shown = c.to_redacted_toml();
    assert!(
        shown.contains("audience_parameter = \"scope_prefix\""),
        "{shown}"
    );
    assert!(
        shown.contains("user_claim = \"preferred_username\""),
        "{shown}"
    );

    let text = text.replace(
        "provider = \"entra\"",
        "provider = \"entra\"\nconsent_prompt = \"retry\"\naudience_parameter = \"resource\"",
    );
    let s = parse(&text).unwrap().identity.provider_settings();
    assert_eq!(s.consent_prompt, ConsentPrompt::Retry);
    assert_eq!(s.audience_parameter, AudienceParameter::Resource);
    assert_eq!(s.groups_form, GroupsForm::ObjectIds);
}

#[test]
fn a_preset_that_cannot_work_with_the_rest_of_the_config_is_a_located_error() {
    let err = parse(&with_provider("provider = \"auth0\"")).unwrap_err();
    assert!(err.contains("line 5: key `identity.groups_claim`"), "{err}");
    assert!(err.contains("namespaced custom claim"), "{err}");

    let err = parse(&with_provider("provider = \"google\"")).unwrap_err();
    assert!(err.contains("key `identity.provider`"), "{err}");
    assert!(err.contains("only in team mode"), "{err}");

    let err = parse(&with_provider("provider = \"keycloak\"")).unwrap_err();
    assert!(err.contains("line 15: key `roles[0].approvers`"), "{err}");
    assert!(err.contains("\"/managers\""), "{err}");

    let err = parse(&with_provider("provider = \"azure\"")).unwrap_err();
    assert!(err.contains("line 5: key `identity.provider`"), "{err}");
    assert!(err.contains("entra"), "{err}");
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = GOOD.replace(
        "user_claim = \"email\"",
        "user_claim = \"email\"\nrol = \"X\"",
    );
    let err = parse(&text).unwrap_err();
    assert!(err.contains("/etc/snowgate.toml"), "{err}");
    assert!(err.contains("line 10"), "{err}");
    assert!(err.contains("key `snowflake.rol`"), "{err}");
    assert!(err.contains("unknown key `rol`"), "{err}");
}

#[test]
fn non_loopback_listen_is_refused() {
    let text = format!("{GOOD}\n[gateway]\nlisten = \"0.0.0.0:8765\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("not a loopback address"), "{err}");
    assert!(err.contains("key `gateway.listen`"), "{err}");
}

#[test]
fn tool_secrets_can_be_required() {
    let text = format!("{GOOD}\n[gateway]\nrequire_tool_secrets = true\n");
    assert_eq!(
        parse(&text).unwrap().gateway.require_tool_secrets,
        Some(true)
    );
}

#[test]
fn ipv4_and_ipv6_loopback_can_both_be_listened_on() {
    let text = format!("{GOOD}\n[gateway]\nlisten = [\"127.0.0.1:9000\", \"[::1]:9000\"]\n");
    let c = parse(&text).unwrap();
    assert_eq!(c.gateway.listen.0.len(), 2);
}

#[test]
fn unparseable_duration_says_how_to_write_one() {
    let text = GOOD.replace("\"8h\"", "\"2 hrs\"");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("\"2 hrs\" is not a duration"), "{err}");
    assert!(err.contains("max_duration"), "{err}");
}

#[test]
fn plain_http_issuer_is_refused_unless_loopback() {
    let err =
        parse(&GOOD.replace("https://idp.example.com", "http://idp.example.com")).unwrap_err();
    assert!(err.contains("must be an https:// URL"), "{err}");
    parse(&GOOD.replace("https://idp.example.com", "http://127.0.0.1:9999")).unwrap();
}

#[test]
fn auto_approval_above_the_maximum_is_refused() {
    let err = parse(&GOOD.replace("\"1h\"", "\"9h\"")).unwrap_err();
    assert!(err.contains("roles[0].auto_approve_up_to"), "{err}");
    assert!(err.contains("longer than max_duration"), "{err}");
}

#[test]
fn duplicate_roles_are_refused() {
    let text = format!(
        "{GOOD}\n[[roles]]\nname = \"ANALYST\"\nmax_duration = \"1h\"\napprovers = [\"x\"]\n"
    );
    let err = parse(&text).unwrap_err();
    assert!(err.contains("defined twice"), "{err}");
}

#[test]
fn a_role_nobody_can_approve_is_refused() {
    let text = format!("{GOOD}\n[[roles]]\nname = \"LONELY\"\nmax_duration = \"1h\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("could ever be approved"), "{err}");
}

#[test]
fn missing_section_is_named() {
    let err = parse(
        "[identity]\nissuer = \"https://x\"\nclient_id = \"c\"\nsnowflake_audience = \"a\"\n",
    )
    .unwrap_err();
    assert!(err.contains("missing required key `snowflake`"), "{err}");
}

#[test]
fn without_a_team_table_the_broker_is_in_solo_mode() {
    assert!(parse(GOOD).unwrap().team.is_none());
}

#[test]
fn a_team_server_is_read_with_its_audience_defaulting_to_its_url() {
    let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com/\"\n");
    let team = parse(&text).unwrap().team.unwrap();
    assert_eq!(team.server.to_string(), "https://snowgate.example.com");
    assert_eq!(team.effective_audience(), "https://snowgate.example.com");
    assert!(team.extra_ca_file.is_none());
    let text = format!(
        "{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\naudience = \"api://snowgate\"\n"
    );
    let team = parse(&text).unwrap().team.unwrap();
    assert_eq!(team.effective_audience(), "api://snowgate");
}

#[test]
fn the_snowflake_audience_is_required_in_solo_mode_only() {
    let without = GOOD.replace(
        "snowflake_audience = \"https://snowflake.example.com\"\n",
        "",
    );
    assert_ne!(without, GOOD);
    let err = parse(&without).unwrap_err();
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("identity.snowflake_audience"), "{err}");
    assert!(err.contains("missing"), "{err}");
    let team = format!("{without}\n[team]\nserver = \"https://snowgate.example.com\"\n");
    let c = parse(&team).unwrap();
    assert!(c.identity.snowflake_audience.is_none());
}

#[test]
fn an_id_token_only_provider_needs_id_token_caller_auth() {
    let google = GOOD.replace(
        "snowflake_audience = \"https://snowflake.example.com\"\n",
        "provider = \"google\"\n",
    );
    let text = format!("{google}\n[team]\nserver = \"https://snowgate.example.com\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("key `team.auth`"), "{err}");
    assert!(err.contains("auth = \"id_token\""), "{err}");
    let text = format!(
        "{google}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"id_token\"\n"
    );
    assert!(parse(&text).is_ok(), "{:?}", parse(&text).err());
}

#[test]
fn team_auth_defaults_to_access_tokens_and_id_token_mode_takes_no_audience() {
    let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\n");
    assert_eq!(
        parse(&text).unwrap().team.unwrap().auth,
        TeamAuth::AccessToken
    );
    let text =
        format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"id_token\"\n");
    assert_eq!(parse(&text).unwrap().team.unwrap().auth, TeamAuth::IdToken);
    let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"id_token\"\naudience = \"api://snowgate\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("key `team.audience`"), "{err}");
    assert!(err.contains("no access token"), "{err}");
    let text =
        format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"cookie\"\n");
    let err = parse(&text).unwrap_err().to_string();
    assert!(err.contains("team.auth"), "{err}");
}

#[test]
fn team_mode_needs_no_roles_in_the_desktop_config() {
    let head = GOOD.split("[[roles]]").next().unwrap();
    let text = format!("{head}\n[team]\nserver = \"https://snowgate.example.com\"\n");
    let c = parse(&text).unwrap();
    assert!(c.roles.is_empty());
    assert!(c.team.is_some());
}

#[test]
fn a_plain_http_team_server_is_refused_unless_loopback() {
    let text = format!("{GOOD}\n[team]\nserver = \"http://snowgate.example.com\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("/etc/snowgate.toml"), "{err}");
    assert!(err.contains("line 19"), "{err}");
    assert!(err.contains("key `team.server`"), "{err}");
    assert!(err.contains("must be an https:// URL"), "{err}");
    let text = format!("{GOOD}\n[team]\nserver = \"http://127.0.0.1:8443\"\n");
    assert!(parse(&text).unwrap().team.is_some());
}

#[test]
fn a_team_server_url_with_a_query_or_credentials_is_refused() {
    let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com/?x=1\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("key `team.server`"), "{err}");
    assert!(err.contains("without `?query`"), "{err}");
    let text = format!("{GOOD}\n[team]\nserver = \"https://me:pw@snowgate.example.com\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("user name or password"), "{err}");
    assert!(!err.contains("pw@"), "{err}");
}

#[test]
fn team_table_keys_are_strict() {
    let text =
        format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nsever = \"x\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("line 20"), "{err}");
    assert!(err.contains("key `team.sever`"), "{err}");
    assert!(err.contains("unknown key `sever`"), "{err}");
    let text = format!("{GOOD}\n[team]\nextra_ca_file = \"/nonexistent/ca.pem\"\nserver = \"https://snowgate.example.com\"\n");
    let err = parse(&text).unwrap_err();
    assert!(err.contains("key `team.extra_ca_file`"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
    let err = parse(&format!("{GOOD}\n[team]\n")).unwrap_err();
    assert!(err.contains("missing required key `server`"), "{err}");
}

#[test]
fn client_secret_is_redacted_in_output() {
    let text = GOOD.replace(
        "client_id = \"snowgate-desktop\"",
        "client_id = \"snowgate-desktop\"\nclient_secret = \"hunter2-very-secret\"",
    );
    let c = parse(&text).unwrap();
    let shown = c.to_redacted_toml();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!format!("{c:?}").contains("hunter2"));
    assert_eq!(
        c.identity.client_secret.unwrap().expose(),
        "hunter2-very-secret"
    );
}

#[test]
fn bad_role_name_is_explained() {
    let err = parse(&GOOD.replace("name = \"ANALYST\"", "name = \"1-bad role\"")).unwrap_err();
    assert!(err.contains("is not a Snowflake role name"), "{err}");
    assert!(err.contains("roles.name"), "{err}");
}

#[test]
fn tls_serves_https_on_listen_or_next_to_it_on_listen_tls() {
    let gateway = |extra: &str| {
        parse(&format!(
            "{GOOD}\n[gateway]\nlisten = \"127.0.0.1:8765\"\n{extra}\n"
        ))
        .map(|c| c.gateway)
    };
    let plain = gateway("").unwrap();
    assert_eq!(plain.wait_for_approval, None);
    assert_eq!(plain.threads, None);
    assert_eq!(gateway("threads = 2").unwrap().threads, Some(2));
    let waits = gateway("wait_for_approval = \"50s\"").unwrap();
    assert_eq!(
        waits.wait_for_approval.map(|d| d.0),
        Some(std::time::Duration::from_secs(50))
    );
    assert_eq!(plain.plain_listen().len(), 1);
    assert!(plain.https_listen().is_empty());
    let only_https = gateway("tls = true").unwrap();
    assert!(only_https.plain_listen().is_empty());
    assert_eq!(only_https.https_listen()[0].port(), 8765);
    let both = gateway("tls = true\nlisten_tls = \"127.0.0.1:8443\"").unwrap();
    assert_eq!(both.plain_listen()[0].port(), 8765);
    assert_eq!(both.https_listen()[0].port(), 8443);
    assert_eq!(
        both.leaf_lifetime(),
        std::time::Duration::from_secs(7 * 24 * 3600)
    );
}

#[test]
fn bad_tls_keys_are_located_errors_with_the_fix() {
    let err = |extra: &str| {
        parse(&format!(
            "{GOOD}\n[gateway]\nlisten = \"127.0.0.1:8765\"\n{extra}\n"
        ))
        .unwrap_err()
    };
    let e = err("listen_tls = \"127.0.0.1:8443\"");
    assert!(e.contains("key `gateway.listen_tls`"), "{e}");
    assert!(e.contains("add tls = true"), "{e}");
    let e = err("tls = true\nlisten_tls = \"127.0.0.1:8765\"");
    assert!(e.contains("127.0.0.1:8765 is also in listen"), "{e}");
    let e = err("tls = true\nlisten_tls = \"10.0.0.1:8443\"");
    assert!(e.contains("key `gateway.listen_tls`"), "{e}");
    assert!(e.contains("not a loopback address"), "{e}");
    let e = err("tls = true\ntls_leaf_lifetime = \"90d\"");
    assert!(e.contains("key `gateway.tls_leaf_lifetime`"), "{e}");
    assert!(e.contains("longer than 30d"), "{e}");
    let e = err("wait_for_approval = \"2m\"");
    assert!(e.contains("key `gateway.wait_for_approval`"), "{e}");
    assert!(e.contains("is 2m, longer than 50s"), "{e}");
    let e = err("wait_for_approval = \"51s\"");
    assert!(e.contains("is 51s, longer than 50s"), "{e}");
    assert!(
        e.contains("Python connector 4.x gives up on a login request after 60 s"),
        "{e}"
    );
    let e = err("wait_for_approval = \"soon\"");
    assert!(e.contains("gateway.wait_for_approval"), "{e}");
    let e = err("wait_for_approval = \"0s\"");
    assert!(e.contains("gateway.wait_for_approval"), "{e}");
    let e = err("tls = \"yes\"");
    assert!(e.contains("gateway.tls"), "{e}");
    let e = err("threads = 0");
    assert!(e.contains("key `gateway.threads`"), "{e}");
    assert!(e.contains("is 0; give 1 to 64"), "{e}");
    let e = err("threads = 65");
    assert!(e.contains("is 65; give 1 to 64"), "{e}");
    let e = err("threads = -1");
    assert!(e.contains("gateway.threads"), "{e}");
    let e = err("listen_tls = \"127.0.0.1:8443\"");
    assert!(e.contains("/etc/snowgate.toml: line 20: "), "{e}");
}

/// [`GOOD`] with two `[[snowflake]]` accounts, ANALYST in `prod` and LOADER in `dev`.
fn two_accounts() -> String {
    GOOD.replace(
        "[snowflake]\naccount = \"acme-prod\"\nuser_claim = \"email\"\n",
        "[[snowflake]]\nname = \"prod\"\naccount = \"acme-prod\"\nuser_claim = \"email\"\n\n\
         [[snowflake]]\nname = \"dev\"\naccount = \"acme-dev\"\nurl = \"https://acme-dev.example.com\"\n",
    )
    .replace("name = \"ANALYST\"\n", "name = \"ANALYST\"\naccount = \"prod\"\n")
        + "\n[[roles]]\nname = \"LOADER\"\naccount = \"dev\"\nmax_duration = \"1h\"\napprovers = [\"leads\"]\n"
}

#[test]
fn one_snowflake_table_is_one_account_named_by_its_identifier() {
    let c = parse(GOOD).unwrap();
    assert!(!c.snowflake.several());
    assert_eq!(c.snowflake.default_account().name(), "acme-prod");
    assert_eq!(c.role_account(None), "acme-prod");
    // It is written back as the one table it was.
    let toml = c.to_redacted_toml();
    assert!(toml.contains("[snowflake]\n"), "{toml}");
    assert!(!toml.contains("[[snowflake]]"), "{toml}");
    assert!(parse(&toml).is_ok(), "{toml}");
}

#[test]
fn several_accounts_each_with_a_name_and_roles_that_name_theirs() {
    let c = parse(&two_accounts()).unwrap();
    let names: Vec<&str> = c.snowflake.iter().map(|a| a.name()).collect();
    assert_eq!(names, ["prod", "dev"]);
    assert_eq!(c.snowflake.names(), "prod, dev");
    assert_eq!(
        c.snowflake.by_name(Some("DEV")).unwrap().account.as_str(),
        "acme-dev"
    );
    assert_eq!(
        c.snowflake
            .by_name(Some("dev"))
            .unwrap()
            .effective_url()
            .as_str(),
        "https://acme-dev.example.com/"
    );
    assert!(c.snowflake.by_name(Some("qa")).is_none());
    assert_eq!(c.snowflake.default_account().name(), "prod");
    // The preset's user claim fills every account that has none.
    assert_eq!(
        c.snowflake.by_name(Some("dev")).unwrap().user_claim(),
        "sub"
    );
    assert_eq!(c.role_account(Some("Dev")), "dev");
    let toml = c.to_redacted_toml();
    assert!(toml.contains("[[snowflake]]"), "{toml}");
    assert!(parse(&toml).is_ok(), "{toml}");
}

#[test]
fn several_accounts_are_refused_at_the_line_and_key_at_fault() {
    let good = two_accounts();
    let err = parse(&good.replace("name = \"dev\"\n", "")).unwrap_err();
    let line = good.lines().position(|l| l == "[[snowflake]]").unwrap();
    let second = good
        .lines()
        .skip(line + 1)
        .position(|l| l == "[[snowflake]]")
        .unwrap()
        + line
        + 2;
    assert!(
        err.contains(&format!("line {second}: key `snowflake[1].name`")),
        "{err}"
    );
    assert!(err.contains("missing"), "{err}");

    let err = parse(&good.replace("name = \"dev\"\n", "name = \"PROD\"\n")).unwrap_err();
    assert!(
        err.contains("key `snowflake[1].name`") && err.contains("used twice"),
        "{err}"
    );

    let err = parse(&good.replace("account = \"dev\"\n", "")).unwrap_err();
    assert!(err.contains("key `roles[1].account`"), "{err}");
    assert!(
        err.contains("several Snowflake accounts (prod, dev)"),
        "{err}"
    );

    let err = parse(&good.replace("account = \"dev\"\n", "account = \"qa\"\n")).unwrap_err();
    let at = good.lines().position(|l| l == "account = \"dev\"").unwrap() + 1;
    assert!(
        err.contains(&format!("line {at}: key `roles[1].account`")),
        "{err}"
    );
    assert!(
        err.contains("\"qa\" is not a configured Snowflake account; the accounts are prod, dev"),
        "{err}"
    );

    let err = parse(&good.replace("account = \"acme-dev\"", "acount = \"acme-dev\"")).unwrap_err();
    assert!(err.contains("unknown key `acount`"), "{err}");

    // One account: a role may name it, and nothing else.
    let one = GOOD.replace(
        "name = \"ANALYST\"\n",
        "name = \"ANALYST\"\naccount = \"acme-prod\"\n",
    );
    assert!(parse(&one).is_ok());
    let err = parse(&one.replace(
        "account = \"acme-prod\"\ndescription",
        "account = \"dev\"\ndescription",
    ))
    .unwrap_err();
    assert!(
        err.contains("\"dev\" is not a configured Snowflake account"),
        "{err}"
    );
}
