// Shared by the test plugins: a describe with a given name and permissions, and the
// exports a test plugin does not use. Included with `include!`.

#[allow(dead_code)]
fn describe_with(name: &str, permissions: Permissions, fields: Vec<Field>) -> Description {
    Description {
        name: name.into(),
        title: format!("Test plugin {name}"),
        version: "0.1.0".into(),
        summary: "A plugin for Pier's own tests.".into(),
        fields,
        permissions,
    }
}

#[allow(dead_code)]
fn no_permissions() -> Permissions {
    Permissions { endpoints: vec![], origins: vec![], programs: vec![] }
}

#[allow(dead_code)]
fn api_endpoint() -> Endpoint {
    Endpoint { id: "api".into(), sources: vec![EndpointSource::Field("api_url".into())] }
}

#[allow(dead_code)]
fn api_url_field() -> Field {
    Field::new("api_url", "API URL", "Where the provider's API is.", FieldKind::Text, true)
}

#[allow(dead_code)]
fn unused(export: &str) -> MethodError {
    MethodError::Unsupported(format!("{export} is not used by this test plugin"))
}

/// Implements every export but `describe` and `deploy` as unsupported.
#[macro_export]
macro_rules! unused_exports {
    () => {
        fn choices(_: Context, _: String, _: Vec<Answer>) -> Result<Vec<Choice>, MethodError> {
            Err(unused("choices"))
        }
        fn validate(_: Context, _: Vec<Answer>) -> Result<String, MethodError> {
            Err(unused("validate"))
        }
        fn setup(_: Context, _: Vec<Answer>) -> Result<SetupResult, MethodError> {
            Err(unused("setup"))
        }
        fn prepare_commands(_: Context, _: Vec<Answer>, _: Vec<String>) -> Result<CommandPlan, MethodError> {
            Err(unused("prepare-commands"))
        }
    };
}
