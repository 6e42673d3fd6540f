import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A cluster of real `gallocy node` processes on loopback for integration tests.
///
/// Each member gets its own ports (`FreePorts`), data directory and log files under one temporary
/// directory. With `proxied`, member i reaches member j only through a `TestProxy` of its own in
/// front of j's listen port, so a test can cut, heal or slow each link per pair; the contract lets
/// every node be given a different address for the same peer (section 1.1).
///
/// Use `Cluster.run(_:_:)`: it starts the members, runs the test body, prints the tail of every
/// member's log if the body throws (use `try #require` for checks whose failure should show them),
/// and always kills the processes and removes the directory. `deinit` does the same as a last resort.
final class Cluster: Sendable {
    struct Options: Sendable {
        var size = 3
        /// Put a `TestProxy` on every directed link.
        var proxied = true
        /// `--heap-size`, or nil for the node's default.
        var heapSize: String?
        var logLevel: String? = "info"
        /// Appended to every member's flags.
        var extraArguments: [String] = []
        /// The subcommand each member runs: `node`, or an example (`["example", "jacobi"]`),
        /// which takes the same flags.
        var command = ["node"]
        var environment: [String: String] = [:]
        /// More environment for single members (by id), on top of `environment`.
        var memberEnvironment: [Int: [String: String]] = [:]
        /// The `gallocy` executable; nil finds it with `Cluster.gallocyExecutable()`.
        var executable: String?
        /// Keep the temporary directory after the test (also set by GALLOCY_KEEP_TEST_DIRS=1).
        var keepDirectory = ProcessInfo.processInfo.environment["GALLOCY_KEEP_TEST_DIRS"] == "1"

        init(size: Int = 3, proxied: Bool = true) {
            self.size = size
            self.proxied = proxied
        }
    }

    /// A directed link: traffic that `from` dials to `to`.
    struct Link: Hashable, Sendable {
        var from: Int
        var to: Int
    }

    let options: Options
    let executable: String
    /// The temporary directory that holds every member's data directory and logs.
    let directory: String

    private struct State {
        var members: [Int: ClusterMember] = [:]
        var processes: [Int: ChildProcess] = [:]
        var paused: Set<Int> = []
        var starts: [Int: Int] = [:]
        var proxies: [Link: TestProxy] = [:]
        /// For members added after bootstrap: the one proxy the old members reach them through
        /// (the address in the membership change).
        var inboundProxies: [Int: TestProxy] = [:]
        var shutDown = false
    }

    private let state = Mutex(State())

    /// Read access to the proxy tables for the extensions in other files.
    func withProxyTables<Result>(_ body: ([Link: TestProxy], [Int: TestProxy]) -> Result) -> Result {
        state.withLock { body($0.proxies, $0.inboundProxies) }
    }

    /// Creates the directory, picks the ports and starts the proxies; starts no member.
    init(_ options: Options = Options()) throws {
        precondition(options.size >= 1, "a cluster has at least one member")
        self.options = options
        self.executable = try options.executable ?? Self.gallocyExecutable()
        self.directory = try Self.makeTemporaryDirectory()
        do {
            let ports = try FreePorts.take(2 * options.size)
            let ids = Array(1...options.size)
            var proxies: [Link: TestProxy] = [:]
            if options.proxied {
                for from in ids {
                    for to in ids where to != from {
                        proxies[Link(from: from, to: to)] = try TestProxy(targetPort: ports[2 * (to - 1)])
                    }
                }
            }
            var members: [Int: ClusterMember] = [:]
            for id in ids {
                var peers: [Int: String] = [:]
                for peer in ids where peer != id {
                    peers[peer] =
                        proxies[Link(from: id, to: peer)]?.address ?? "\(Loopback.host):\(ports[2 * (peer - 1)])"
                }
                members[id] = makeMember(
                    id: id, listenPort: ports[2 * (id - 1)], httpPort: ports[2 * (id - 1) + 1], peers: peers,
                    join: false)
            }
            state.withLock {
                $0.members = members
                $0.proxies = proxies
            }
        } catch {
            shutdown()
            throw error
        }
    }

