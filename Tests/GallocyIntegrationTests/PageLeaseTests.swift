import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Sequential memory (page leases, issue 6) across real processes: `gallocy internal lease-stress`
/// members on loopback hammer sequential-mode words without locks. The histories they record must
/// be sequentially consistent (`SCHistoryChecker`), every member must end with the same values and
/// the same state machine digest, and a holder that is killed or stopped blocks the others for at
/// most about one lease. Serialized: two cores.
@Suite(.serialized)
struct PageLeaseTests {
    /// Members started together as `gallocy internal lease-stress`, each with its own data
    /// directory and ports; outputs in `directory`.
    final class Group: Sendable {
        let executable: String
        let directory: String
        let count: Int
        let processes: Mutex<[Int: ChildProcess]> = Mutex([:])

        init(count: Int) throws {
            executable = try Cluster.gallocyExecutable()
            let base = ProcessInfo.processInfo.environment["TMPDIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/tmp"
            var template = Array("\(base)/gallocy-lease-XXXXXX".utf8CString)
            let made = template.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.flatMap { mkdtemp($0) } }
            guard let made else { throw TestSupportError(.file, "mkdtemp failed") }
            directory = String(cString: made)
            self.count = count
        }

        /// Starts every member with the workload arguments `extra(id)`.
        func start(_ extra: (Int) -> [String]) throws {
            let ports = try FreePorts.take(2 * count)
            for id in 1...count {
                var arguments = [
                    "internal", "lease-stress", "--id", "\(id)", "--data", "\(directory)/n\(id)",
                    "--listen", "\(Loopback.host):\(ports[id - 1])", "--http", "\(Loopback.host):\(ports[count + id - 1])",
                    "--heap-size", "16M", "--log-level", "warning",
                ]
                for peer in 1...count where peer != id {
                    arguments += ["--peer", "\(peer)=\(Loopback.host):\(ports[peer - 1])"]
                }
                arguments += extra(id)
                let process = try ChildProcess.spawn(
                    executable: executable, arguments: arguments, standardOutput: "\(directory)/n\(id).out",
                    standardError: "\(directory)/n\(id).err")
                processes.withLock { $0[id] = process }
            }
        }

        func process(_ id: Int) -> ChildProcess { processes.withLock { $0[id]! } }

        func output(_ id: Int) -> String { (try? String(contentsOfFile: "\(directory)/n\(id).out", encoding: .utf8)) ?? "" }

        /// The JSON line a member printed at the end.
        func result(_ id: Int) throws -> [String: Any] {
            let line = output(id).split(separator: "\n").last { $0.hasPrefix("{") } ?? ""
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TestSupportError(.process, "member \(id) printed no result: \(output(id))")
            }
            return object
        }

        /// Waits for every member to exit; nil for one still running at the deadline.
        func waitAll(timeout: Duration) -> [Int: ChildProcess.ExitStatus?] {
            var statuses: [Int: ChildProcess.ExitStatus?] = [:]
            let deadline = ContinuousClock.now.advanced(by: timeout)
            for id in 1...count {
                let left = ContinuousClock.now.duration(to: deadline)
                statuses[id] = process(id).wait(timeout: max(left, .milliseconds(1)))
            }
            return statuses
        }

        /// `gallocy log replay --digest` of a member's data directory.
        func digest(_ id: Int) throws -> String {
            let out = "\(directory)/n\(id).digest"
            let process = try ChildProcess.spawn(
                executable: executable, arguments: ["log", "replay", "--data", "\(directory)/n\(id)", "--digest"],
                standardOutput: out, standardError: out + ".err")
            _ = process.wait(timeout: .seconds(120))
            return ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        }

        func history(_ id: Int) throws -> [SCHistoryChecker.Event] {
            try SCHistoryChecker.parse(String(contentsOfFile: "\(directory)/h\(id)", encoding: .utf8))
        }

