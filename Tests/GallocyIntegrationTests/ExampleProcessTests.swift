import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// `gallocy example counter|jacobi|matmul` on three real processes, one of them killed with
/// SIGKILL while the job runs and started again with the same flags: every process must still
/// print `"ok": true` and exit 0 (CONTRACT.md 1.4). Sizes are small: the point is the crash and
/// the resumption, not the arithmetic.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct ExampleProcessTests {
    /// Runs `example` on three members; once they have printed `killAfter` progress lines
    /// together, kills member `victim`, waits a moment and starts it again. Returns every member's JSON line.
    static func runWithCrash(
        _ example: String, _ flags: [String], victim: Int, killAfter: Int
    ) async throws -> [Int: [String: JSONValue]] {
        var options = Cluster.Options(size: 3, proxied: false)
        options.command = ["example", example]
        options.heapSize = "32M"
        options.logLevel = "warning"
        options.extraArguments = flags
        return try await Cluster.run(options) { cluster in
            try await eventually("the members report \(killAfter) progress lines", timeout: .seconds(60)) {
                let lines = cluster.ids.map { id in
                    let text =
                        (try? String(contentsOfFile: cluster.member(id).standardErrorPath, encoding: .utf8)) ?? ""
                    return text.split(separator: "\n").filter { $0.hasPrefix("progress: ") }.count
                }
                return lines.reduce(0, +) >= killAfter
            }
            #expect(cluster.kill(victim) == .signaled(SIGKILL))
            try await Task.sleep(for: .milliseconds(300))
            try cluster.start(victim)
            try await eventually("all three processes exit", timeout: .seconds(90)) {
                cluster.ids.allSatisfy { !cluster.isRunning($0) }
            }
            var lines: [Int: [String: JSONValue]] = [:]
            for id in cluster.ids {
                let status = cluster.exitStatus(id)
                try #require(
                    status == .exited(0), "member \(id): \(String(describing: status))\n\(cluster.logTail(id))")
                let out = (try? String(contentsOfFile: cluster.member(id).standardOutputPath, encoding: .utf8)) ?? ""
                let line = try #require(
                    out.split(separator: "\n").last(where: { $0.hasPrefix("{") }), "member \(id) printed no JSON line")
                let value = try JSONDecoder().decode(JSONValue.self, from: Data(line.utf8))
                guard case .object(let object) = value else {
                    throw TestSupportError(.process, "not an object: \(line)")
                }
                #expect(object["example"]?.string == example)
                #expect(object["ok"] == .bool(true), "member \(id): \(line)")
                lines[id] = object
            }
            return lines
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func counterReachesItsTargetAlthoughAMemberIsKilled() async throws {
        let lines = try await Self.runWithCrash("counter", ["--target", "60"], victim: 2, killAfter: 3)
        for line in lines.values { #expect(line["value"]?.unsigned == 60 && line["sum_of_counts"]?.unsigned == 60) }
    }

    @Test(.timeLimit(.minutes(2)))
    func jacobiGridIsBitExactAfterAMemberResumes() async throws {
        let lines = try await Self.runWithCrash(
            "jacobi", ["--rows", "40", "--cols", "48", "--iterations", "40"], victim: 3, killAfter: 6)
        // The victim resumed from the progress it had published (not from scratch), and everyone
        // ended with the same grid.
        #expect((lines[3]?["resumed_at_iteration"]?.unsigned ?? 0) > 0, "\(lines[3] ?? [:])")
        #expect(Set(lines.values.map { $0["checksum"] }).count == 1)
    }

    @Test(.timeLimit(.minutes(2)))
    func matmulProductIsExactAfterAMemberResumes() async throws {
        let lines = try await Self.runWithCrash(
            "matmul", ["--size", "96", "--rows-per-task", "4"], victim: 1, killAfter: 2)
        #expect(Set(lines.values.map { $0["checksum"] }).count == 1)
        for line in lines.values { #expect(line["tasks_not_done"]?.unsigned == 0) }
    }
}

/// `gallocy demo` end to end (small sizes through its hidden flags), and its cleanup on Ctrl-C.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct DemoCommandTests {
    static func spawnDemo(_ arguments: [String], in directory: String) throws -> ChildProcess {
        try ChildProcess.spawn(
            executable: try Cluster.gallocyExecutable(), arguments: ["demo"] + arguments,
            standardOutput: directory + "/demo.out", standardError: directory + "/demo.err")
    }

    static func makeDirectory() throws -> String {
        let path = "/tmp/gallocy-demo-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    @Test(.timeLimit(.minutes(2)))
    func demoRunsToSuccessAndRemovesItsDirectory() async throws {
        let directory = try Self.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let demo = try Self.spawnDemo(["--iterations", "30", "--grid", "40", "--target", "40"], in: directory)
        defer { demo.killAndReap() }
        let status = demo.wait(timeout: .seconds(100))
        let out = (try? String(contentsOfFile: directory + "/demo.out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: directory + "/demo.err", encoding: .utf8)) ?? ""
        #expect(status == .exited(0), "\(String(describing: status))\n\(out)\n\(err)")
        #expect(out.contains("Success"), "\(out)")
        #expect(out.contains("killed member"), "\(out)")
        #expect(out.contains("Identical"), "\(out)")
        let work = try #require(Self.workingDirectory(in: out))
        #expect(!FileManager.default.fileExists(atPath: work), "\(work) is left behind")
    }

    @Test(.timeLimit(.minutes(2)))
    func ctrlCStopsTheMembersAndRemovesTheDirectory() async throws {
        let directory = try Self.makeDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let demo = try Self.spawnDemo([], in: directory)
        defer { demo.killAndReap() }
        var out = ""
        try await eventually("the demo's members elect a leader", timeout: .seconds(60)) {
            out = (try? String(contentsOfFile: directory + "/demo.out", encoding: .utf8)) ?? ""
            return out.contains("Raft leader")
        }
        // Three members started; on a slow machine the demo may already have killed and
        // restarted one (a fourth pid): every pid it printed must be gone after Ctrl-C.
        let pids = Self.memberPids(in: out)
        #expect(pids.count >= 3, "\(out)")
        demo.send(SIGINT)
        let status = demo.wait(timeout: .seconds(30))
        #expect(status == .exited(130), "\(String(describing: status))")
        for pid in pids { #expect(kill(pid, 0) != 0, "member pid \(pid) survived the demo") }
        let work = try #require(Self.workingDirectory(in: out))
        #expect(!FileManager.default.fileExists(atPath: work), "\(work) is left behind")
    }

    static func workingDirectory(in output: String) -> String? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("Working directory: ") }) else {
            return nil
        }
        let rest = line.split(separator: ":", maxSplits: 1)[1].trimmingCharacters(in: .whitespaces)
        return rest.split(separator: " ").first.map(String.init)
    }

    static func memberPids(in output: String) -> [pid_t] {
        var pids: [pid_t] = []
        var rest = Substring(output)
        while let range = rest.range(of: "(pid ") {
            rest = rest[range.upperBound...]
            if let pid = pid_t(rest.prefix(while: \.isNumber)) { pids.append(pid) }
        }
        return pids
    }
}
