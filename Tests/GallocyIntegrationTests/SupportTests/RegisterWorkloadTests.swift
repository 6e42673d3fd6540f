import Foundation
import Synchronization
import Testing

/// The workload, recorder and checker together against fake members that share one in-memory
/// heap of words over HTTP: a correct fake gives a linearizable history; a member that serves
/// stale reads is caught.
@Suite struct RegisterWorkloadTests {
    /// The shared words of the fake members, and a stale copy that `staleMember` reads from.
    final class FakeHeap: Sendable {
        private let words = Mutex<(current: [UInt64: UInt64], stale: [UInt64: UInt64], writes: Int)>(([:], [:], 0))

        func handle(_ request: TinyHTTPServer.Request, stale: Bool) -> TinyHTTPServer.Reply {
            let path = request.path
            if path.hasPrefix("/v1/memory/") {
                let addressText = path.dropFirst("/v1/memory/".count).split(separator: "?").first.map(String.init) ?? ""
                guard let address = NodeClient.parseHex(addressText) else {
                    return .json(400, #"{"error":"bad address","code":"bad_request"}"#)
                }
                if request.method == "PUT" {
                    guard request.body.count == 8 else { return .json(400, #"{"error":"size","code":"bad_request"}"#) }
                    let value = request.body.enumerated().reduce(UInt64(0)) {
                        $0 | UInt64($1.element) << (8 * UInt64($1.offset))
                    }
                    let index = words.withLock { state -> Int in
                        state.current[address] = value
                        state.writes += 1
                        // The stale copy catches up only now and then, like a lagging follower.
                        if state.writes % 7 == 0 { state.stale = state.current }
                        return state.writes
                    }
                    return .json(200, #"{"index":\#(index)}"#)
                }
                let value = words.withLock { stale ? $0.stale[address, default: 0] : $0.current[address, default: 0] }
                return .answer(status: 200, body: (0..<8).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64($0))) })
            }
            if path.hasPrefix("/v1/atomic/"),
                let address = NodeClient.parseHex(String(path.dropFirst("/v1/atomic/".count))),
                let body = try? JSONDecoder().decode(JSONValue.self, from: Data(request.body)),
                body["op"] == .string("cas"), let expect = body["expect"]?.unsigned, let value = body["value"]?.unsigned
            {
                let (ok, old) = words.withLock { state -> (Bool, UInt64) in
                    let old = state.current[address, default: 0]
                    if old == expect { state.current[address] = value }
                    return (old == expect, old)
                }
                return .json(200, #"{"ok":\#(ok),"old":\#(old)}"#)
            }
            return .json(404, #"{"error":"no such endpoint","code":"not_found"}"#)
        }
    }

    /// Fake members on the HTTP ports of a cluster whose processes are never started.
    static func withFakeMembers(
        staleMember: Int?, _ body: (Cluster) async throws -> Void
    ) async throws {
        let cluster = try Cluster(Cluster.Options(size: 3, proxied: false))
        defer { cluster.shutdown() }
        let heap = FakeHeap()
        let servers = try cluster.ids.map { id in
            try TinyHTTPServer(port: cluster.member(id).httpPort) { heap.handle($0, stale: id == staleMember) }
        }
        defer { for server in servers { server.stop() } }
        try await body(cluster)
    }

    @Test func correctMembersGiveALinearizableHistory() async throws {
        try await Self.withFakeMembers(staleMember: nil) { cluster in
            var workload = RegisterWorkload(addresses: [0x1000, 0x1008])
            workload.clients = 5
            workload.operationsPerClient = 60
            let history = await workload.run(on: cluster)
            #expect(history.count == 300)
            #expect(history.allSatisfy { if case .ok = $0.outcome { return true } else { return false } })
            let report = LinearizabilityChecker.checkRegisters(history, initial: UInt64(0))
            #expect(report.verdict.isLinearizable, "\(report)")
        }
    }

    @Test func aMemberServingStaleReadsIsCaught() async throws {
        try await Self.withFakeMembers(staleMember: 3) { cluster in
            var workload = RegisterWorkload(addresses: [0x1000])
            workload.clients = 4
            workload.operationsPerClient = 80
            workload.readPercent = 50
            workload.writePercent = 40
            let history = await workload.run(on: cluster)
            let report = LinearizabilityChecker.checkRegisters(history, initial: UInt64(0))
            #expect(report.verdict.isViolation, "\(report)")
        }
    }

    @Test func unreachableMembersGiveFailedOperations() async throws {
        // Nothing listens on the members' ports: every request fails to connect, so every
        // operation definitely did not happen, and the empty effective history is linearizable.
        let cluster = try Cluster(Cluster.Options(size: 2, proxied: false))
        defer { cluster.shutdown() }
        var workload = RegisterWorkload(addresses: [0x1000])
        workload.operationsPerClient = 10
        workload.requestTimeout = .seconds(2)
        let history = await workload.run(on: cluster)
        #expect(history.count == 40)
        #expect(history.allSatisfy { $0.outcome == .failed })
        #expect(LinearizabilityChecker.checkRegisters(history, initial: UInt64(0)).verdict.isLinearizable)
    }
}
