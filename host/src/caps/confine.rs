//! Confinement of the programs run for plugins, with Linux Landlock.
//!
//! A program a plugin runs (`git push`, say) gets its own environment and scratch
//! directory, but it runs as the same user as the host, so without more it could read
//! everything that user can: the home directory, and in it Pier's configuration with
//! the master key. On Linux, [`prepare`] builds a Landlock ruleset in the host, before
//! the program is started, and [`Confinement::apply_to`] has the child enforce it on
//! itself between `fork` and `exec`; every process it starts inherits the same limits.
//!
//! A confined program may:
//! - read and execute the system's program trees (`/usr`, `/bin`, `/sbin`, `/lib`,
//!   `/lib32`, `/lib64`, `/libx32`, `/opt`, `/nix`, `/snap`, `/run/current-system`,
//!   those that exist) and the trees the caller names in [`Spec::read`] (the checkout,
//!   the program's directory, the `PATH` entries);
//! - read, not execute, `/etc`, `/sys`, and of `/proc` what describes the machine
//!   (`cpuinfo`, `meminfo`, `stat`, `sys/`…);
//! - read and write `/dev/null`, `/dev/zero` and `/dev/full`, and read `/dev/random`
//!   and `/dev/urandom`;
//! - do anything in the trees named in [`Spec::write`] (its scratch directory, which
//!   also holds its private `HOME`).
//!
//! Everything else on the filesystem is denied, among it `/home`, `/root`, `/tmp` and
//! `/var/tmp`, for every access right the running kernel's Landlock knows. From ABI 6
//! on, the program also may not send signals to, or connect to abstract UNIX sockets
//! of, processes outside its sandbox. The network is not restricted: `git push` over
//! SSH needs to connect.
//!
//! Landlock can only grant, not take away, so a tree that equals or contains a path of
//! [`Spec::deny_under`] (the real home, Pier's configuration directory) is dropped from
//! the grant, and logged. So is any tree that reaches the processes' directories of
//! `/proc`: Landlock's ptrace rule does not keep a confined process from reading the
//! `environ` (nor `maps`, `auxv`) of a process outside its sandbox there (seen on Linux
//! 6.18 as root), and the host's environment holds `PIER_MASTER_KEY` in CI. Programs
//! lose their own `/proc/self` with it, which `git`, `ssh`, shells, Python and Node do
//! without. The rest of `/dev` is not granted either: disks can be read raw with root's
//! rights, and a program has no business with the operator's terminal (its standard
//! input is closed; `git` and `ssh` fail their prompts instead of waiting).
//!
//! # Kernels
//!
//! Every right is asked for in best-effort mode: the kernel enforces those its ABI
//! knows, and a child whose kernel would enforce none fails to start. Reading outside
//! the grant is denied from ABI 1 (Linux 5.13) on. What older ABIs leave open:
//! - ABI 1: moving or linking a file to another directory is always refused (`EXDEV`),
//!   even within the scratch directory; programs fall back to copying;
//! - before ABI 3: `truncate(2)` is not mediated, so a file of a read tree that the user
//!   may write can be emptied;
//! - before ABI 5: `ioctl` on the granted devices is not mediated;
//! - before ABI 6: signals and abstract UNIX sockets reach outside the sandbox;
//! - before ABI 9: connecting to UNIX sockets by path is not mediated (from ABI 9 on, it
//!   is allowed in the write trees only).
//!
//! Landlock only narrows what the user may do, and not what it does not mediate: a
//! program run as root keeps root's capabilities, for example to read `/proc/kcore`.
//!
//! [`status`] says whether confinement is enforced on this machine; where it is not (not
//! Linux, a kernel without Landlock, Landlock disabled at boot), [`prepare`] returns
//! `None` and programs run with only their environment to limit them.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Whether programs are confined on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Landlock is enforced; `abi` is the version the kernel reports.
    Enforced { abi: i32 },
    /// Landlock cannot be used, for `reason`.
    Unavailable { reason: String },
}

