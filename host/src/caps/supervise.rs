//! The process tree of every program Pier runs, under a supervisor of its own, so that no
//! process outlives its deploy.
//!
//! [`spawn`] starts a command prepared with [`prepare`] under a supervisor: the child of
//! `fork` that would have executed the program forks once more, the new child executes
//! the program, and the copy of `pier` that stays behind never executes anything. On
//! Linux the supervisor
//! - is the subreaper of everything the program starts: a process whose parent ended is
//!   handed to it, not to init;
//! - puts the program in a new process group, which the program leads;
//! - gets SIGTERM when `pier` dies however it dies (`PR_SET_PDEATHSIG`, with its parent's
//!   pid checked after asking, in case `pier` died first); the program gets SIGKILL if the
//!   supervisor dies;
//! - closes every descriptor it inherited but those registered with [`keep_open`] (the
//!   server's lock), which so stay open until the whole tree is gone.
//!
//! It stops the tree when the program exits (whatever it left behind), when Pier asks
//! ([`Tree::stop`], or SIGTERM, SIGINT, SIGHUP, SIGQUIT), and when `pier` dies: SIGTERM
//! to the group and to every process orphaned to it, then after [`GRACE`] SIGKILL to them
//! every 10 ms until none is left (for at most [`KILL_WAIT`]). Then it exits as the
//! program did. A tree whose program exits leaving nothing behind ends at once.
//!
//! The parent-death signal comes when the *thread* that forked ends, not the process: a
//! program forked from a tokio blocking thread that then retires would be killed for
//! nothing. Every run is therefore forked by one spawner thread, started on first use and
//! never ended, so the signal comes exactly when `pier` dies; the caller's task awaits the
//! spawned child on its own runtime, whatever its flavour and threads.
//!
//! Between `fork` and its end the supervisor makes only async-signal-safe system calls
//! (`sigprocmask`, `sigaction`, `prctl`, `fork`, `setpgid`, `close_range`, `waitpid`,
//! `kill`, `sigtimedwait`, `open`/`read` of `/proc/thread-self/children`, `_exit`),
//! allocates nothing and takes no lock: other threads of the parent may have held locks
//! at the fork.
//!
//! Elsewhere on Unix the program gets a process group of its own, which stopping it
//! signals (SIGTERM, then SIGKILL); nothing ends it if `pier` is killed.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// How long a stopped tree's processes have between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long a supervisor goes on sending SIGKILL before it gives up on what is left
/// (processes in uninterruptible sleep) and exits.
pub const KILL_WAIT: Duration = Duration::from_secs(2);
/// How long Pier waits, beyond [`GRACE`] and [`KILL_WAIT`], for a supervisor it asked to
/// stop before it kills the tree itself.
const SLACK: Duration = Duration::from_secs(3);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Descriptors every supervisor started from now on keeps open.
static KEPT: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

/// A descriptor registered with [`keep_open`]; unregistered when dropped (drop it before
/// closing the descriptor).
#[derive(Debug)]
pub struct Kept(RawFd);

/// Has every supervisor started while the result lives keep `fd` open, so that what it
/// holds (a lock) lasts until the supervisor's whole tree is gone, even if `pier` is
/// killed.
pub fn keep_open(fd: &impl AsRawFd) -> Kept {
    let fd = fd.as_raw_fd();
    lock(&KEPT).push(fd);
    Kept(fd)
}

impl Drop for Kept {
    fn drop(&mut self) {
        let mut kept = lock(&KEPT);
        if let Some(i) = kept.iter().position(|fd| *fd == self.0) {
            kept.swap_remove(i);
        }
    }
}

/// Prepares `command` to run under a supervisor. `pre_exec` hooks added afterwards (the
/// confinement) run in the program only, not in the supervisor.
pub fn prepare(command: &mut tokio::process::Command) {
    command.kill_on_drop(false);
    #[cfg(target_os = "linux")]
    linux::prepare(command);
    #[cfg(all(unix, not(target_os = "linux")))]
    command.process_group(0);
}

