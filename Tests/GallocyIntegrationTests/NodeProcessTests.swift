import Foundation
import Testing

/// `gallocy node` as a process: graceful shutdown, recovery of a single member, refusals with a
/// clear first line (bad flags, conflicting settings).
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct NodeProcessTests {
    /// Runs `gallocy` with `arguments` to completion; returns its status and stderr.
    static func runToEnd(_ cluster: Cluster, _ arguments: [String], name: String) throws -> (ChildProcess.ExitStatus?, String) {
        let errPath = cluster.directory + "/\(name).err"
        let child = try ChildProcess.spawn(
            executable: cluster.executable, arguments: arguments, standardOutput: cluster.directory + "/\(name).out",
            standardError: errPath)
        let status = child.wait(timeout: .seconds(20)) ?? child.killAndReap()
        return (status, (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    @Test(.timeLimit(.minutes(2)))
    func sigtermExitsZeroAndTheMemberRecoversItsData() async throws {
        var options = Cluster.Options(size: 1, proxied: false)
        options.heapSize = "64M"
        try await Cluster.run(options) { cluster in
            _ = try await cluster.waitForLeader(timeout: .seconds(30))
            let block = try await cluster.client(1).alloc(size: 16)
            _ = try await cluster.client(1).put(block, Array("survives SIGTERM".utf8))
            #expect(cluster.terminate(1) == .exited(0))
            try cluster.start(1)
            _ = try await cluster.waitForLeader(timeout: .seconds(30))
            #expect(try await cluster.client(1).get(block, length: 16) == Array("survives SIGTERM".utf8))

            // Same directory, another heap size: refused, with the reason on the first line.
            _ = cluster.terminate(1)
            var arguments = cluster.member(1).arguments
            if let k = arguments.firstIndex(of: "--heap-size") { arguments[k + 1] = "128M" }
            let (status, stderr) = try Self.runToEnd(cluster, arguments, name: "conflict")
            #expect(status != .exited(0), "\(String(describing: status))")
            #expect(stderr.split(separator: "\n").first?.contains("heap size") == true, "\(stderr)")
        }
    }

    @Test(.timeLimit(.minutes(1)))
    func badFlagsExitNonZeroNamingTheProblem() async throws {
        let cluster = try Cluster(Cluster.Options(size: 1, proxied: false))
        defer { cluster.shutdown() }
        let base = ["node", "--data", cluster.directory + "/x", "--listen", "127.0.0.1:1", "--http", "127.0.0.1:2"]
        let cases: [([String], String)] = [
            (base + ["--id", "0"], "--id"),
            (base + ["--id", "1", "--peer", "2"], "--peer"),
            (base + ["--id", "1", "--heap-size", "12Q"], "--heap-size"),
            (base + ["--id", "1", "--log-level", "loud"], "--log-level"),
            (["node", "--id", "1", "--data", cluster.directory + "/x", "--listen", "nope", "--http", "127.0.0.1:2"], "--listen"),
        ]
        for (k, (arguments, flag)) in cases.enumerated() {
            let (status, stderr) = try Self.runToEnd(cluster, arguments, name: "bad\(k)")
            #expect(status != .exited(0) && status != nil, "\(arguments): \(String(describing: status))")
            if case .signaled = status { Issue.record("\(arguments) crashed: \(stderr)") }
            let first = stderr.split(separator: "\n").first.map(String.init) ?? ""
            #expect(first.contains(flag), "\(arguments): first line \(first)")
        }
    }
}

/// `--secret-file`: members holding the same secret form a cluster; a member with another secret
/// is refused by its peers and never hears from the leader.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct NodeSecretTests {
    @Test(.timeLimit(.minutes(2)))
    func membersWithTheSecretWorkAndAMemberWithAnotherIsRefused() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gallocy-secret-\(getpid())-\(UInt32.random(in: 0 ... .max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let secret = directory.appendingPathComponent("secret").path
        let other = directory.appendingPathComponent("other").path
        try "the cluster secret\n".write(toFile: secret, atomically: true, encoding: .utf8)
        try "another secret\n".write(toFile: other, atomically: true, encoding: .utf8)
        var options = Cluster.Options()
        options.extraArguments = ["--secret-file", secret]
        try await Cluster.run(options) { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let block = try await cluster.client(leader).alloc(size: 8)
            _ = try await cluster.client(leader).put(block, Array("secret!!".utf8))
            let outsider = cluster.ids.first { $0 != leader } ?? 1
            _ = cluster.kill(outsider)
            var arguments = cluster.member(outsider).arguments
            if let k = arguments.lastIndex(of: "--secret-file") { arguments[k + 1] = other }
            let child = try ChildProcess.spawn(
                executable: cluster.executable, arguments: arguments,
                standardOutput: cluster.directory + "/outsider.out", standardError: cluster.directory + "/outsider.err")
            defer { _ = child.killAndReap() }
            // The two members with the secret still commit; the outsider never learns a leader.
            _ = try await cluster.client(leader).put(block, Array("majority".utf8))
            try await Task.sleep(for: .seconds(3))
            let status = try await cluster.client(outsider).status()
            #expect(status.leader == nil, "\(status)")
            #expect(status.appliedIndex < (try await cluster.client(leader).status().appliedIndex))
        }
    }
}

/// A member whose explicit `--heap-size` differs from the cluster's settings stops (exit 1) when
/// it learns them from the leader.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct NodeSettingsConflictTests {
    @Test(.timeLimit(.minutes(2)))
    func joiningMemberWithAnotherHeapSizeStops() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            _ = try await cluster.client(leader).alloc(size: 8)  // the settings are applied
            let newID = try cluster.addJoiningMember()
            let arguments = cluster.member(newID).arguments + ["--heap-size", "128M"]
            let errPath = cluster.directory + "/conflict.err"
            let child = try ChildProcess.spawn(
                executable: cluster.executable, arguments: arguments, standardOutput: cluster.directory + "/conflict.out",
                standardError: errPath)
            defer { _ = child.killAndReap() }
            let adding = Task { try? await cluster.client(leader).addMember(id: newID, peer: cluster.peerAddressForMembership(newID)) }
            let status = child.wait(timeout: .seconds(30))
            adding.cancel()
            #expect(status == .exited(1), "\(String(describing: status))")
            let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            #expect(stderr.contains("heap size"), "\(stderr.suffix(500))")
        }
    }
}