impl Status {
    /// Whether programs are confined.
    pub fn is_enforced(&self) -> bool {
        matches!(self, Status::Enforced { .. })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Enforced { abi } => write!(
                f,
                "programs are confined by Landlock (ABI {abi}): they may read the system and the checkout \
                 and write only their scratch directory"
            ),
            Status::Unavailable { reason } => write!(
                f,
                "Landlock is not available on this machine ({reason}): programs are not confined beyond \
                 their environment"
            ),
        }
    }
}

/// Whether programs are confined on this machine, probed once.
pub fn status() -> Status {
    static STATUS: OnceLock<Status> = OnceLock::new();
    STATUS.get_or_init(imp::probe).clone()
}

/// What one program may reach, besides the built-in system trees.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// Trees it may read and execute from: the checkout, the program's directory, the
    /// `PATH` entries. Missing or unreachable paths are skipped, relative ones ignored.
    pub read: Vec<PathBuf>,
    /// Trees it may read, write and execute from: its scratch directory (which also
    /// holds its private `HOME`).
    pub write: Vec<PathBuf>,
    /// Paths it must never reach: the real home and Pier's configuration directory. A
    /// tree of `read`, `write` or the system set that equals or contains one of them
    /// (after resolving symbolic links) is dropped, and so is one that reaches the
    /// processes of `/proc`. Trees inside them are kept.
    pub deny_under: Vec<PathBuf>,
}

/// Why a confinement could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfineError {
    /// A path the caller named could not be opened (other than for not existing or not
    /// being reachable).
    #[error("could not open `{}` to confine a program to it: {source}", .path.display())]
    Open { path: PathBuf, source: std::io::Error },
    /// The kernel refused the ruleset.
    #[cfg(target_os = "linux")]
    #[error("could not build the Landlock ruleset: {0}")]
    Ruleset(#[from] landlock::RulesetError),
    /// The ruleset's descriptor could not be duplicated (too many open files).
    #[error("could not duplicate the Landlock ruleset's descriptor: {0}")]
    Descriptor(std::io::Error),
    /// Landlock is said to be enforced, yet the ruleset would not be.
    #[error("Landlock is available but the ruleset would not be enforced")]
    NotEnforced,
}

/// A Landlock ruleset built in the host for one program, to enforce in its process.
#[derive(Debug)]
pub struct Confinement {
    #[cfg(target_os = "linux")]
    ruleset: landlock::RulesetCreated,
    #[cfg(not(target_os = "linux"))]
    never: std::convert::Infallible,
    dropped: Vec<PathBuf>,
}

/// Builds the confinement for a program that may reach what `spec` says (and the system
/// trees), or `None` where Landlock is not available (see [`status`]).
///
/// This opens every granted path, so call it in the host, before spawning; the child
/// only enforces the result ([`Confinement::apply_to`]).
pub fn prepare(spec: &Spec) -> Result<Option<Confinement>, ConfineError> {
    if !status().is_enforced() {
        return Ok(None);
    }
    imp::prepare(spec).map(Some)
}

