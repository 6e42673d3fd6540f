import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// The processes `gallocy demo` started, and its temporary directory: spawned with
/// `posix_spawn` into a process group of their own (a Ctrl-C in the terminal reaches the demo,
/// which stops them, not the members directly), reaped with `waitpid`, and all killed by
/// `cleanUp()`, which a signal handler may call from any thread.
package final class DemoProcesses: Sendable {
    package struct Child: Sendable {
        package var pid: pid_t
        package var name: String
    }

    private struct State {
        var running: [pid_t: String] = [:]
        var exited: [pid_t: Int32] = [:]
        var cleanedUp = false
    }

    package let directory: String
    package let keepDirectory: Bool
    private let state = Mutex(State())

    /// Creates a fresh directory under $TMPDIR (or /tmp).
    package init(keepDirectory: Bool) throws(DemoError) {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/gallocy-demo-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let made else {
            throw DemoError("cannot create a temporary directory in \(base): \(String(cString: strerror(errno)))")
        }
        directory = String(cString: made)
        self.keepDirectory = keepDirectory
    }

    /// Starts `executable` with `arguments`, stdin from /dev/null, stdout and stderr appended to
    /// the given files.
    package func spawn(
        _ executable: String, _ arguments: [String], name: String, standardOutput: String, standardError: String
    ) throws(DemoError) -> Child {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, standardOutput, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, standardError, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group; default signal handling and an empty mask (the demo ignores
        // SIGINT itself, and an ignored disposition would survive exec).
        posix_spawnattr_setpgroup(&attributes, 0)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGPIPE, SIGHUP, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(
            &attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        var pid: pid_t = 0
        let result: Int32 = try state.withLock { state throws(DemoError) -> Int32 in
            // Under the lock: a cleanup running now either sees this child or refuses the spawn.
            guard !state.cleanedUp else { throw DemoError("the demo is stopping") }
            let result = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
            if result == 0 { state.running[pid] = name }
            return result
        }
        guard result == 0 else {
            throw DemoError("cannot start \(executable): \(String(cString: strerror(result)))")
        }
        return Child(pid: pid, name: name)
    }

    /// The exit status of `child` if it has ended: its exit code, or 128 + the signal.
    package func status(_ child: Child) -> Int32? {
        state.withLock { state in
            if let status = state.exited[child.pid] { return status }
            var raw: Int32 = 0
            guard waitpid(child.pid, &raw, WNOHANG) == child.pid else { return nil }
            let signal = raw & 0x7f
            let status = signal == 0 ? (raw >> 8) & 0xff : 128 + signal
            state.running[child.pid] = nil
            state.exited[child.pid] = status
            return status
        }
    }

    /// SIGKILL, then waits until it is gone.
    package func kill(_ child: Child) {
        state.withLock { state in
            guard state.running[child.pid] != nil else { return }
            _ = Glibc.kill(child.pid, SIGKILL)
        }
        while status(child) == nil { usleep(2_000) }
    }

    /// Waits until every child in `children` has ended, at most `timeout`; the ones still
    /// running then.
    package func wait(for children: [Child], timeout: Duration, poll: () -> Void = {}) -> [Child] {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            let left = children.filter { status($0) == nil }
            if left.isEmpty || ContinuousClock.now >= deadline { return left }
            poll()
            usleep(20_000)
        }
    }

    /// Kills every child still running, reaps it, and removes the directory (unless kept).
    /// Idempotent; safe from any thread.
    package func cleanUp() {
        let pids = state.withLock { state -> [pid_t] in
            guard !state.cleanedUp else { return [] }
            state.cleanedUp = true
            return Array(state.running.keys)
        }
        for pid in pids {
            _ = Glibc.kill(pid, SIGKILL)
            var raw: Int32 = 0
            _ = waitpid(pid, &raw, 0)
        }
        state.withLock { $0.running = [:] }
        if !keepDirectory { try? FileManager.default.removeItem(atPath: directory) }
    }

    /// Loopback ports that were free a moment ago (each bound to port 0 and released), all
    /// distinct.
    package static func freePorts(_ count: Int) throws(DemoError) -> [UInt16] {
        var ports: [UInt16] = []
        var attempts = 0
        while ports.count < count {
            attempts += 1
            guard attempts < count * 50 else { throw DemoError("cannot find \(count) free loopback ports") }
            guard let port = try? LocalCluster.freePort(), !ports.contains(port) else { continue }
            ports.append(port)
        }
        return ports
    }

    /// This executable's path (/proc/self/exe, else argv[0]).
    package static func ownExecutable() -> String {
        if let path = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return path }
        return CommandLine.arguments.first ?? "gallocy"
    }
}
