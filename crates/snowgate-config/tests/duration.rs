//! The duration grammar against the cases the UI's copy is tested with too
//! (`duration_cases.json`, read by `ui/src/lib/duration.test.ts`).

use std::time::Duration;

use serde::Deserialize;
use snowgate_config::duration;

#[derive(Deserialize)]
struct Cases {
    parse: Vec<ParseCase>,
    format: Vec<FormatCase>,
}

#[derive(Deserialize)]
struct ParseCase {
    input: String,
    seconds: Option<u64>,
}

#[derive(Deserialize)]
struct FormatCase {
    seconds: u64,
    text: String,
}

fn cases() -> Cases {
    serde_json::from_str(include_str!("duration_cases.json")).expect("duration_cases.json")
}

#[test]
fn parse_reads_every_case_as_the_ui_does() {
    let cases = cases();
    assert!(cases.parse.iter().any(|c| c.seconds.is_none()));
    for case in cases.parse {
        match (duration::parse(&case.input), case.seconds) {
            (Ok(d), Some(secs)) => assert_eq!(d, Duration::from_secs(secs), "{:?}", case.input),
            (Err(e), None) => {
                assert_eq!(e.input, case.input);
                assert!(e.to_string().contains("write it like"), "{e}");
            }
            (got, want) => panic!("{:?}: got {got:?}, want {want:?} seconds", case.input),
        }
    }
}

#[test]
fn format_writes_every_case_as_the_ui_does_and_reads_back() {
    for case in cases().format {
        let d = Duration::from_secs(case.seconds);
        assert_eq!(duration::format(d), case.text, "{} seconds", case.seconds);
        assert_eq!(duration::parse(&case.text).unwrap(), d, "{}", case.text);
    }
}
