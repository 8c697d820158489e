//! What the frozen contracts ([`super::v0_1`], [`super::v0_2`]) have in common: a
//! conversion trait between two versions' types, macros that convert records and
//! variants field by field, and the capability imports every old version shares. An old
//! plugin's capability calls are converted and served by the current contract's
//! capability states, so they are held to exactly the same policy.

/// A conversion between two contract versions of one type.
pub(crate) trait To<T> {
    fn to(self) -> T;
}

macro_rules! same {
    ($($t:ty),*) => { $(impl To<$t> for $t { fn to(self) -> $t { self } })* };
}
same!(String, bool, u8, u16, u32, u64, i32);

impl<A: To<B>, B> To<Vec<B>> for Vec<A> {
    fn to(self) -> Vec<B> {
        self.into_iter().map(To::to).collect()
    }
}

impl<A: To<B>, B> To<Option<B>> for Option<A> {
    fn to(self) -> Option<B> {
        self.map(To::to)
    }
}

impl<A: To<C>, B: To<D>, C, D> To<(C, D)> for (A, B) {
    fn to(self) -> (C, D) {
        (self.0.to(), self.1.to())
    }
}

impl<A: To<C>, B: To<D>, C, D> To<Result<C, D>> for Result<A, B> {
    fn to(self) -> Result<C, D> {
        self.map(To::to).map_err(To::to)
    }
}

/// `record!(a::T => b::T { field, ... })`: a record converted field by field.
macro_rules! record {
    ($($from:ident)::+ => $($to:ident)::+ { $($field:ident),* $(,)? }) => {
        impl To<$($to)::+> for $($from)::+ {
            fn to(self) -> $($to)::+ {
                $($to)::+ { $($field: self.$field.to()),* }
            }
        }
    };
}
pub(crate) use record;

/// `variant!(a::T => b::T { Case, Case(x), ... })`: a variant converted case by case.
macro_rules! variant {
    ($from:ident :: $ft:ident => $to:ident :: $tt:ident { $($case:ident $(($x:ident))?),* $(,)? }) => {
        impl To<$to::$tt> for $from::$ft {
            fn to(self) -> $to::$tt {
                match self {
                    $($from::$ft::$case $(($x))? => $to::$tt::$case $(($x.to()))?),*
                }
            }
        }
    };
}
pub(crate) use variant;