    deinit { shutdown() }

    /// Runs `body` on a started cluster; see the type's documentation.
    static func run<Result: Sendable>(
        _ options: Options = Options(), _ body: (Cluster) async throws -> Result
    ) async throws -> Result {
        let cluster = try Cluster(options)
        do {
            try cluster.startAll()
            let result = try await body(cluster)
            cluster.shutdown()
            return result
        } catch {
            cluster.report(failure: error)
            cluster.shutdown()
            throw error
        }
    }

    // MARK: - Members

    var ids: [Int] { state.withLock { $0.members.keys.sorted() } }

    func member(_ id: Int) -> ClusterMember {
        guard let member = state.withLock({ $0.members[id] }) else {
            preconditionFailure("no member \(id) in this cluster")
        }
        return member
    }

    /// A client of member `id`'s HTTP API.
    func client(_ id: Int, timeout: Duration = .seconds(15)) -> NodeClient {
        NodeClient(port: member(id).httpPort, timeout: timeout)
    }

    private func makeMember(id: Int, listenPort: UInt16, httpPort: UInt16, peers: [Int: String], join: Bool)
        -> ClusterMember
    {
        let data = "\(directory)/n\(id)"
        var arguments = options.command + [
            "--id", "\(id)", "--data", data,
            "--listen", "\(Loopback.host):\(listenPort)", "--http", "\(Loopback.host):\(httpPort)",
        ]
        for peer in peers.keys.sorted() { arguments += ["--peer", "\(peer)=\(peers[peer] ?? "")"] }
        if join { arguments.append("--join") }
        if let heapSize = options.heapSize { arguments += ["--heap-size", heapSize] }
        if let logLevel = options.logLevel { arguments += ["--log-level", logLevel] }
        arguments += options.extraArguments
        return ClusterMember(
            id: id, listenPort: listenPort, httpPort: httpPort, dataDirectory: data,
            standardOutputPath: "\(directory)/n\(id).stdout.log", standardErrorPath: "\(directory)/n\(id).stderr.log",
            arguments: arguments, peerAddresses: peers)
    }

    /// Adds member `max(ids) + 1` started with `--join`: it reaches the old members through proxies
    /// of its own; they reach it through one shared proxy, whose address `peerAddressForMembership`
    /// gives for `POST /v1/members`. Returns the new id; the caller adds it and starts it.
    func addJoiningMember() throws -> Int {
        let ports = try FreePorts.take(2)
        let id = (ids.max() ?? 0) + 1
        var peers: [Int: String] = [:]
        var proxies: [Link: TestProxy] = [:]
        var inbound: TestProxy?
        for peer in ids {
            if options.proxied {
                let proxy = try TestProxy(targetPort: member(peer).listenPort)
                proxies[Link(from: id, to: peer)] = proxy
                peers[peer] = proxy.address
            } else {
                peers[peer] = member(peer).listenAddress
            }
        }
        if options.proxied { inbound = try TestProxy(targetPort: ports[0]) }
        let member = makeMember(id: id, listenPort: ports[0], httpPort: ports[1], peers: peers, join: true)
        state.withLock { state in
            state.members[id] = member
            state.proxies.merge(proxies) { $1 }
            state.inboundProxies[id] = inbound
        }
        return id
    }

    /// The address old members should use to reach `id` (for `POST /v1/members`).
    func peerAddressForMembership(_ id: Int) -> String {
        state.withLock { $0.inboundProxies[id]?.address } ?? member(id).listenAddress
    }

    // MARK: - Processes

    func startAll() throws {
        for id in ids { try start(id) }
    }

