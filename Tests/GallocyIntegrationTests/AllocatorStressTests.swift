import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The layered allocator (docs/allocator.md) on three member processes running
/// `gallocy internal alloc-stress`: threads allocate and free blocks of random sizes, stamped, with
/// frees across members through the heap; at the end each member checks from the heap that no two
/// live blocks overlap, that the stamps are intact and that blocks were reused.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct AllocatorStressTests {
    /// Three `alloc-stress` processes on the ports and directories of a (not started) test cluster.
    final class StressRun: Sendable {
        let cluster: Cluster
        let extra: [String]
        private let processes = Mutex<[Int: ChildProcess]>([:])

        init(extra: [String]) throws {
            var options = Cluster.Options(size: 3, proxied: false)
            options.logLevel = "warning"
            options.heapSize = "256M"
            cluster = try Cluster(options)
            self.extra = extra
        }

        func start(_ id: Int) throws {
            let member = cluster.member(id)
            let arguments = ["internal", "alloc-stress"] + member.arguments.dropFirst() + extra
            let process = try ChildProcess.spawn(
                executable: cluster.executable, arguments: arguments, standardOutput: member.standardOutputPath,
                standardError: member.standardErrorPath)
            processes.withLock { $0[id] = process }
        }

        func kill(_ id: Int) -> ChildProcess.ExitStatus? { processes.withLock { $0[id] }?.killAndReap() }

        func stderr(_ id: Int) -> String {
            (try? String(contentsOfFile: cluster.member(id).standardErrorPath, encoding: .utf8)) ?? ""
        }

        /// Waits for every process to end; returns each one's status and last stdout line as JSON.
        func finish(timeout: Duration) throws -> [Int: (ChildProcess.ExitStatus?, [String: Any])] {
            let deadline = ContinuousClock.now.advanced(by: timeout)
            var results: [Int: (ChildProcess.ExitStatus?, [String: Any])] = [:]
            for id in cluster.ids {
                let process = processes.withLock { $0[id] }
                let left = deadline - ContinuousClock.now
                let status = process?.wait(timeout: max(left, .seconds(1))) ?? process?.killAndReap()
                let output = (try? String(contentsOfFile: cluster.member(id).standardOutputPath, encoding: .utf8)) ?? ""
                let last = output.split(separator: "\n").last.map(String.init) ?? ""
                let json = (try? JSONSerialization.jsonObject(with: Data(last.utf8))) as? [String: Any] ?? [:]
                results[id] = (status, json)
            }
            return results
        }

        func shutdown() {
            for process in processes.withLock({ Array($0.values) }) { process.killAndReap() }
            cluster.shutdown()
        }

        func report() {
            var text = "=== alloc-stress failed; directory \(cluster.directory)\n"
            for id in cluster.ids {
                text += "--- member \(id) stderr (tail)\n" + String(stderr(id).suffix(3000)) + "\n"
            }
            FileHandle.standardError.write(Data(text.utf8))
        }
    }

    static func int(_ json: [String: Any], _ key: String) -> Int { (json[key] as? NSNumber)?.intValue ?? -1 }

    /// What every member's final check must say.
    static func expectSound(_ results: [Int: (ChildProcess.ExitStatus?, [String: Any])], leaksAllowed: Bool) {
        for (id, (status, json)) in results.sorted(by: { $0.key < $1.key }) {
            #expect(status == .exited(0), "member \(id): \(String(describing: status)) \(json)")
            #expect(json["ok"] as? Bool == true, "member \(id): \(json)")
            #expect(int(json, "overlaps") == 0, "member \(id): \(json)")
            #expect(int(json, "bad_stamps") == 0, "member \(id): \(json)")
            #expect(int(json, "live_not_allocated") == 0, "member \(id): \(json)")
            #expect(int(json, "live_blocks") > 100, "member \(id): \(json)")
            #expect(int(json, "remote_frees") > 0, "member \(id): \(json)")
            if !leaksAllowed { #expect(int(json, "leaked_small_blocks") == 0, "member \(id): \(json)") }
            let reuse = (json["arena_bytes_per_allocated_byte"] as? NSNumber)?.doubleValue ?? 1
            #expect(reuse < 0.5, "member \(id): arenas take \(reuse) of the bytes allocated in total")
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func threeMembersWithThreadsNeverOverlapAndReuseMemory() async throws {
        let run = try StressRun(extra: ["--rounds", "10", "--threads", "3", "--operations", "1000"])
        defer { run.shutdown() }
        for id in run.cluster.ids { try run.start(id) }
        let results = try run.finish(timeout: .seconds(55))
        Self.expectSound(results, leaksAllowed: false)
        if results.values.contains(where: { $0.1["ok"] as? Bool != true }) { run.report() }
        // Every member's view of the heap is the same at the end.
        let views = Set(results.values.map { "\(Self.int($0.1, "live_blocks")) \(Self.int($0.1, "allocated_small_blocks"))" })
        #expect(views.count == 1, "\(views)")
    }

    @Test(.timeLimit(.minutes(2)))
    func aMemberKilledMidwayRestartsAndTheAllocatorStaysConsistent() async throws {
        let run = try StressRun(extra: ["--rounds", "10", "--threads", "3", "--operations", "1000"])
        defer { run.shutdown() }
        for id in run.cluster.ids { try run.start(id) }
        // Kill member 2 a little after it finished round 3's allocations: in phase B (remote frees
        // committed one by one), or early in round 4's phase A (allocations not yet published).
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(40))
        while !run.stderr(2).contains("round 3 phase A done") {
            try #require(clock.now < deadline, "member 2 never finished round 3's phase A")
            try await Task.sleep(for: .milliseconds(5))
        }
        try await Task.sleep(for: .milliseconds(40))
        #expect(run.kill(2) == .signaled(SIGKILL))
        try run.start(2)
        let results = try run.finish(timeout: .seconds(55))
        if results.values.contains(where: { $0.1["ok"] as? Bool != true }) { run.report() }
        Self.expectSound(results, leaksAllowed: true)
        #expect(results[2]?.1["resumed"] as? Bool == true, "\(String(describing: results[2]?.1))")
    }
}