/// The conversions of the types every old contract shares with the current one, between
/// the module `old` (an old version's `pier::deploy`) and `new` (the current one), in a
/// module `shared`.
macro_rules! shared_types {
    () => {
        mod shared {
            use super::*;
            use $crate::runtime::legacy::{record, variant};
            use new::types as n;
            use old::types as o;

            record!(o::Answer => n::Answer { field, value });
            record!(n::Answer => o::Answer { field, value });
            record!(n::ResolvedEndpoint => o::ResolvedEndpoint { id, url });
            record!(n::Context => o::Context { endpoints, server });
            variant!(n::Trigger => o::Trigger { Manual, Automatic });
            record!(n::BuildInfo => o::BuildInfo { deploy_id, commit, branch, build_id, trigger });
            record!(o::Choice => n::Choice { value, label });
            record!(o::FieldError => n::FieldError { field, message });
            record!(o::DeployFailure => n::DeployFailure { reason, tail });
            variant!(o::MethodError => n::MethodError {
                InvalidAnswer(x), Provider(x), RateLimited(x), DeployFailed(x), Denied(x), Unsupported(x)
            });
            variant!(o::FieldKind => n::FieldKind { Text, Secret, Choice, Boolean });
            record!(o::Field => n::Field { id, label, help, kind, required, default, advanced, example });
            record!(o::EnvEndpoint => n::EnvEndpoint { name, bare_host });
            variant!(o::EndpointSource => n::EndpointSource { Fixed(x), Field(x), Env(x) });
            record!(o::Endpoint => n::Endpoint { id, sources });
            variant!(o::EnvValue => n::EnvValue { Text(x), Secret(x) });
            record!(o::EnvVar => n::EnvVar { name, value });
            record!(o::Tool => n::Tool { program, install_hint });
            record!(o::Description => n::Description { name, title, version, summary, fields, permissions });

            // An old deploy report names no release: `pier rollback --to` needs one.
            impl To<n::DeployReport> for o::DeployReport {
                fn to(self) -> n::DeployReport {
                    n::DeployReport { summary: self.summary, url: self.url, release: None }
                }
            }

            impl To<new_method::SetupResult> for old_method::SetupResult {
                fn to(self) -> new_method::SetupResult {
                    new_method::SetupResult { settings: self.settings.to(), notes: self.notes }
                }
            }

            // Capabilities.
            use new::{events as ne, exec as nx, http as nh, keys as nk, workspace as nw};
            use old::{events as oe, exec as ox, http as oh, keys as ok, workspace as ow};
            variant!(oe::Level => ne::Level { Debug, Info, Warn, Error });
            variant!(oh::Method => nh::Method { Get, Head, Post, Put, Patch, Delete });
            record!(oh::SecretRef => nh::SecretRef { handle, prefix, suffix });
            variant!(oh::HeaderValue => nh::HeaderValue { Text(x), Secret(x) });
            record!(oh::Header => nh::Header { name, value });
            record!(oh::Request => nh::Request { method, url, headers, body, timeout_ms });
            record!(nh::Response => oh::Response { status, headers, body });
            variant!(nh::HttpError => oh::HttpError {
                Denied(x), InvalidRequest(x), Timeout, Connection(x), TooLarge(x)
            });
            record!(nk::KeyPair => ok::KeyPair { handle, public_key, fingerprint });
            variant!(nk::KeyError => ok::KeyError { InvalidName(x), UnknownKey(x), Failed(x) });
            record!(ox::Command => nx::Command {
                program, args, env, in_workspace, ssh_key, capture_stdout, timeout_ms
            });
            record!(nx::Exit => ox::Exit { code, stdout, tail });
            variant!(nx::ExecError => ox::ExecError { Denied(x), NotFound(x), Timeout, Failed(x) });
            variant!(nw::WorkspaceError => ow::WorkspaceError { Unavailable, TooLarge(x), Io(x), Upload(x) });
        }

        /// A call's context and answers (or settings) in the old contract's types.
        pub(super) fn old_args(
            ctx: &new_types::Context,
            answers: &[new_types::Answer],
        ) -> (old::types::Context, Vec<old::types::Answer>) {
            (ctx.clone().to(), answers.to_vec().to())
        }
    };
}
pub(crate) use shared_types;