    /// Starts member `id` with its flags; its logs are appended to, after a marker line.
    func start(_ id: Int) throws {
        let member = member(id)
        let count = try state.withLock { state -> Int in
            guard !state.shutDown else { throw TestSupportError(.process, "cluster already shut down") }
            if let running = state.processes[id], running.isRunning {
                throw TestSupportError(.process, "member \(id) is already running (pid \(running.pid))")
            }
            state.starts[id, default: 0] += 1
            return state.starts[id] ?? 1
        }
        let marker =
            "=== test harness: start #\(count) of member \(id) at monotonic \(MonotonicClock.nanoseconds() / 1_000_000) ms ===\n"
        for path in [member.standardOutputPath, member.standardErrorPath] { Self.append(marker, to: path) }
        let process = try ChildProcess.spawn(
            executable: executable, arguments: member.arguments,
            environment: options.environment.merging(options.memberEnvironment[id] ?? [:]) { $1 },
            standardOutput: member.standardOutputPath, standardError: member.standardErrorPath)
        state.withLock { state in
            state.processes[id] = process
            state.paused.remove(id)
        }
    }

    private func process(_ id: Int) -> ChildProcess? { state.withLock { $0.processes[id] } }

    /// SIGKILL, and waits until the process is gone.
    @discardableResult
    func kill(_ id: Int) -> ChildProcess.ExitStatus? {
        state.withLock { _ = $0.paused.remove(id) }
        return process(id)?.killAndReap()
    }

    /// SIGTERM (graceful shutdown, which the contract says exits 0); SIGKILL after `grace`.
    @discardableResult
    func terminate(_ id: Int, grace: Duration = .seconds(10)) -> ChildProcess.ExitStatus? {
        state.withLock { _ = $0.paused.remove(id) }
        return process(id)?.terminate(grace: grace)
    }

    /// SIGSTOP: the process stays, but answers nothing, like a long GC pause or a hung machine.
    func pause(_ id: Int) {
        if process(id)?.send(SIGSTOP) == true { state.withLock { _ = $0.paused.insert(id) } }
    }

    /// SIGCONT after `pause`.
    func resume(_ id: Int) {
        process(id)?.send(SIGCONT)
        state.withLock { _ = $0.paused.remove(id) }
    }

    /// Kills member `id` if it runs (SIGKILL, or SIGTERM when `graceful`) and starts it again with
    /// the same flags.
    func restart(_ id: Int, graceful: Bool = false) throws {
        if graceful { terminate(id) } else { kill(id) }
        try start(id)
    }

    /// The pid of member `id`'s last process, if it was started.
    func pid(_ id: Int) -> pid_t? { process(id)?.pid }

    func isRunning(_ id: Int) -> Bool { process(id)?.isRunning ?? false }

    /// How the last process of member `id` ended, if it has.
    func exitStatus(_ id: Int) -> ChildProcess.ExitStatus? { process(id)?.poll() }

    /// Members whose process runs and is not paused: those expected to answer.
    var liveIDs: [Int] {
        ids.filter { id in isRunning(id) && !state.withLock { $0.paused.contains(id) } }
    }

