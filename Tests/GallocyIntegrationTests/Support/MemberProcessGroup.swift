import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// Processes that are members of one cluster and run an application job each (`gallocy internal
/// torn-page`, `gallocy internal lease-expiry`, `gallocy example ...`), on loopback in a
/// temporary directory, without proxies. Each is started with its own command and the flags of
/// `gallocy node` (id, data directory, ports, every peer), and reports JSON lines on stdout.
///
/// Use `MemberProcessGroup.run(size:_:)`: it prints the tail of every member's output if the body
/// throws, and always kills the processes and removes the directory.
final class MemberProcessGroup: Sendable {
    let executable: String
    let directory: String
    let size: Int
    private let ports: [UInt16]
    private let processes = Mutex<[Int: ChildProcess]>([:])

    init(size: Int) throws {
        self.size = size
        executable = try Cluster.gallocyExecutable()
        let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
        var template = Array("\(base)/gallocy-mp-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
        guard let created = made else { throw TestSupportError(.file, "mkdtemp in \(base): \(Loopback.errorText())") }
        directory = String(cString: created)
        ports = try FreePorts.take(2 * size)
    }

    deinit { shutdown() }

    static func run<Result: Sendable>(size: Int, _ body: (MemberProcessGroup) async throws -> Result) async throws
        -> Result
    {
        let group = try MemberProcessGroup(size: size)
        do {
            let result = try await body(group)
            group.shutdown()
            return result
        } catch {
            Cluster.printToStandardError("=== member process test failed: \(error)\n" + group.tails())
            group.shutdown()
            throw error
        }
    }

    func listenPort(_ id: Int) -> UInt16 { ports[2 * (id - 1)] }
    func httpPort(_ id: Int) -> UInt16 { ports[2 * (id - 1) + 1] }
    func standardOutputPath(_ id: Int) -> String { "\(directory)/m\(id).stdout" }
    func standardErrorPath(_ id: Int) -> String { "\(directory)/m\(id).stderr" }

    /// The flags of `gallocy node` for member `id`.
    func nodeFlags(_ id: Int, logLevel: String = "info") -> [String] {
        var flags = [
            "--id", "\(id)", "--data", "\(directory)/m\(id)", "--listen", "\(Loopback.host):\(listenPort(id))",
            "--http", "\(Loopback.host):\(httpPort(id))", "--log-level", logLevel,
        ]
        for peer in 1...size where peer != id { flags += ["--peer", "\(peer)=\(Loopback.host):\(listenPort(peer))"] }
        return flags
    }

    /// Starts member `id` as `gallocy <command...> <node flags>`.
    func start(_ id: Int, command: [String]) throws {
        let process = try ChildProcess.spawn(
            executable: executable, arguments: command + nodeFlags(id), standardOutput: standardOutputPath(id),
            standardError: standardErrorPath(id))
        processes.withLock { $0[id] = process }
    }

    func process(_ id: Int) -> ChildProcess? { processes.withLock { $0[id] } }

    /// The JSON objects member `id` printed so far (lines that do not parse are skipped).
    func lines(_ id: Int) -> [JSONValue] {
        guard let text = try? String(contentsOfFile: standardOutputPath(id), encoding: .utf8) else { return [] }
        return text.split(separator: "\n").compactMap { line in
            try? JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
        }
    }

    /// The first line of member `id` whose "event" is `event`, waiting up to `timeout`. Fails at
    /// once if the process ended without printing it.
    func waitForEvent(_ id: Int, _ event: String, timeout: Duration) async throws -> JSONValue {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        while true {
            if let line = lines(id).first(where: { $0["event"]?.string == event }) { return line }
            if let error = lines(id).first(where: { $0["event"]?.string == "error" }) {
                throw TestSupportError(.process, "member \(id) reported an error before \(event): \(error)")
            }
            if let status = process(id)?.poll() {
                throw TestSupportError(.process, "member \(id) ended (\(status)) without printing \(event)")
            }
            if ContinuousClock.now >= deadline {
                throw TestSupportError(.timeout, "member \(id) printed no \(event) within \(timeout)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Waits until every member's process ended (at most `timeout` in all); their statuses by id.
    func waitForExit(timeout: Duration) async throws -> [Int: ChildProcess.ExitStatus] {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        var statuses: [Int: ChildProcess.ExitStatus] = [:]
        for id in 1...size {
            guard let process = process(id) else { continue }
            while true {
                if let status = process.poll() {
                    statuses[id] = status
                    break
                }
                if ContinuousClock.now >= deadline {
                    throw TestSupportError(.timeout, "member \(id) still runs after \(timeout)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        return statuses
    }

    /// Every member's stdout and the end of its stderr.
    func tails(lines count: Int = 30) -> String {
        var text = "=== directory \(directory)\n"
        for id in 1...size {
            let state = process(id).map { $0.poll().map { "ended, \($0)" } ?? "running" } ?? "never started"
            let out = (try? String(contentsOfFile: standardOutputPath(id), encoding: .utf8)) ?? "(none)"
            let err = (try? String(contentsOfFile: standardErrorPath(id), encoding: .utf8)) ?? "(none)"
            let errTail = err.split(separator: "\n", omittingEmptySubsequences: false).suffix(count).joined(separator: "\n")
            text += "--- member \(id): \(state)\n--- stdout\n\(out)\n--- stderr, last \(count) lines\n\(errTail)\n"
        }
        return text
    }

    /// Kills every process and removes the directory (kept with GALLOCY_KEEP_TEST_DIRS=1). Idempotent.
    func shutdown() {
        let all = processes.withLock { processes in
            defer { processes = [:] }
            return Array(processes.values)
        }
        for process in all { process.killAndReap() }
        if ProcessInfo.processInfo.environment["GALLOCY_KEEP_TEST_DIRS"] == "1" {
            if !all.isEmpty { Cluster.printToStandardError("member process directory kept: \(directory)") }
        } else {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }
}
