//! Property tests: no description, setting, environment value, URL or command a plugin
//! (or its user) can produce makes the host panic while checking it, making it inert or
//! granting it. A panic would end every deploy of a `pier ci` run.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::bindings::pier::deploy::exec;
use super::bindings::*;
use super::inert::Inert as _;
use super::{Contract, check_description};
use crate::caps::Grant;

/// Strings that reach deep into the checks, and arbitrary ones.
fn text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "",
        "a",
        "api",
        "git",
        "ssh",
        "x$(id)",
        "../x",
        "-",
        "*",
        "**",
        "*.",
        "*.com",
        "*.example.com",
        "https://",
        "http://",
        "https://api.example.com",
        "http://127.0.0.1:5000",
        "https://[::1]:1/",
        "https://*.s3.amazonaws.com",
        "https://api.{}",
        "{}",
        "HOST",
        "PIER_X",
        "API_TOKEN",
        "PATH",
        "Authorization",
        "Bearer ",
        "\u{1b}[31m",
        "\u{202e}",
        "é",
        "\0",
        ":",
        "=",
        "@",
        "%00",
        "0.1.0",
        "--flag",
        "--name=value",
        "heroku",
        "run",
        "ünï",
        "\n",
        "9999999999999999999999",
    ]);
    prop_oneof![
        4 => pieces.prop_map(str::to_string),
        2 => prop::collection::vec(prop::sample::select(vec!["a", ".", "*", ":", "/", "{}", "é", "-", "9", "[", "]", "@", "%"]), 0..12)
            .prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

fn texts() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(text(), 0..4)
}

fn source() -> impl Strategy<Value = EndpointSource> {
    prop_oneof![
        text().prop_map(EndpointSource::Fixed),
        text().prop_map(EndpointSource::Field),
        (text(), text()).prop_map(|(name, bare_host)| EndpointSource::Env(EnvEndpoint { name, bare_host })),
    ]
}

fn secret_use() -> impl Strategy<Value = SecretUse> {
    prop_oneof![
        (text(), text(), text()).prop_map(|(endpoint, name, prefix)| SecretUse::Header(SecretHeader {
            endpoint,
            name,
            prefix
        })),
        (text(), text()).prop_map(|(program, variable)| SecretUse::ProgramEnv(SecretEnv { program, variable })),
        text().prop_map(SecretUse::SshKey),
    ]
}

fn command_env() -> impl Strategy<Value = CommandEnv> {
    let value = prop_oneof![
        text().prop_map(CommandEnvValue::Secret),
        text().prop_map(CommandEnvValue::Setting),
        text().prop_map(CommandEnvValue::Endpoint),
        text().prop_map(CommandEnvValue::EndpointOverride),
    ];
    (text(), value).prop_map(|(name, value)| CommandEnv { name, value })
}

fn permissions() -> impl Strategy<Value = Permissions> {
    let endpoints = prop::collection::vec(
        (text(), prop::collection::vec(source(), 0..3)).prop_map(|(id, sources)| Endpoint { id, sources }),
        0..3,
    );
    let programs = prop::collection::vec(
        (text(), prop::collection::vec(texts(), 0..3), texts()).prop_map(|(name, args, env)| Program {
            name,
            args,
            env,
        }),
        0..3,
    );
    let secrets =
        prop::collection::vec((text(), secret_use()).prop_map(|(secret, use_)| SecretBinding { secret, use_ }), 0..3);
    let rules = prop::collection::vec(
        (texts(), text(), texts(), text()).prop_map(|(prefix, flag, unless, reason)| CommandRule {
            prefix,
            flag,
            unless,
            reason,
        }),
        0..2,
    );
    let tools = prop::collection::vec(
        (text(), text()).prop_map(|(program, install_hint)| Tool { program, install_hint }),
        0..2,
    );
    let meaning = prop_oneof![
        Just(FlagMeaning::Size),
        Just(FlagMeaning::ProcessType),
        Just(FlagMeaning::Env),
        Just(FlagMeaning::NoTty),
        Just(FlagMeaning::Ignored),
        text().prop_map(FlagMeaning::Setting),
    ];
    let flag = (texts(), meaning).prop_map(|(names, means)| NativeFlag { names, means });
    let native = prop::collection::vec(
        (texts(), prop::collection::vec(flag, 0..3)).prop_map(|(prefix, options)| NativeCommand { prefix, options }),
        0..2,
    );
    let commands = (prop::collection::vec(command_env(), 0..3), rules, tools, native)
        .prop_map(|(env, rules, tools, native)| CommandSupport { env, rules, tools, native });
    let streams = prop::collection::vec(
        (text(), prop::option::of(any::<u16>())).prop_map(|(host, port)| StreamGrant { host, port }),
        0..3,
    );
    (endpoints, texts(), programs, secrets, commands, streams).prop_map(
        |(endpoints, origins, programs, secrets, commands, streams)| Permissions {
            endpoints,
            origins,
            programs,
            secrets,
            commands,
            streams,
        },
    )
}

fn field() -> impl Strategy<Value = Field> {
    let kind = prop::sample::select(vec![FieldKind::Text, FieldKind::Secret, FieldKind::Choice, FieldKind::Boolean]);
    (text(), text(), kind, any::<bool>(), prop::option::of(text()), prop::option::of(text())).prop_map(
        |(id, label, kind, required, default, example)| Field {
            id,
            label,
            help: String::new(),
            kind,
            required,
            default,
            advanced: false,
            example,
        },
    )
}

fn description() -> impl Strategy<Value = Description> {
    (text(), text(), text(), prop::collection::vec(field(), 0..3), permissions()).prop_map(
        |(name, title, version, fields, permissions)| Description {
            name,
            title,
            version,
            summary: String::new(),
            fields,
            permissions,
        },
    )
}

fn command() -> impl Strategy<Value = exec::Command> {
    let env = prop::collection::vec(
        (text(), text(), any::<bool>()).prop_map(|(name, value, secret)| EnvVar {
            name,
            value: if secret { EnvValue::Secret(value) } else { EnvValue::Text(value) },
        }),
        0..3,
    );
    (text(), texts(), env, prop::option::of(text())).prop_map(|(program, args, env, ssh_key)| exec::Command {
        program,
        args,
        env,
        in_workspace: false,
        ssh_key,
        capture_stdout: false,
        timeout_ms: None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn nothing_a_plugin_declares_panics_the_host(
        d in description(),
        values in prop::collection::btree_map(text(), text(), 0..3),
        env_value in prop::option::of(text()),
        urls in texts(),
        commands in prop::collection::vec(command(), 0..3),
    ) {
        let d = d.inert();
        for contract in [Contract::V0_1, Contract::V0_2] {
            let _ = check_description(&d, contract);
            let values: BTreeMap<String, String> = values.clone();
            let env = |_: &str| env_value.clone();
            if let Ok((grant, _)) = Grant::for_contract(contract, &d.permissions, &values, &env) {
                for url in &urls {
                    let _ = grant.http.check(url);
                }
                for command in &commands {
                    for policy in grant.programs.values() {
                        let _ = policy.check(command);
                    }
                }
            }
        }
    }
}
