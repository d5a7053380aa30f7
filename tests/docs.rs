//! Keeps the user docs true: every `cairn mount` flag is documented in docs/CONFIGURATION.md,
//! and the README names the commands CI and new users run.

mod common;

use std::process::Command;

#[test]
fn every_mount_flag_is_in_configuration_md() {
    let out = Command::new(common::cairn_bin())
        .args(["mount", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let doc = std::fs::read_to_string(common::repo_root().join("docs/CONFIGURATION.md")).unwrap();
    let mut flags = 0;
    for word in help.split_whitespace() {
        let flag = word.trim_end_matches(',');
        if flag.starts_with("--") && flag.len() > 2 && flag != "--help" {
            flags += 1;
            assert!(
                doc.contains(flag),
                "{flag} is not documented in docs/CONFIGURATION.md"
            );
        }
    }
    assert!(flags >= 10, "parsed only {flags} flags from --help");
}

#[test]
fn readme_names_the_two_commands_and_ci_calls_the_test_one() {
    let root = common::repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(readme.contains("scripts/demo.sh") && readme.contains("scripts/test.sh"));
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(ci.contains("scripts/test.sh"));
}
