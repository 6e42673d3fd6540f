import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A process started by a test (posix_spawn), with its output appended to files, signalled by pid
/// and reaped with waitpid.
///
/// Reaping and signalling happen under one lock, so a signal never reaches a pid the kernel has
/// already given to another process. Every live child is also in a process-wide registry that an
/// atexit handler kills with SIGKILL, so that a test run that ends early leaves no nodes behind.
final class ChildProcess: Sendable {
    enum ExitStatus: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        var description: String {
            switch self {
            case .exited(let code): return "exit status \(code)"
            case .signaled(let signal): return "killed by signal \(signal)"
            }
        }
    }

    let pid: pid_t
    let executable: String
    let arguments: [String]
    private let exitStatus = Mutex<ExitStatus?>(nil)

    private init(pid: pid_t, executable: String, arguments: [String]) {
        self.pid = pid
        self.executable = executable
        self.arguments = arguments
    }

    /// Starts `executable` (a path, or a name looked up in PATH) with `arguments`, stdin from
    /// /dev/null, stdout and stderr appended to the given files (created if missing).
    static func spawn(
        executable: String, arguments: [String], environment: [String: String] = [:],
        standardOutput: String, standardError: String
    ) throws -> ChildProcess {
        _ = Self.installExitHandler
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, standardOutput, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, standardError, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        // Descriptors the test process opened without O_CLOEXEC (Foundation's file writes, for one)
        // must not leak into a node: a leaked listening socket or a file held open for writing
        // (ETXTBSY on exec) would outlive the test that opened it.
        if let closeFrom = Self.addCloseFrom { _ = closeFrom(&actions, 3) }

        // The test process may block or ignore signals (ignored dispositions survive exec); a node
        // must start with the defaults so that SIGTERM and SIGPIPE mean what they normally do.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGQUIT] {
            sigaddset(&defaults, signal)
        }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = merged.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        var result: Int32 = 0
        // ETXTBSY: another thread's child may briefly hold the executable open for writing between
        // its clone and its exec, when a test has just written that executable (a script). Bounded.
        for attempt in 0..<50 {
            result =
                executable.contains("/")
                ? posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
                : posix_spawnp(&pid, executable, &actions, &attributes, argv, envp)
            guard result == ETXTBSY, attempt < 49 else { break }
            usleep(10_000)
        }
        guard result == 0 else {
            throw TestSupportError(.process, "posix_spawn \(executable): \(Loopback.errorText(result))")
        }
        registry.withLock { _ = $0.insert(pid) }
        return ChildProcess(pid: pid, executable: executable, arguments: arguments)
    }

    /// Sends `signal` (kill) unless the process has already been reaped; returns whether it was sent.
    @discardableResult
    func send(_ signal: Int32) -> Bool {
        exitStatus.withLock { status in
            guard status == nil else { return false }
            return kill(pid, signal) == 0
        }
    }

    /// The exit status if the process has ended (waitpid with WNOHANG).
    func poll() -> ExitStatus? {
        exitStatus.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            let result = waitpid(pid, &raw, WNOHANG)
            guard result == pid else { return nil }
            // WIFEXITED and friends are macros Swift does not import; these are their definitions.
            let signal = raw & 0x7f
            let ended: ExitStatus = signal == 0 ? .exited((raw >> 8) & 0xff) : .signaled(signal)
            status = ended
            Self.registry.withLock { _ = $0.remove(pid) }
            return ended
        }
    }

    var isRunning: Bool { poll() == nil }

    /// Waits until the process ends, at most `timeout`; nil if it is still running then.
    func wait(timeout: Duration) -> ExitStatus? {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            if let status = poll() { return status }
            if ContinuousClock.now >= deadline { return nil }
            usleep(5_000)
        }
    }

    /// SIGKILL, then reap; a process in any state (also stopped) ends.
    @discardableResult
    func killAndReap(timeout: Duration = .seconds(10)) -> ExitStatus? {
        send(SIGKILL)
        return wait(timeout: timeout)
    }

    /// Asks politely (SIGTERM), and kills if the process has not ended after `grace`.
    @discardableResult
    func terminate(grace: Duration) -> ExitStatus? {
        send(SIGCONT)  // a stopped process cannot handle SIGTERM
        send(SIGTERM)
        if let status = wait(timeout: grace) { return status }
        return killAndReap()
    }

    /// glibc's posix_spawn_file_actions_addclosefrom_np (2.34 and later). Swift's Glibc module is
    /// imported without _GNU_SOURCE, so it is looked up at run time; nil where it does not exist.
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addCloseFrom: AddCloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(symbol, to: AddCloseFrom.self)
    }()

    // MARK: - Leftovers at exit

    private static let registry = Mutex<Set<pid_t>>([])

    /// Evaluated once, on first spawn.
    private static let installExitHandler: Void = {
        atexit {
            for pid in ChildProcess.registry.withLock({ $0 }) { kill(pid, SIGKILL) }
        }
    }()

    /// Children still unreaped in this test process.
    static var livePids: Set<pid_t> { registry.withLock { $0 } }
}