    /// Kills every member, stops every proxy and removes the directory (unless kept). Idempotent.
    func shutdown() {
        let (processes, proxies) = state.withLock { state -> ([ChildProcess], [TestProxy]) in
            if state.shutDown { return ([], []) }
            state.shutDown = true
            return (Array(state.processes.values), Array(state.proxies.values) + Array(state.inboundProxies.values))
        }
        guard !processes.isEmpty || !proxies.isEmpty || FileManager.default.fileExists(atPath: directory) else {
            return
        }
        for process in processes { process.killAndReap() }
        for proxy in proxies { proxy.shutdown() }
        if options.keepDirectory {
            Self.printToStandardError("cluster directory kept: \(directory)")
        } else {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    // MARK: - Files

    /// Where `gallocy` is: $GALLOCY_BIN, else next to the running test bundle (under `swift test`
    /// on Linux the bundle is an executable in the build directory, as `gallocy` is, because the
    /// test target depends on it), found through argv[0] and /proc/self/exe.
    static func gallocyExecutable() throws -> String {
        if let path = ProcessInfo.processInfo.environment["GALLOCY_BIN"], !path.isEmpty {
            guard access(path, X_OK) == 0 else {
                throw TestSupportError(.process, "GALLOCY_BIN=\(path) is not an executable")
            }
            return path
        }
        var candidates: [String] = []
        if let first = CommandLine.arguments.first {
            candidates.append(
                URL(fileURLWithPath: first).deletingLastPathComponent().appendingPathComponent("gallocy").path)
        }
        if let own = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(
                URL(fileURLWithPath: own).deletingLastPathComponent().appendingPathComponent("gallocy").path)
        }
        for candidate in candidates where access(candidate, X_OK) == 0 { return candidate }
        throw TestSupportError(.process, "no gallocy executable at \(candidates); build it or set GALLOCY_BIN")
    }

    private static func makeTemporaryDirectory() throws -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/gallocy-it-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let created = made else {
            throw TestSupportError(.file, "mkdtemp in \(base): \(Loopback.errorText())")
        }
        return String(cString: created)
    }

    private static func append(_ text: String, to path: String) {
        guard let file = fopen(path, "a") else { return }
        fputs(text, file)
        fclose(file)
    }

    static func printToStandardError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}

extension Cluster {
    /// The last `lines` lines of a member's stdout and stderr.
    func logTail(_ id: Int, lines: Int = 40) -> String {
        let member = member(id)
        return [("stdout", member.standardOutputPath), ("stderr", member.standardErrorPath)].map { name, path in
            let text = Self.readEnd(of: path, bytes: 256 * 1024) ?? "(no \(name) file)"
            let tail = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(
                separator: "\n")
            return "--- member \(id) \(name) (\(path)), last \(lines) lines ---\n\(tail)"
        }.joined(separator: "\n")
    }

    /// The last `bytes` bytes of a file as text: a node's log can grow large, its tail is enough.
    private static func readEnd(of path: String, bytes: UInt64) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let size = try? handle.seekToEnd() else { return nil }
        try? handle.seek(toOffset: size > bytes ? size - bytes : 0)
        guard let data = try? handle.readToEnd() else { return "" }
        return String(decoding: data, as: UTF8.self)
    }

    /// Prints what a person needs to see when a test on this cluster fails.
    func report(failure: any Error) {
        var text = "=== cluster test failed: \(failure)\n=== directory \(directory)\n"
        for id in ids {
            let running = isRunning(id) ? "running" : exitStatus(id).map { "ended, \($0)" } ?? "never started"
            text += "member \(id): \(running), http \(member(id).httpAddress), listen \(member(id).listenAddress)\n"
            text += logTail(id) + "\n"
        }
        Self.printToStandardError(text)
    }
}

extension Cluster {
    /// Whether `gallocy node --help` describes a `node` subcommand: the gate for tests that need
    /// real members, so that they wait for the subcommand rather than fail before it exists.
    /// (ArgumentParser answers an unknown subcommand's `--help` with the root help and status 0, so
    /// the text is what tells.) Decided once per test run.
    static let nodeCommandAvailable: Bool = {
        guard let executable = try? gallocyExecutable() else { return false }
        let directory = "/tmp/gallocy-probe-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        guard
            let process = try? ChildProcess.spawn(
                executable: executable, arguments: ["node", "--help"],
                standardOutput: "\(directory)/out", standardError: "\(directory)/err")
        else { return false }
        guard process.wait(timeout: .seconds(30)) == .exited(0) else {
            process.killAndReap()
            return false
        }
        let help = (try? String(contentsOfFile: "\(directory)/out", encoding: .utf8)) ?? ""
        return help.contains("gallocy node")
    }()
}