/// The capability imports of an old contract (the module `old`), served by the current
/// contract's capability states (the module `new`) through the conversions.
macro_rules! capabilities {
    () => {
        impl old::types::Host for EventsCap {}

        impl old::events::Host for EventsCap {
            async fn log(&mut self, level: old::events::Level, message: String) -> wasmtime::Result<()> {
                new::events::Host::log(self, level.to(), message).await
            }
            async fn step(&mut self, title: String) -> wasmtime::Result<()> {
                new::events::Host::step(self, title).await
            }
            async fn output(&mut self, text: String) -> wasmtime::Result<()> {
                new::events::Host::output(self, text).await
            }
        }

        impl old::secrets::Host for SecretsCap {
            async fn handles(&mut self) -> wasmtime::Result<Vec<String>> {
                new::secrets::Host::handles(self).await
            }
        }

        /// The header bounds of `caps::http`, checked on an old request's headers before they
        /// are converted.
        fn header_bounds(headers: &[old::http::Header]) -> Result<(), new::http::HttpError> {
            let size = |h: &old::http::Header| {
                h.name.len()
                    + match &h.value {
                        old::http::HeaderValue::Text(t) => t.len(),
                        old::http::HeaderValue::Secret(s) => s.handle.len() + s.prefix.len() + s.suffix.len(),
                    }
            };
            crate::caps::http::header_bounds(headers.len(), headers.iter().map(size))
        }

        impl old::http::Host for HttpCap {
            async fn send(
                &mut self,
                request: old::http::Request,
            ) -> wasmtime::Result<Result<old::http::Response, old::http::HttpError>> {
                if let Err(e) = header_bounds(&request.headers) {
                    return Ok(Err(e.to()));
                }
                Ok(new::http::Host::send(self, request.to()).await?.to())
            }
            async fn open(
                &mut self,
                request: old::http::Request,
            ) -> wasmtime::Result<Result<Resource<ResponseStream>, old::http::HttpError>> {
                if let Err(e) = header_bounds(&request.headers) {
                    return Ok(Err(e.to()));
                }
                Ok(new::http::Host::open(self, request.to()).await?.map_err(To::to))
            }
        }

        impl old::http::HostResponseStream for HttpCap {
            async fn status(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<u16> {
                new::http::HostResponseStream::status(self, stream).await
            }
            async fn headers(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<Vec<(String, String)>> {
                new::http::HostResponseStream::headers(self, stream).await
            }
            async fn next(
                &mut self,
                stream: Resource<ResponseStream>,
            ) -> wasmtime::Result<Result<Option<Vec<u8>>, old::http::HttpError>> {
                Ok(new::http::HostResponseStream::next(self, stream).await?.map_err(To::to))
            }
            async fn drop(&mut self, stream: Resource<ResponseStream>) -> wasmtime::Result<()> {
                new::http::HostResponseStream::drop(self, stream).await
            }
        }

        impl old::keys::Host for KeysCap {
            async fn generate(
                &mut self,
                name: String,
                comment: String,
            ) -> wasmtime::Result<Result<old::keys::KeyPair, old::keys::KeyError>> {
                Ok(new::keys::Host::generate(self, name, comment).await?.to())
            }
            async fn public_key(&mut self, handle: String) -> wasmtime::Result<Result<String, old::keys::KeyError>> {
                Ok(new::keys::Host::public_key(self, handle).await?.map_err(To::to))
            }
        }

        impl old::exec::Host for ExecCap {
            async fn run(
                &mut self,
                command: old::exec::Command,
            ) -> wasmtime::Result<Result<old::exec::Exit, old::exec::ExecError>> {
                Ok(new::exec::Host::run(self, command.to()).await?.to())
            }
        }

        impl old::workspace::Host for WorkspaceCap {
            async fn pack(&mut self) -> wasmtime::Result<Result<Resource<Blob>, old::workspace::WorkspaceError>> {
                Ok(new::workspace::Host::pack(self).await?.map_err(To::to))
            }
            async fn upload(
                &mut self,
                blob: Resource<Blob>,
                url: String,
                headers: Vec<old::http::Header>,
            ) -> wasmtime::Result<Result<u16, old::workspace::WorkspaceError>> {
                if let Err(e) = header_bounds(&headers) {
                    return Ok(Err(old::workspace::WorkspaceError::Upload(e.to())));
                }
                Ok(new::workspace::Host::upload(self, blob, url, headers.to()).await?.map_err(To::to))
            }
        }

        impl old::workspace::HostBlob for WorkspaceCap {
            async fn size(&mut self, blob: Resource<Blob>) -> wasmtime::Result<u64> {
                new::workspace::HostBlob::size(self, blob).await
            }
            async fn sha256(&mut self, blob: Resource<Blob>) -> wasmtime::Result<String> {
                new::workspace::HostBlob::sha256(self, blob).await
            }
            async fn drop(&mut self, blob: Resource<Blob>) -> wasmtime::Result<()> {
                new::workspace::HostBlob::drop(self, blob).await
            }
        }
    };
}
pub(crate) use capabilities;
