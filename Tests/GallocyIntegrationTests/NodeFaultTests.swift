import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Whole-cluster fault tests of `gallocy node` (issue 4): leader crashes, whole-cluster crashes,
/// partitions, catching up by snapshot. Real processes, real sockets, real LMDB. Serialized:
/// this machine has two cores and each test runs a three-member cluster.
@Suite(.serialized, .enabled(if: Cluster.nodeCommandAvailable, "gallocy has no `node` subcommand yet"))
struct NodeFaultTests {
    /// The 8-byte pattern written at slot `i` of a test block.
    static func pattern(_ i: Int) -> [UInt8] { withUnsafeBytes(of: UInt64(0xA5A5_0000_0000 | UInt64(i)).littleEndian, Array.init) }

    /// Reads every acknowledged slot from every member in `ids` and expects the pattern.
    static func expectAcknowledged(
        _ cluster: Cluster, block: UInt64, acknowledged: [Int], ids: [Int]
    ) async throws {
        for id in ids {
            let client = cluster.client(id)
            try await eventually("member \(id) serves reads", timeout: .seconds(30)) {
                _ = try await client.get(block, length: 8)
                return true
            }
            for i in acknowledged {
                let bytes = try await client.get(block + UInt64(8 * i), length: 8)
                #expect(bytes == pattern(i), "member \(id) slot \(i)")
            }
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func killedLeaderIsReplacedAndRejoinsAsFollower() async throws {
        try await Cluster.run { cluster in
            let first = try await cluster.waitForLeader(timeout: .seconds(30))
            let firstTerm = try await cluster.client(first).status().term
            _ = cluster.kill(first)
            let others = cluster.ids.filter { $0 != first }
            let second = try await cluster.waitForLeader(among: others, timeout: .seconds(30))
            #expect(second != first)
            let status = try await cluster.client(second).status()
            #expect(status.term > firstTerm)
            try cluster.start(first)
            try await eventually("the old leader rejoins as a follower of \(second)", timeout: .seconds(30)) {
                let s = try await cluster.client(first).status()
                return s.role == "follower" && s.leader == second
            }
        }
    }

    @Test(.timeLimit(.minutes(4)))
    func acknowledgedWritesSurviveLeaderKillAndWholeClusterRestart() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let block = try await cluster.client(leader).alloc(size: 8 * 200)
            let writer = cluster.ids.first { $0 != leader } ?? leader
            let acked = Acknowledged()
            // A stream of writes through a follower while the leader is killed in the middle.
            let stream = Task {
                for i in 0..<120 {
                    do {
                        _ = try await cluster.client(writer, timeout: .seconds(12)).put(
                            block + UInt64(8 * i), Self.pattern(i))
                        acked.add(i)
                    } catch {
                        // 503/504 or a lost connection: unknown outcome, not acknowledged.
                    }
                }
            }
            try await eventually("some writes acknowledged", timeout: .seconds(30)) { acked.count >= 30 }
            _ = cluster.kill(leader)
            await stream.value
            #expect(acked.count >= 60, "too few writes acknowledged: \(acked.count)")
            try cluster.start(leader)
            try await Self.expectAcknowledged(cluster, block: block, acknowledged: acked.all, ids: cluster.ids)

            // The whole cluster dies at once and comes back from its disks.
            for id in cluster.ids { _ = cluster.kill(id) }
            for id in cluster.ids { try cluster.start(id) }
            _ = try await cluster.waitForLeader(timeout: .seconds(30))
            try await Self.expectAcknowledged(cluster, block: block, acknowledged: acked.all, ids: cluster.ids)
            // Every member holds the same bytes and the same page table rows for the block.
            var images: [[UInt8]] = []
            var rows: [[JSONValue]] = []
            for id in cluster.ids {
                images.append(try await cluster.client(id).get(block, length: 8 * 200))
                rows.append(try await cluster.client(id).pages(from: block, count: 2))
            }
            #expect(Set(images).count == 1, "heap bytes differ between members")
            #expect(Set(rows).count == 1, "page table rows differ between members: \(rows)")
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func minorityNeverAcknowledgesAndConvergesAfterHealing() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let block = try await cluster.client(leader).alloc(size: 64)
            // Cut the leader off: it is the minority.
            cluster.isolate(leader)
            var minorityAcknowledged = false
            do {
                _ = try await cluster.client(leader, timeout: .seconds(12)).put(block, Self.pattern(1))
                minorityAcknowledged = true
            } catch {}
            #expect(!minorityAcknowledged, "an isolated member acknowledged a write")
            let majority = cluster.ids.filter { $0 != leader }
            let newLeader = try await cluster.waitForLeader(among: majority, timeout: .seconds(30))
            _ = try await cluster.client(newLeader).put(block + 8, Self.pattern(2))
            cluster.healAll()
            try await eventually("the old leader converges", timeout: .seconds(30)) {
                try await cluster.client(leader).get(block + 8, length: 8) == Self.pattern(2)
            }
            let digests = try await cluster.client(newLeader).status()
            let old = try await cluster.client(leader).status()
            #expect(old.leader == digests.leader)
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func memberDownDuringSnapshotsCatchesUpBySnapshot() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let down = cluster.ids.first { $0 != leader } ?? 1
            let block = try await cluster.client(leader).alloc(size: 8 * 40)
            _ = try await cluster.client(leader).put(block, Self.pattern(0))
            try await eventually("member \(down) has the first write", timeout: .seconds(20)) {
                try await cluster.client(down).get(block, length: 8) == Self.pattern(0)
            }
            _ = cluster.kill(down)
            // More appends than the leader keeps in flight (256) and the transport queues for a
            // dead peer, one entry each, so that queued appends cannot bring the member back.
            let client = cluster.client(leader)
            for i in 1..<400 { _ = try await client.put(block + UInt64(8 * (i % 40)), Self.pattern(i % 40)) }
            let up = cluster.ids.filter { $0 != down }
            var snapshotIndex: UInt64 = 0
            for id in up { snapshotIndex = max(snapshotIndex, try await cluster.client(id).snapshot()) }
            try cluster.start(down)
            try await eventually("member \(down) installs a snapshot", timeout: .seconds(30)) {
                try await cluster.client(down).status().snapshotIndex >= snapshotIndex
            }
            try await Self.expectAcknowledged(cluster, block: block, acknowledged: Array(0..<40), ids: [down])
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func secondProcessOnTheSameDataDirectoryIsRefused() async throws {
        try await Cluster.run { cluster in
            _ = try await cluster.waitForLeader(timeout: .seconds(30))
            let member = cluster.member(1)
            var arguments = member.arguments
            // Other ports: only the data directory is shared.
            let ports = try FreePorts.take(2)
            for (flag, port) in [("--listen", ports[0]), ("--http", ports[1])] {
                if let k = arguments.firstIndex(of: flag) { arguments[k + 1] = "\(Loopback.host):\(port)" }
            }
            let errPath = cluster.directory + "/second.err"
            let child = try ChildProcess.spawn(
                executable: cluster.executable, arguments: arguments, standardOutput: cluster.directory + "/second.out",
                standardError: errPath)
            let status = child.wait(timeout: .seconds(20))
            #expect(status != nil && status != .exited(0), "\(String(describing: status))")
            let stderr = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
            #expect(stderr.split(separator: "\n").first?.contains("in use by another process") == true, "\(stderr)")
            #expect(try await cluster.client(1).status().id == 1)
        }
    }

    @Test(.timeLimit(.minutes(2)))
    func malformedHTTPAndPeerGarbageLeaveTheNodeUp() async throws {
        try await Cluster.run { cluster in
            let leader = try await cluster.waitForLeader(timeout: .seconds(30))
            let member = cluster.member(leader)
            let http = HTTPClient(port: member.httpPort, timeout: .seconds(5))
            let answer = try http.sendRaw(Array("GARBAGE / NOT-HTTP\r\n\r\n".utf8))
            let text = String(decoding: answer, as: UTF8.self)
            #expect(text.hasPrefix("HTTP/1.1 4"), "\(text)")
            let bad = try await cluster.client(leader).http.send("POST", "/v1/alloc", body: Array("{nope".utf8))
            #expect((400..<500).contains(bad.status))
            let peer = HTTPClient(port: member.listenPort, timeout: .seconds(3))
            _ = try? peer.sendRaw((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 131) })
            _ = try? peer.sendRaw([0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3])
            // Still up, still leading or at least serving, and writes still commit.
            let block = try await cluster.client(leader).alloc(size: 8)
            _ = try await cluster.client(leader).put(block, Self.pattern(7))
            #expect(try await cluster.client(leader).get(block, length: 8) == Self.pattern(7))
        }
    }
}

/// Indices of acknowledged writes, shared between the writer task and the test.
final class Acknowledged: Sendable {
    private let state = Mutex<[Int]>([])
    func add(_ i: Int) { state.withLock { $0.append(i) } }
    var count: Int { state.withLock { $0.count } }
    var all: [Int] { state.withLock { $0 } }
}