impl Confinement {
    /// The trees left out of the grant because they hold a path of [`Spec::deny_under`]
    /// or reach the processes of `/proc`.
    pub fn dropped(&self) -> &[PathBuf] {
        &self.dropped
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
    use std::path::{Path, PathBuf};

    use landlock::{
        ABI, Access as _, AccessFs, BitFlags, CompatLevel, Compatible as _, PathBeneath, PathFd, Ruleset,
        RulesetAttr as _, RulesetCreated, RulesetCreatedAttr as _, RulesetError, RulesetStatus, Scope,
    };
    use nix::libc;

    use super::{ConfineError, Confinement, Spec, Status};

    /// The newest ABI whose access rights are requested. With best-effort compatibility
    /// the kernel enforces those it knows, which is all of its own up to this version.
    const NEWEST: ABI = ABI::V10;

    /// System trees that hold programs and libraries: read and execute.
    const PROGRAM_TREES: &[&str] = &[
        "/usr",
        "/bin",
        "/sbin",
        "/lib",
        "/lib32",
        "/lib64",
        "/libx32",
        "/opt",
        "/nix",
        "/snap",
        "/run/current-system",
    ];
    /// System trees of configuration and kernel state: read only. Of `/proc`, only what
    /// describes the machine, not its processes' directories: a process inside the
    /// sandbox can read the environment of one outside there, and the host's holds
    /// `PIER_MASTER_KEY` in CI.
    const DATA_TREES: &[&str] = &[
        "/etc",
        "/sys",
        "/proc/cpuinfo",
        "/proc/meminfo",
        "/proc/stat",
        "/proc/uptime",
        "/proc/loadavg",
        "/proc/version",
        "/proc/filesystems",
        "/proc/cgroups",
        "/proc/swaps",
        "/proc/sys",
    ];
    /// Devices that take writes (`ssh` opens `/dev/null` read-write, shells truncate it).
    const WRITE_DEVICES: &[&str] = &["/dev/null", "/dev/zero", "/dev/full"];
    /// Devices that are only read.
    const READ_DEVICES: &[&str] = &["/dev/random", "/dev/urandom"];

    /// `LANDLOCK_CREATE_RULESET_VERSION`: asks `landlock_create_ruleset` for the ABI version.
    const CREATE_RULESET_VERSION: libc::c_uint = 1;

    fn handled() -> BitFlags<AccessFs> {
        AccessFs::from_all(NEWEST)
    }

    fn scopes() -> BitFlags<Scope> {
        Scope::AbstractUnixSocket | Scope::Signal
    }

    /// A ruleset handling every right, granting nothing yet.
    fn base() -> Result<RulesetCreated, RulesetError> {
        Ok(Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(handled())?
            .scope(scopes())?
            .create()?
            .no_new_privs(true))
    }

    /// Whether a created ruleset is backed by a kernel object (and so will be enforced).
    fn is_real(ruleset: &RulesetCreated) -> io::Result<bool> {
        Ok(Option::<OwnedFd>::from(ruleset.try_clone()?).is_some())
    }

    pub(super) fn probe() -> Status {
        // SAFETY: with a null attribute, a size of 0 and only the version flag, the
        // kernel reads and writes no memory: it returns the ABI version or an error.
        let version = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0 as libc::size_t,
                CREATE_RULESET_VERSION,
            )
        };
        if version < 1 {
            let error = io::Error::last_os_error();
            let reason = match error.raw_os_error() {
                Some(libc::ENOSYS) => {
                    "the kernel has no Landlock: not built in, or its calls are filtered out".to_string()
                }
                Some(libc::EOPNOTSUPP) => "Landlock is built into the kernel but disabled at boot".to_string(),
                _ => format!("probing Landlock failed: {error}"),
            };
            return Status::Unavailable { reason };
        }
        let abi = i32::try_from(version).unwrap_or(i32::MAX);
        match base().map_err(|e| e.to_string()).and_then(|r| is_real(&r).map_err(|e| e.to_string())) {
            Ok(true) => Status::Enforced { abi },
            Ok(false) => Status::Unavailable { reason: format!("the kernel reports ABI {abi} but no ruleset is made") },
            Err(e) => Status::Unavailable { reason: format!("making a Landlock ruleset failed: {e}") },
        }
    }

    /// A path opened to be granted.
    struct Opened {
        fd: PathFd,
        /// Where the kernel says the opened file is.
        real: PathBuf,
        is_dir: bool,
    }

    /// The first OS error in `error`'s chain of sources.
    fn os_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
        let mut next = Some(error);
        while let Some(error) = next {
            if let Some(io) = error.downcast_ref::<io::Error>() {
                return Some(io);
            }
            next = error.source();
        }
        None
    }

    /// Opens `path` (following symbolic links); `None` if nothing is there, or nothing the
    /// host may reach.
    fn open(path: &Path) -> io::Result<Option<Opened>> {
        let fd = match PathFd::new(path) {
            Ok(fd) => fd,
            Err(e) => {
                let error = match os_error(&e).and_then(io::Error::raw_os_error) {
                    Some(code) => io::Error::from_raw_os_error(code),
                    None => io::Error::other(e.to_string()),
                };
                // What the host itself cannot reach by this name, the program could not either.
                let unreachable = matches!(
                    error.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::PermissionDenied
                ) || error.raw_os_error() == Some(libc::ELOOP);
                return if unreachable { Ok(None) } else { Err(error) };
            }
        };
        let is_dir = std::fs::File::from(fd.as_fd().try_clone_to_owned()?).metadata()?.is_dir();
        // The path of the very file opened: no race with a link swapped after a check.
        let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
            .or_else(|_| std::fs::canonicalize(path))?;
        Ok(Some(Opened { fd, real, is_dir }))
    }

    /// The protected paths, as given and with links resolved.
    fn protected(deny_under: &[PathBuf]) -> Vec<PathBuf> {
        let mut all = Vec::new();
        for path in deny_under {
            all.push(path.clone());
            if let Ok(real) = std::fs::canonicalize(path) {
                all.push(real);
            }
        }
        all
    }

    /// The protected path that `tree` (as given, or where it really is) equals or contains.
    fn holds<'a>(tree: &Path, real: &Path, protected: &'a [PathBuf]) -> Option<&'a PathBuf> {
        protected.iter().find(|p| p.starts_with(tree) || p.starts_with(real))
    }

    /// Whether `real` is, holds or lies in a process's directory of `/proc`.
    fn reaches_processes(real: &Path) -> bool {
        let proc = Path::new("/proc");
        if proc.starts_with(real) {
            return true;
        }
        let first = real.strip_prefix(proc).ok().and_then(|rest| rest.components().next());
        first.is_some_and(|c| c.as_os_str().as_encoded_bytes().iter().all(u8::is_ascii_digit))
    }

    pub(super) fn prepare(spec: &Spec) -> Result<Confinement, ConfineError> {
        let exec_tree = AccessFs::from_read(NEWEST);
        let data_tree = exec_tree & !AccessFs::Execute;
        let write_tree = AccessFs::from_all(NEWEST);
        let write_device = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
        let read_device: BitFlags<AccessFs> = AccessFs::ReadFile.into();

        // (path, access, whether the caller named it)
        let mut grants: Vec<(PathBuf, BitFlags<AccessFs>, bool)> = Vec::new();
        let system = [
            (PROGRAM_TREES, exec_tree),
            (DATA_TREES, data_tree),
            (WRITE_DEVICES, write_device),
            (READ_DEVICES, read_device),
        ];
        for (paths, access) in system {
            grants.extend(paths.iter().map(|p| (PathBuf::from(p), access, false)));
        }
        for (paths, access) in [(&spec.read, exec_tree), (&spec.write, write_tree)] {
            for path in paths {
                if path.is_relative() {
                    tracing::warn!(path = %path.display(), "not granting a relative path to a confined program");
                    continue;
                }
                grants.push((path.clone(), access, true));
            }
        }

        let protected = protected(&spec.deny_under);
        let mut ruleset = base()?;
        let mut dropped = Vec::new();
        for (path, access, named) in grants {
            let opened = match open(&path) {
                Ok(Some(opened)) => opened,
                Ok(None) => {
                    tracing::debug!(path = %path.display(), "not granting a missing path to a confined program");
                    continue;
                }
                Err(source) if named => return Err(ConfineError::Open { path, source }),
                Err(error) => {
                    tracing::debug!(path = %path.display(), %error, "not granting a system path");
                    continue;
                }
            };
            if reaches_processes(&opened.real) {
                tracing::warn!(
                    path = %path.display(),
                    "not granting a confined program the processes of /proc, where environments can be read"
                );
                dropped.push(path);
                continue;
            }
            if let Some(protected) = holds(&path, &opened.real, &protected) {
                tracing::warn!(
                    path = %path.display(),
                    protected = %protected.display(),
                    "not granting a confined program a tree that holds a protected directory"
                );
                dropped.push(path);
                continue;
            }
            let access = if opened.is_dir { access } else { access & AccessFs::from_file(NEWEST) };
            ruleset = ruleset.add_rule(PathBeneath::new(opened.fd, access))?;
        }
        if !is_real(&ruleset).map_err(ConfineError::Descriptor)? {
            return Err(ConfineError::NotEnforced);
        }
        Ok(Confinement { ruleset, dropped })
    }

    /// What the child reports when it cannot confine itself: the failing call's error
    /// number, or `EPERM`. Only the number crosses back to the host.
    fn child_error(error: &RulesetError) -> io::Error {
        io::Error::from_raw_os_error(os_error(error).and_then(io::Error::raw_os_error).unwrap_or(libc::EPERM))
    }

    /// Enforces `ruleset` on the calling process. Meant for the child between `fork` and
    /// `exec`: it makes system calls only (`fcntl`, `prctl`, `landlock_restrict_self`,
    /// `close`), and allocates nothing, even when it fails.
    fn restrict(ruleset: &RulesetCreated) -> io::Result<()> {
        match ruleset.try_clone()?.restrict_self() {
            Ok(status) if status.ruleset != RulesetStatus::NotEnforced => Ok(()),
            Ok(_) => Err(io::Error::from_raw_os_error(libc::EPERM)),
            Err(e) => Err(child_error(&e)),
        }
    }

    impl Confinement {
        /// Has `command`'s process confine itself before it executes the program: a
        /// process that cannot fails to start (its spawn returns the error) instead of
        /// running unconfined.
        pub fn apply_to(self, command: &mut tokio::process::Command) {
            let ruleset = self.ruleset;
            let hook = move || restrict(&ruleset);
            // SAFETY: the hook runs in the child after `fork`, where only the forking
            // thread survives and locks held by the others stay locked forever, so it must
            // be async-signal-safe. It is: it duplicates the ruleset's descriptor (`fcntl`),
            // sets no_new_privs (`prctl`), calls `landlock_restrict_self` and closes the
            // duplicate, building its results on the stack; it takes no lock, does not
            // allocate (an error is an OS error number, stored inline) and does not panic.
            // Everything that opens paths or allocates happened in the host, in `prepare`.
            // The ruleset's descriptor is close-on-exec, so the program does not inherit it.
            unsafe {
                command.pre_exec(hook);
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::{ConfineError, Confinement, Spec, Status};

    pub(super) fn probe() -> Status {
        Status::Unavailable { reason: "Landlock is a Linux feature".to_string() }
    }

    pub(super) fn prepare(_spec: &Spec) -> Result<Confinement, ConfineError> {
        Err(ConfineError::NotEnforced)
    }

    impl Confinement {
        /// Where Landlock is not available there is no confinement to apply.
        pub fn apply_to(self, _command: &mut tokio::process::Command) {
            match self.never {}
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::ffi::OsStr;
    use std::path::{Path, PathBuf};
    use std::process::Output;

    use super::*;

    const KEY: &str = "MASTER-KEY-5f1e2d3c4b5a";

    /// A home holding Pier's master key, a checkout and a scratch directory, side by side
    /// in one temporary directory (under `/tmp`, which is not granted).
    struct World {
        root: tempfile::TempDir,
    }

    impl World {
        fn new() -> World {
            let root = tempfile::tempdir().expect("temporary directory");
            let world = World { root };
            std::fs::create_dir_all(world.config()).expect("config dir");
            std::fs::write(world.key(), KEY).expect("key");
            std::fs::create_dir(world.checkout()).expect("checkout");
            std::fs::write(world.checkout().join("file"), "checked out\n").expect("file");
            std::fs::create_dir(world.scratch()).expect("scratch");
            world
        }
        fn home(&self) -> PathBuf {
            self.root.path().join("home")
        }
        fn config(&self) -> PathBuf {
            self.home().join(".config/pier")
        }
        fn key(&self) -> PathBuf {
            self.config().join("master.key")
        }
        fn checkout(&self) -> PathBuf {
            self.root.path().join("checkout")
        }
        fn scratch(&self) -> PathBuf {
            self.root.path().join("scratch")
        }
        fn spec(&self) -> Spec {
            Spec {
                read: vec![self.checkout()],
                write: vec![self.scratch()],
                deny_under: vec![self.home(), self.config()],
            }
        }
    }

    /// Whether confinement is enforced here; if not, says why the test is skipped.
    fn enforced() -> bool {
        match status() {
            Status::Enforced { .. } => true,
            Status::Unavailable { reason } => {
                eprintln!("skipped: Landlock is not available ({reason})");
                false
            }
        }
    }

    /// Where the tests' programs are looked up, in the system trees; also their `PATH`.
    const PATH: &str = "/usr/bin:/bin";

    /// `program`, found on [`PATH`], so that the child needs no search.
    fn which(program: &str) -> PathBuf {
        std::env::split_paths(PATH).map(|d| d.join(program)).find(|p| p.is_file()).expect("program in /usr/bin or /bin")
    }

    async fn run_with(confinement: Confinement, program: &str, args: &[&OsStr]) -> Output {
        let mut command = tokio::process::Command::new(which(program));
        command.args(args).env("PATH", PATH).env("LC_ALL", "C");
        confinement.apply_to(&mut command);
        command.output().await.expect("confined program starts")
    }

    async fn run(spec: &Spec, program: &str, args: &[&OsStr]) -> Output {
        let confinement = prepare(spec).expect("prepared").expect("Landlock is enforced");
        run_with(confinement, program, args).await
    }

    async fn sh(spec: &Spec, script: &str) -> Output {
        run(spec, "sh", &["-c".as_ref(), script.as_ref()]).await
    }

    fn quoted(path: &Path) -> String {
        format!("'{}'", path.display())
    }

    #[test]
    fn status_says_what_is_enforced() {
        let shown = status().to_string();
        match status() {
            Status::Enforced { abi } => {
                assert!(abi >= 1);
                assert!(shown.starts_with(&format!("programs are confined by Landlock (ABI {abi})")), "{shown}");
            }
            Status::Unavailable { reason } => {
                assert!(shown.contains(&reason), "{shown}");
                eprintln!("skipped: Landlock is not available ({reason})");
            }
        }
        let unavailable = Status::Unavailable { reason: "disabled".into() };
        assert_eq!(
            unavailable.to_string(),
            "Landlock is not available on this machine (disabled): programs are not confined beyond their environment"
        );
    }

    #[tokio::test]
    async fn the_master_key_is_unreadable() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let out = run(&world.spec(), "cat", &[world.key().as_os_str()]).await;
        assert!(!out.status.success(), "cat of the key succeeded");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
        // Nor can the home be listed.
        let out = run(&world.spec(), "ls", &[world.home().as_os_str()]).await;
        assert!(!out.status.success(), "{out:?}");
        // Unconfined, the same command reads it: the denial is the confinement's.
        let out = tokio::process::Command::new(which("cat")).arg(world.key()).output().await.expect("cat");
        assert_eq!(String::from_utf8_lossy(&out.stdout), KEY);
    }

    #[tokio::test]
    async fn the_checkout_is_readable() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let out = run(&world.spec(), "cat", &[world.checkout().join("file").as_os_str()]).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"checked out\n");
    }

    #[tokio::test]
    async fn only_the_scratch_directory_is_writable() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let out = run(&world.spec(), "touch", &[world.scratch().join("x").as_os_str()]).await;
        assert!(out.status.success(), "{out:?}");
        assert!(world.scratch().join("x").is_file());

        let out = run(&world.spec(), "touch", &[world.checkout().join("y").as_os_str()]).await;
        assert!(!out.status.success(), "{out:?}");
        assert!(!world.checkout().join("y").exists());

        // Nor is the temporary directory the scratch directory lives in.
        let out = run(&world.spec(), "touch", &[world.root.path().join("z").as_os_str()]).await;
        assert!(!out.status.success(), "{out:?}");
        assert!(!world.root.path().join("z").exists());

        // A file of the checkout cannot be overwritten either.
        let out = sh(&world.spec(), &format!("echo changed > {}", quoted(&world.checkout().join("file")))).await;
        assert!(!out.status.success(), "{out:?}");
        assert_eq!(std::fs::read(world.checkout().join("file")).expect("file"), b"checked out\n");
    }

    #[tokio::test]
    async fn children_of_a_confined_program_are_confined() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let key = quoted(&world.key());
        let out = sh(&world.spec(), &format!("cat {key}; sh -c \"cat {key}\"")).await;
        assert!(!out.status.success(), "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));
        // The benign twin: the grandchild reads the checkout and writes the scratch.
        let script = format!(
            "sh -c \"cat {} && echo made > {}\"",
            quoted(&world.checkout().join("file")),
            quoted(&world.scratch().join("made"))
        );
        let out = sh(&world.spec(), &script).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"checked out\n");
        assert_eq!(std::fs::read(world.scratch().join("made")).expect("made"), b"made\n");
    }

    #[tokio::test]
    async fn a_read_path_holding_the_home_is_dropped() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let key = world.key();
        for tree in [world.home(), world.root.path().to_path_buf(), PathBuf::from("/")] {
            let mut spec = world.spec();
            spec.read.push(tree.clone());
            let confinement = prepare(&spec).expect("prepared").expect("enforced");
            assert_eq!(confinement.dropped(), std::slice::from_ref(&tree));
            let out = run_with(confinement, "cat", &[key.as_os_str()]).await;
            assert!(!out.status.success(), "{} was granted: {out:?}", tree.display());
            assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));
        }
        // Pier's configuration directory alone is protected too, and so is a write tree.
        let mut spec = world.spec();
        spec.read.push(world.config());
        spec.write.push(world.home().join(".config"));
        let confinement = prepare(&spec).expect("prepared").expect("enforced");
        assert_eq!(confinement.dropped(), [world.config(), world.home().join(".config")]);
        let out = run_with(confinement, "cat", &[key.as_os_str()]).await;
        assert!(!out.status.success(), "{out:?}");
    }

    #[tokio::test]
    async fn a_link_to_the_home_is_dropped() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let link = world.scratch().join("link");
        std::os::unix::fs::symlink(world.root.path(), &link).expect("symlink");
        let mut spec = world.spec();
        spec.read.push(link.clone());
        let confinement = prepare(&spec).expect("prepared").expect("enforced");
        assert_eq!(confinement.dropped(), std::slice::from_ref(&link));
        let out = run_with(confinement, "cat", &[link.join("home/.config/pier/master.key").as_os_str()]).await;
        assert!(!out.status.success(), "{out:?}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains(KEY));
    }

    #[tokio::test]
    async fn a_tree_inside_the_home_is_kept() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let bin = world.home().join(".local/bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::write(bin.join("tool"), "#!/bin/sh\necho tool ran\n").expect("tool");
        make_executable(&bin.join("tool"));
        let mut spec = world.spec();
        spec.read.push(bin.clone());
        let confinement = prepare(&spec).expect("prepared").expect("enforced");
        assert!(confinement.dropped().is_empty());
        let out = run_with(confinement, "sh", &["-c".as_ref(), bin.join("tool").as_os_str()]).await;
        assert!(out.status.success(), "{out:?}");
        assert_eq!(out.stdout, b"tool ran\n");
        let out = sh(&spec, &format!("cat {}", quoted(&world.key()))).await;
        assert!(!out.status.success(), "{out:?}");
    }

    fn make_executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[tokio::test]
    async fn programs_in_the_checkout_and_scratch_run() {
        if !enforced() {
            return;
        }
        let world = World::new();
        for dir in [world.checkout(), world.scratch()] {
            let script = dir.join("script");
            std::fs::write(&script, "#!/bin/sh\necho ran\n").expect("script");
            make_executable(&script);
            let confinement = prepare(&world.spec()).expect("prepared").expect("enforced");
            let mut command = tokio::process::Command::new(&script);
            confinement.apply_to(&mut command);
            let out = command.output().await.expect("script starts");
            assert_eq!(out.stdout, b"ran\n", "{out:?}");
        }
    }

    #[tokio::test]
    async fn devices_that_programs_need_work() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let script = "echo gone > /dev/null && exec 3<>/dev/null && head -c 4 /dev/urandom | wc -c \
                      && head -c 2 /dev/zero | wc -c";
        let out = sh(&world.spec(), script).await;
        assert!(out.status.success(), "{out:?}");
        let counts: Vec<_> = String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_owned).collect();
        assert_eq!(counts, ["4", "2"]);
        // Other devices are not granted.
        let out = sh(&world.spec(), "ls /dev").await;
        assert!(!out.status.success(), "{out:?}");
    }

    #[tokio::test]
    async fn signals_do_not_leave_the_sandbox() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let out = sh(&world.spec(), &format!("kill -0 {}", std::process::id())).await;
        assert!(!out.status.success(), "{out:?}");
        // Within the sandbox they do: a grandchild signals its parent.
        let out = sh(&world.spec(), "sh -c 'kill -0 $PPID' && echo delivered").await;
        assert_eq!(out.stdout, b"delivered\n", "{out:?}");
    }

    #[tokio::test]
    async fn the_environment_of_other_processes_is_unreadable() {
        if !enforced() {
            return;
        }
        let world = World::new();
        // An unconfined process holding the master key in its environment, as the host
        // does in CI; it waits on its standard input.
        let mut holder = tokio::process::Command::new(which("cat"))
            .env_clear()
            .env("PIER_MASTER_KEY", KEY)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("holder starts");
        let holder_pid = holder.id().expect("holder runs");
        let unconfined =
            tokio::process::Command::new(which("cat")).arg(format!("/proc/{holder_pid}/environ")).output().await;
        assert!(String::from_utf8_lossy(&unconfined.expect("cat").stdout).contains(KEY));
        for pid in [holder_pid, std::process::id()] {
            for file in ["environ", "mem", "cmdline", "fd/0"] {
                let out = sh(&world.spec(), &format!("head -c 100 /proc/{pid}/{file}")).await;
                assert!(!out.status.success() && out.stdout.is_empty(), "{pid}/{file}: {out:?}");
            }
        }
        // Granting `/proc` (or a process's directory in it) is refused.
        let mut spec = world.spec();
        spec.read.extend(["/proc".into(), "/proc/self".into(), format!("/proc/{holder_pid}").into()]);
        let confinement = prepare(&spec).expect("prepared").expect("enforced");
        assert_eq!(confinement.dropped().len(), 3, "{:?}", confinement.dropped());
        let out = run_with(confinement, "cat", &[format!("/proc/{holder_pid}/environ").as_ref()]).await;
        assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");
        drop(holder.stdin.take());
        holder.wait().await.expect("holder ends");
        // The benign twin: what describes the machine is readable, and a program's own
        // standard streams can be opened by name.
        let script = "grep -c ^MemTotal: /proc/meminfo && cat /proc/sys/kernel/ostype && echo piped | cat /dev/stdin";
        let out = sh(&world.spec(), script).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\nLinux\npiped\n", "{out:?}");
    }

    #[tokio::test]
    async fn missing_paths_are_skipped() {
        if !enforced() {
            return;
        }
        let world = World::new();
        let mut spec = world.spec();
        spec.read.push(world.root.path().join("nowhere"));
        spec.read.push(world.checkout().join("file/below-a-file"));
        spec.read.push("relative/dir".into());
        let cycle = world.root.path().join("cycle");
        std::os::unix::fs::symlink(&cycle, &cycle).expect("symlink");
        spec.read.push(cycle);
        let confinement = prepare(&spec).expect("prepared").expect("enforced");
        assert!(confinement.dropped().is_empty());
        let out = run_with(confinement, "cat", &[world.checkout().join("file").as_os_str()]).await;
        assert!(out.status.success(), "{out:?}");
    }

    #[tokio::test]
    async fn a_program_that_cannot_be_confined_does_not_start() {
        if !enforced() {
            return;
        }
        // Landlock stacks at most 16 rulesets on a process: the 17th fails to apply.
        let world = World::new();
        let marker = world.scratch().join("ran");
        let mut command = tokio::process::Command::new(which("touch"));
        command.arg(&marker);
        for _ in 0..17 {
            prepare(&world.spec()).expect("prepared").expect("enforced").apply_to(&mut command);
        }
        let error = command.output().await.expect_err("the program must not start");
        assert_eq!(error.raw_os_error(), Some(nix::libc::E2BIG), "{error}");
        assert!(!marker.exists());
    }
}