/// Runs whose [`Tree`] was dropped while they ran: asked to stop, not yet reaped.
static ABANDONED: Mutex<Vec<tokio::process::Child>> = Mutex::new(Vec::new());

/// A running program's tree: its supervisor (on Linux) or its process group.
#[derive(Debug)]
pub struct Tree {
    child: Option<tokio::process::Child>,
}

/// Starts `command` (prepared with [`prepare`]) from the spawner thread.
pub async fn spawn(command: tokio::process::Command) -> io::Result<Tree> {
    let child = spawner::spawn(command).await?;
    Ok(Tree { child: Some(child) })
}

impl Tree {
    /// The supervisor's handle, for its standard output and error (the program's).
    pub fn child(&mut self) -> Option<&mut tokio::process::Child> {
        self.child.as_mut()
    }

    /// Waits for the tree to end; how the program ended.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let child = self.child.as_mut().ok_or_else(|| io::Error::other("the run already ended"))?;
        let status = child.wait().await?;
        self.child = None;
        Ok(status)
    }

    /// Stops the tree (SIGTERM, SIGKILL after the grace) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child).await;
        }
    }
}

impl Drop for Tree {
    /// A run dropped while it runs (its deploy was interrupted) is asked to stop and kept
    /// for [`settle`] to wait for.
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        ask_to_stop(&child);
        lock(&ABANDONED).push(child);
    }
}

/// Waits until every run that was dropped while it ran has ended, killing those that do
/// not end in time. Call it before releasing what their processes must not outlive: the
/// server's lock, the run's scratch directory.
pub async fn settle() {
    let children = std::mem::take(&mut *lock(&ABANDONED));
    futures_util::future::join_all(children.into_iter().map(|mut child| async move { stop(&mut child).await })).await;
}

/// Asks a tree to stop, waits for it, and kills it if it does not stop in time.
async fn stop(child: &mut tokio::process::Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    ask_to_stop(child);
    #[cfg(target_os = "linux")]
    let patience = GRACE + KILL_WAIT + SLACK;
    #[cfg(not(target_os = "linux"))]
    let patience = GRACE;
    if tokio::time::timeout(patience, child.wait()).await.is_err() {
        kill_now(child);
        let _ = child.wait().await;
    }
}

fn pid_of(child: &tokio::process::Child) -> Option<nix::unistd::Pid> {
    child.id().and_then(|id| i32::try_from(id).ok()).map(nix::unistd::Pid::from_raw)
}

/// SIGTERM to the supervisor, which stops its tree (elsewhere: to the program's group).
fn ask_to_stop(child: &tokio::process::Child) {
    use nix::sys::signal::Signal;
    let Some(pid) = pid_of(child) else { return };
    #[cfg(target_os = "linux")]
    let _ = nix::sys::signal::kill(pid, Signal::SIGTERM);
    #[cfg(all(unix, not(target_os = "linux")))]
    let _ = nix::sys::signal::killpg(pid, Signal::SIGTERM);
}