        func cleanUp() {
            for id in 1...count { process(id).killAndReap() }
            if ProcessInfo.processInfo.environment["GALLOCY_KEEP_TEST_DIRS"] != "1" {
                try? FileManager.default.removeItem(atPath: directory)
            }
        }
    }

    func runWriters(_ count: Int, iterations: Int, align: Bool) throws {
        let group = try Group(count: count)
        defer { group.cleanUp() }
        try group.start { id in
            ["--workload", "sc", "--writers", "\(count)", "--iterations", "\(iterations)", "--lease-ms", "2000",
             "--history", "\(group.directory)/h\(id)"] + (align ? [] : ["--no-align"])
        }
        let statuses = group.waitAll(timeout: .seconds(300))
        for id in 1...count {
            #expect(statuses[id] == .some(.exited(0)), "member \(id): \(group.output(id))")
        }
        var histories: [Int: [SCHistoryChecker.Event]] = [:]
        for id in 1...count {
            let result = try group.result(id)
            #expect(result["ok"] as? Bool == true, "member \(id): \(result)")
            let final = result["final"] as? [Int] ?? []
            #expect(final == Array(repeating: iterations, count: 2 * count), "member \(id) final values \(final)")
            histories[id] = try group.history(id)
            #expect(histories[id]?.count == iterations * 2 * count, "member \(id) history")
            print("writer \(id): \(result)")
        }
        let verdict = SCHistoryChecker.check(histories)
        #expect(verdict.isSequentiallyConsistent, "\(verdict.description)")
        print("\(count) writers, \(iterations) iterations, align \(align): \(verdict.description)")
        let digests = try (1...count).map { try group.digest($0) }
        #expect(Set(digests).count == 1 && !digests[0].isEmpty, "digests \(digests)")
    }

    @Test func twoWritersWithoutLocksAreSequentiallyConsistent() throws {
        try runWriters(2, iterations: 200, align: true)
    }

    @Test func threeWritersWithoutLocksAreSequentiallyConsistent() throws {
        try runWriters(3, iterations: 120, align: true)
    }

    @Test func threeWritersOutOfStepAreSequentiallyConsistent() throws {
        try runWriters(3, iterations: 120, align: false)
    }

    /// Member 3 writes one page in a tight loop (it holds the lease nearly all the time); members
    /// 1 and 2 write it every 20 ms and time each write. Once 3 holds the page, `disturb` kills or
    /// stops it: the others' writes must never wait much longer than the lease.
    func holderStopsAndOthersGoOn(lease: Int, disturb: (Group) -> Void) throws -> [Double] {
        let group = try Group(count: 3)
        defer { group.cleanUp() }
        try group.start { id in
            ["--workload", "hold", "--holder-id", "3", "--lease-ms", "\(lease)", "--seconds", id == 3 ? "25" : "14"]
        }
        let deadline = ContinuousClock.now.advanced(by: .seconds(120))
        while !group.output(3).contains("holding") {
            guard ContinuousClock.now < deadline, group.process(3).isRunning else {
                Issue.record("member 3 never held the page: \(group.output(3))")
                return []
            }
            usleep(20_000)
        }
        usleep(1_000_000)  // the others are writing too by now
        disturb(group)
        var maxima: [Double] = []
        for id in 1...2 {
            let status = group.process(id).wait(timeout: .seconds(120))
            #expect(status == .exited(0), "member \(id): \(group.output(id))")
            let result = try group.result(id)
            let writes = result["writes"] as? Int ?? 0
            let maximum = result["max_write_ms"] as? Double ?? .infinity
            #expect(writes > 100, "member \(id) wrote \(writes) times")
            maxima.append(maximum)
            print("member \(id): \(result)")
        }
        return maxima
    }

    @Test func aKilledHolderBlocksOthersNoLongerThanTheLease() throws {
        let lease = 1500
        let maxima = try holderStopsAndOthersGoOn(lease: lease) { group in group.process(3).send(SIGKILL) }
        // Lease + the leader's check (200 ms) + a commit; + an election if the holder led.
        for maximum in maxima { #expect(maximum < Double(lease + 4000), "a write waited \(maximum) ms") }
        print("killed holder: longest writes \(maxima) ms (lease \(lease) ms)")
    }

    @Test func aStoppedHolderBlocksOthersNoLongerThanTheLease() throws {
        let lease = 1500
        let maxima = try holderStopsAndOthersGoOn(lease: lease) { group in
            group.process(3).send(SIGSTOP)
            usleep(8_000_000)
            group.process(3).send(SIGCONT)
        }
        for maximum in maxima { #expect(maximum < Double(lease + 4000), "a write waited \(maximum) ms") }
        print("stopped holder: longest writes \(maxima) ms (lease \(lease) ms)")
    }

    @Test func theCheckerFindsAStoreBufferingViolation() {
        typealias E = SCHistoryChecker.Event
        // Dekker: both write their flag and read the other's as 0: no SC order exists.
        let bad: [Int: [E]] = [
            1: [E(write: true, word: "A1", value: 1), E(write: false, word: "A2", value: 0)],
            2: [E(write: true, word: "A2", value: 1), E(write: false, word: "A1", value: 0)],
        ]
        #expect(!SCHistoryChecker.check(bad).isSequentiallyConsistent)
        let good: [Int: [E]] = [
            1: [E(write: true, word: "A1", value: 1), E(write: false, word: "A2", value: 0)],
            2: [E(write: true, word: "A2", value: 1), E(write: false, word: "A1", value: 1)],
        ]
        #expect(SCHistoryChecker.check(good).isSequentiallyConsistent)
        // A read of a value never written, or going back in time, is caught too.
        let backwards: [Int: [E]] = [
            1: [E(write: true, word: "A1", value: 1), E(write: true, word: "A1", value: 2)],
            2: [E(write: false, word: "A1", value: 2), E(write: false, word: "A1", value: 1)],
        ]
        #expect(!SCHistoryChecker.check(backwards).isSequentiallyConsistent)
    }
}

/// Decides whether a history of single-writer words is sequentially consistent: each word is
/// written by one process with the values 1, 2, 3, … in program order and starts at 0. A total
/// order of all events that respects program order and in which every read returns the latest
/// write exists if and only if the graph of program order, reads-from (write v → read of v) and
/// from-reads (read of v → write v + 1) has no cycle.
enum SCHistoryChecker {
    struct Event: Hashable {
        var write: Bool
        var word: String
        var value: UInt64
    }

    struct Verdict: CustomStringConvertible {
        var events: Int
        var ordered: Int
        var problem: String?
        var isSequentiallyConsistent: Bool { problem == nil && ordered == events }
        var description: String {
            if let problem { return "NOT sequentially consistent: \(problem)" }
            return ordered == events
                ? "sequentially consistent (\(events) events ordered)"
                : "NOT sequentially consistent: a cycle among \(events - ordered) of \(events) events"
        }
    }

    /// Lines `W|R A|B owner value`.
    static func parse(_ text: String) throws -> [Event] {
        try text.split(separator: "\n").map { line in
            let parts = line.split(separator: " ")
            guard parts.count == 4, let value = UInt64(parts[3]) else {
                throw TestSupportError(.process, "bad history line \(line)")
            }
            return Event(write: parts[0] == "W", word: "\(parts[1])\(parts[2])", value: value)
        }
    }

    static func check(_ histories: [Int: [Event]]) -> Verdict {
        struct Node: Hashable {
            var process: Int
            var index: Int
        }
        var writes: [String: [UInt64: Node]] = [:]
        var total = 0
        for (process, events) in histories {
            for (index, event) in events.enumerated() where event.write {
                writes[event.word, default: [:]][event.value] = Node(process: process, index: index)
            }
            total += events.count
        }
        var edges: [Node: [Node]] = [:]
        var indegree: [Node: Int] = [:]
        func edge(_ a: Node, _ b: Node) {
            edges[a, default: []].append(b)
            indegree[b, default: 0] += 1
        }
        for (process, events) in histories {
            for (index, event) in events.enumerated() {
                let node = Node(process: process, index: index)
                if index > 0 { edge(Node(process: process, index: index - 1), node) }
                guard !event.write else { continue }
                if event.value > 0 {
                    guard let source = writes[event.word]?[event.value] else {
                        return Verdict(events: total, ordered: 0, problem: "\(event.word) read \(event.value), never written")
                    }
                    edge(source, node)
                }
                if let next = writes[event.word]?[event.value + 1] { edge(node, next) }
            }
        }
        var ready = histories.compactMap { process, events in
            events.isEmpty || indegree[Node(process: process, index: 0), default: 0] > 0
                ? nil : Node(process: process, index: 0)
        }
        var ordered = 0
        while let node = ready.popLast() {
            ordered += 1
            for next in edges[node] ?? [] {
                indegree[next, default: 0] -= 1
                if indegree[next] == 0 { ready.append(next) }
            }
        }
        return Verdict(events: total, ordered: ordered, problem: nil)
    }
}