/// SIGKILL to a tree that did not stop when asked: the program's group and every process
/// orphaned to the supervisor, then the supervisor (elsewhere: the program's group).
fn kill_now(child: &mut tokio::process::Child) {
    use nix::sys::signal::{Signal, kill, killpg};
    let Some(pid) = pid_of(child) else { return };
    #[cfg(target_os = "linux")]
    {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for orphan in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let orphan = nix::unistd::Pid::from_raw(orphan);
            let _ = killpg(orphan, Signal::SIGKILL);
            let _ = kill(orphan, Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    let _ = killpg(pid, Signal::SIGKILL);
}

/// The one thread that forks every run.
mod spawner {
    use std::io;
    use std::sync::{OnceLock, mpsc};

    struct Request {
        command: tokio::process::Command,
        runtime: tokio::runtime::Handle,
        reply: tokio::sync::oneshot::Sender<io::Result<tokio::process::Child>>,
    }

    fn sender() -> io::Result<mpsc::Sender<Request>> {
        static SENDER: OnceLock<Option<mpsc::Sender<Request>>> = OnceLock::new();
        SENDER
            .get_or_init(|| {
                let (sender, requests) = mpsc::channel::<Request>();
                let serve = move || {
                    for mut request in requests {
                        // The child is registered with the caller's runtime, which reaps it.
                        let _runtime = request.runtime.enter();
                        let _ = request.reply.send(request.command.spawn());
                    }
                };
                std::thread::Builder::new().name("pier-spawner".into()).spawn(serve).ok().map(|_| sender)
            })
            .clone()
            .ok_or_else(|| io::Error::other("the thread that starts programs could not be started"))
    }

    /// Spawns `command` from the spawner thread; the child belongs to the current runtime.
    pub(super) async fn spawn(command: tokio::process::Command) -> io::Result<tokio::process::Child> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || io::Error::other("the thread that starts programs has ended");
        sender()?.send(Request { command, runtime: tokio::runtime::Handle::current(), reply }).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::ptr::{null, null_mut};
    use std::time::{Duration, Instant};

    use nix::libc as c;

    use super::{GRACE, KEPT, KILL_WAIT, lock};

    /// What the forked child needs, all of it gathered before the fork.
    struct Hook {
        /// `pier`'s pid: the supervisor's parent, unless `pier` has died.
        parent: c::pid_t,
        /// Descriptors the supervisor keeps open, sorted.
        kept: Box<[c::c_int]>,
    }

    pub(super) fn prepare(command: &mut tokio::process::Command) {
        let mut kept: Vec<c::c_int> = lock(&KEPT).iter().copied().filter(|fd| *fd >= 0).collect();
        kept.sort_unstable();
        kept.dedup();
        let parent = c::pid_t::try_from(std::process::id()).unwrap_or(c::pid_t::MAX);
        let hook = Hook { parent, kept: kept.into_boxed_slice() };
        // SAFETY: the hook runs in the child between `fork` and `exec`, where only the
        // forking thread survives and locks other threads held stay locked: it must be
        // async-signal-safe. It is: it makes system calls only (listed in the module's
        // documentation), reads the hook's own fields (allocated before the fork), builds
        // everything else on the stack, allocates nothing, takes no lock and does not
        // panic; in the supervisor it never returns (it ends with `_exit`).
        unsafe {
            command.pre_exec(move || hook.run());
        }
    }

    fn check(result: c::c_int) -> io::Result<()> {
        if result == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
    }

    fn errno() -> c::c_int {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    /// The signals the supervisor waits for rather than dies of.
    fn waited_signals() -> c::sigset_t {
        // SAFETY: `sigemptyset` initialises the set; `sigaddset` adds valid signals to it.
        unsafe {
            let mut set: c::sigset_t = std::mem::zeroed();
            c::sigemptyset(&mut set);
            for signal in [c::SIGCHLD, c::SIGTERM, c::SIGINT, c::SIGHUP, c::SIGQUIT] {
                c::sigaddset(&mut set, signal);
            }
            set
        }
    }

    /// Sets `signal`'s action to the default one.
    fn default_action(signal: c::c_int) -> io::Result<()> {
        // SAFETY: an all-zero `sigaction` with `SIG_DFL` is a valid action.
        unsafe {
            let mut action: c::sigaction = std::mem::zeroed();
            action.sa_sigaction = c::SIG_DFL;
            check(c::sigaction(signal, &action, null_mut()))
        }
    }

    impl Hook {
        /// In the child of the fork: becomes the supervisor, forks the program (which
        /// returns, to execute it) and supervises it (never returns).
        fn run(&self) -> io::Result<()> {
            let waited = waited_signals();
            // SAFETY: plain system calls on valid arguments (see `prepare`).
            unsafe {
                let mut old: c::sigset_t = std::mem::zeroed();
                check(c::sigprocmask(c::SIG_BLOCK, &waited, &mut old))?;
                // The kernel reaps children itself when SIGCHLD is ignored.
                default_action(c::SIGCHLD)?;
                check(c::prctl(c::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))?;
                check(c::prctl(c::PR_SET_PDEATHSIG, c::SIGTERM, 0, 0, 0))?;
                if c::getppid() != self.parent {
                    // `pier` died before the signal was asked for.
                    return Err(io::Error::from_raw_os_error(c::ESRCH));
                }
                let supervisor = c::getpid();
                let program = c::fork();
                if program == -1 {
                    return Err(io::Error::last_os_error());
                }
                if program == 0 {
                    // The program: dies with its supervisor, leads a group of its own and
                    // starts with the signal mask `pier` had.
                    check(c::prctl(c::PR_SET_PDEATHSIG, c::SIGKILL, 0, 0, 0))?;
                    if c::getppid() != supervisor {
                        return Err(io::Error::from_raw_os_error(c::ESRCH));
                    }
                    check(c::setpgid(0, 0))?;
                    check(c::sigprocmask(c::SIG_SETMASK, &old, null_mut()))?;
                    return Ok(());
                }
                // Whichever of the two calls comes first makes the group; the other fails
                // harmlessly.
                c::setpgid(program, program);
                close_inherited(&self.kept);
                supervise(program, &waited)
            }
        }
    }

    /// Closes every descriptor but `kept` (sorted): the pipes `pier` waits on, its
    /// database, everything else it had open.
    unsafe fn close_inherited(kept: &[c::c_int]) {
        let mut from: c::c_uint = 0;
        for &fd in kept {
            let fd = fd as c::c_uint;
            if fd > from {
                // SAFETY: closing descriptors is always memory-safe.
                unsafe { close_range(from, fd - 1) };
            }
            from = fd.saturating_add(1);
        }
        // SAFETY: as above.
        unsafe { close_range(from, c::c_uint::MAX) };
    }

    unsafe fn close_range(first: c::c_uint, last: c::c_uint) {
        // SAFETY: `close_range` takes plain integers.
        if unsafe { c::syscall(c::SYS_close_range, first, last, 0) } == 0 {
            return;
        }
        // Before Linux 5.9: one by one, up to the limit of descriptors.
        // SAFETY: an all-zero `rlimit` is valid; `getrlimit` writes it.
        let mut limit: c::rlimit = unsafe { std::mem::zeroed() };
        let max = if unsafe { c::getrlimit(c::RLIMIT_NOFILE, &mut limit) } == 0 && limit.rlim_cur != c::RLIM_INFINITY {
            limit.rlim_cur.min(1 << 20) as c::c_uint
        } else {
            1 << 16
        };
        let mut fd = first;
        while fd <= last && fd < max {
            // SAFETY: as above.
            unsafe { c::close(fd as c::c_int) };
            fd += 1;
        }
    }

    /// Sends `signal` to the program's group and to every child of the supervisor: the
    /// program, and whatever was orphaned to it, in its group or not.
    fn signal_tree(group: c::pid_t, signal: c::c_int) {
        // SAFETY: `kill` takes plain integers.
        unsafe { c::kill(-group, signal) };
        for_each_child(|pid| {
            // SAFETY: as above; every child of the supervisor is part of the tree.
            unsafe { c::kill(pid, signal) };
        });
    }

    /// Calls `each` with every child of the calling (single-threaded) process, from
    /// `/proc/thread-self/children`; nothing if it cannot be read.
    fn for_each_child(mut each: impl FnMut(c::pid_t)) {
        // SAFETY: a NUL-terminated path; reads into a stack buffer of the given length.
        unsafe {
            let fd = c::open(c"/proc/thread-self/children".as_ptr(), c::O_RDONLY | c::O_CLOEXEC);
            if fd < 0 {
                return;
            }
            let mut buf = [0u8; 512];
            let mut pid: c::pid_t = 0;
            loop {
                let n = c::read(fd, buf.as_mut_ptr().cast(), buf.len());
                if n <= 0 {
                    break;
                }
                for &b in &buf[..n as usize] {
                    if b.is_ascii_digit() {
                        pid = pid.saturating_mul(10).saturating_add(c::pid_t::from(b - b'0'));
                    } else {
                        if pid > 0 {
                            each(pid);
                        }
                        pid = 0;
                    }
                }
            }
            if pid > 0 {
                each(pid);
            }
            c::close(fd);
        }
    }

    /// Reaps every child that has ended, noting the program's status; whether none is
    /// left.
    fn reap(program: c::pid_t, status: &mut Option<c::c_int>) -> bool {
        loop {
            let mut st: c::c_int = 0;
            // SAFETY: `st` is valid for writes.
            let pid = unsafe { c::waitpid(-1, &mut st, c::WNOHANG) };
            if pid > 0 {
                if pid == program {
                    *status = Some(st);
                }
                continue;
            }
            if pid == 0 {
                return false;
            }
            if errno() == c::EINTR {
                continue;
            }
            return true;
        }
    }

    /// Waits up to `timeout` (or for ever) for one of `set`; the signal, if one came.
    fn wait_signal(set: &c::sigset_t, timeout: Option<Duration>) -> Option<c::c_int> {
        let ts = timeout.map(|d| c::timespec {
            tv_sec: c::time_t::try_from(d.as_secs()).unwrap_or(c::time_t::MAX),
            tv_nsec: d.subsec_nanos().into(),
        });
        // SAFETY: an all-zero `siginfo_t` is valid; the pointers are to live values.
        unsafe {
            let mut info: c::siginfo_t = std::mem::zeroed();
            let signal = c::sigtimedwait(set, &mut info, ts.as_ref().map_or(null(), |t| t as *const c::timespec));
            (signal > 0).then_some(signal)
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Phase {
        /// The program runs.
        Running,
        /// SIGTERM was sent; SIGKILL at the deadline.
        Stopping(Instant),
        /// SIGKILL is sent every 10 ms until nothing is left or the deadline passes.
        Killing(Instant),
    }

    /// The supervisor's loop: reaps, stops the tree when asked or when the program ended,
    /// and exits once nothing is left.
    fn supervise(program: c::pid_t, waited: &c::sigset_t) -> ! {
        let mut status = None;
        let mut phase = Phase::Running;
        loop {
            if reap(program, &mut status) {
                finish(status);
            }
            let now = Instant::now();
            phase = match phase {
                Phase::Running if status.is_some() => {
                    signal_tree(program, c::SIGTERM);
                    Phase::Stopping(now + GRACE)
                }
                Phase::Stopping(at) if now >= at => Phase::Killing(now + KILL_WAIT),
                Phase::Killing(at) if now >= at => finish(status),
                other => other,
            };
            let timeout = match phase {
                Phase::Running => None,
                Phase::Stopping(at) => Some(at.saturating_duration_since(now)),
                Phase::Killing(_) => {
                    signal_tree(program, c::SIGKILL);
                    Some(Duration::from_millis(10))
                }
            };
            let signal = wait_signal(waited, timeout);
            if phase == Phase::Running && signal.is_some_and(|s| s != c::SIGCHLD) {
                signal_tree(program, c::SIGTERM);
                phase = Phase::Stopping(Instant::now() + GRACE);
            }
        }
    }

    /// Exits as the program did: with its exit code, or killed by the same signal.
    fn finish(status: Option<c::c_int>) -> ! {
        // SAFETY: plain system calls on valid arguments; `_exit` ends the process.
        unsafe {
            match status {
                Some(st) if c::WIFEXITED(st) => c::_exit(c::WEXITSTATUS(st)),
                Some(st) if c::WIFSIGNALED(st) => {
                    let signal = c::WTERMSIG(st);
                    let no_core = c::rlimit { rlim_cur: 0, rlim_max: 0 };
                    c::setrlimit(c::RLIMIT_CORE, &no_core);
                    let _ = default_action(signal);
                    let mut only: c::sigset_t = std::mem::zeroed();
                    c::sigemptyset(&mut only);
                    c::sigaddset(&mut only, signal);
                    c::kill(c::getpid(), signal);
                    c::sigprocmask(c::SIG_UNBLOCK, &only, null_mut());
                    c::_exit(128 + signal)
                }
                _ => c::_exit(128 + c::SIGKILL),
            }
        }
    }
}
