import Gallocy
import GallocyCodec
import Testing

/// Every endpoint of the contract's section 2, happy path, over a real socket: the field names,
/// the hex addresses and the exact integers that clients depend on.
@Suite(.timeLimit(.minutes(1)))
struct HTTPEndpointTests {
    @Test func statusAnswersWithExactlyTheContractFieldsAndNullLeader() async throws {
        try await withHTTPServer { server, _ in
            let response = try await httpRequest(port: server.port, "GET", "/v1/status")
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "application/json")
            let fields = response.object
            #expect(
                Set(fields.keys) == [
                    "id", "role", "term", "leader", "commit_index", "applied_index", "last_index", "snapshot_index",
                    "members",
                ])
            #expect(fields["leader"] == .null)
            #expect(fields["role"] == .string("leader"))
            #expect(fields["commit_index"] == .uint(41))
            #expect(fields["applied_index"] == .uint(40))
            #expect(fields["last_index"] == .uint(42))
            #expect(fields["snapshot_index"] == .uint(7))
            #expect(fields["members"] == .array([.uint(1), .uint(2), .uint(3)]))
        }
    }

    @Test func statusWritesAKnownLeaderAsANumber() async throws {
        try await withHTTPServer { server, service in
            service.setStatus { $0.leader = 2 }
            let response = try await httpRequest(port: server.port, "GET", "/v1/status")
            #expect(response.object["leader"] == .uint(2))
            #expect(response.text.contains("\"leader\":2"))
        }
    }

    @Test func allocAnswersAHexAddressAndFreeReleasesItOnce() async throws {
        try await withHTTPServer { server, service in
            // Fields this version does not know are ignored.
            let alloc = try await httpRequest(
                port: server.port, "POST", "/v1/alloc", json: #"{"size": 64, "hint": {"future": [1, 2]}}"#)
            #expect(alloc.status == 200)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            #expect(addr.hasPrefix("0x"))
            #expect(HexAddress.parse(addr) == 0x7f00_0000_0000)

            let free = try await httpRequest(port: server.port, "POST", "/v1/free", json: #"{"addr": "\#(addr)"}"#)
            #expect(free.status == 200)
            #expect(free.json == .object([:]))
            #expect(free.text == "{}\n")

            let again = try await httpRequest(port: server.port, "POST", "/v1/free", json: #"{"addr": "\#(addr)"}"#)
            #expect(again.status == 404)
            #expect(again.errorCode == "not_allocated")
            #expect(service.calls.contains("alloc(64)"))
        }
    }

    @Test func memoryWriteAnswersIndexAndReadAnswersTheRawBytes() async throws {
        try await withHTTPServer { server, _ in
            let alloc = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 4096}"#)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            let payload: [UInt8] = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) }

            let write = try await httpRequest(port: server.port, "PUT", "/v1/memory/\(addr)", body: payload)
            #expect(write.status == 200)
            #expect(write.object["index"] == .uint(101))

            let read = try await httpRequest(port: server.port, "GET", "/v1/memory/\(addr)?len=300")
            #expect(read.status == 200)
            #expect(read.headers["content-type"] == "application/octet-stream")
            #expect(read.body == payload)

            let empty = try await httpRequest(port: server.port, "GET", "/v1/memory/\(addr)?len=0")
            #expect(empty.status == 200)
            #expect(empty.body.isEmpty)
        }
    }

    @Test func addressesInPathsAcceptEitherCaseOfHex() async throws {
        try await withHTTPServer { server, _ in
            _ = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 16}"#)
            let upper = try await httpRequest(port: server.port, "PUT", "/v1/memory/0X7F0000000008", body: [9, 8])
            #expect(upper.status == 200)
            let lower = try await httpRequest(port: server.port, "GET", "/v1/memory/0x7f0000000008?len=2")
            #expect(lower.body == [9, 8])
        }
    }

    @Test func atomicCasAddAndSwapAnswerOkAndOld() async throws {
        try await withHTTPServer { server, _ in
            let alloc = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 8}"#)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            let path = "/v1/atomic/\(addr)"

            let add = try await httpRequest(port: server.port, "POST", path, json: #"{"op": "add", "value": 5}"#)
            #expect(add.status == 200)
            #expect(add.json == .object(["ok": .bool(true), "old": .uint(0)]))

            let casMiss = try await httpRequest(
                port: server.port, "POST", path, json: #"{"op": "cas", "expect": 4, "value": 9}"#)
            #expect(casMiss.json == .object(["ok": .bool(false), "old": .uint(5)]))

            let casHit = try await httpRequest(
                port: server.port, "POST", path, json: #"{"op": "cas", "expect": 5, "value": 9}"#)
            #expect(casHit.json == .object(["ok": .bool(true), "old": .uint(5)]))

            let swap = try await httpRequest(port: server.port, "POST", path, json: #"{"op": "swap", "value": 1}"#)
            #expect(swap.json == .object(["ok": .bool(true), "old": .uint(9)]))
        }
    }

    @Test func atomicValuesRoundTripUInt64MaxExactly() async throws {
        try await withHTTPServer { server, service in
            let alloc = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 8}"#)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            let path = "/v1/atomic/\(addr)"
            let max = "18446744073709551615"
            let almost = "18446744073709551614"  // differs from max only below double precision

            _ = try await httpRequest(port: server.port, "POST", path, json: #"{"op": "swap", "value": \#(max)}"#)
            let cas = try await httpRequest(
                port: server.port, "POST", path, json: #"{"op": "cas", "expect": \#(max), "value": \#(almost)}"#)
            #expect(cas.json == .object(["ok": .bool(true), "old": .uint(UInt64.max)]))
            #expect(cas.text.contains(max))

            let swap = try await httpRequest(port: server.port, "POST", path, json: #"{"op": "swap", "value": 0}"#)
            #expect(swap.object["old"] == .uint(UInt64.max - 1))
            #expect(swap.text.contains(almost))
            #expect(service.calls.contains("atomic(\(addr), swap(18446744073709551615))"))
        }
    }

    @Test func atomicAddTakesANegativeValueAsItsTwosComplement() async throws {
        try await withHTTPServer { server, _ in
            let alloc = try await httpRequest(port: server.port, "POST", "/v1/alloc", json: #"{"size": 8}"#)
            let addr = try #require(alloc.object["addr"]?.stringValue)
            let path = "/v1/atomic/\(addr)"
            _ = try await httpRequest(port: server.port, "POST", path, json: #"{"op": "add", "value": 10}"#)
            _ = try await httpRequest(port: server.port, "POST", path, json: #"{"op": "add", "value": -3}"#)
            let read = try await httpRequest(port: server.port, "POST", path, json: #"{"op": "add", "value": 0}"#)
            #expect(read.object["old"] == .uint(7))
        }
    }

    @Test func lockAcquireAnswersAnEpochAndReleaseAcknowledges() async throws {
        try await withHTTPServer { server, service in
            let acquire = try await httpRequest(
                port: server.port, "POST", "/v1/locks/jobs%2Fqueue/acquire", json: #"{"ttl_ms": 5000, "wait_ms": 100}"#)
            #expect(acquire.status == 200)
            let epoch = try #require(acquire.object["epoch"]?.uint64Value)
            #expect(service.calls.contains("lockAcquire(jobs/queue, 5000, 100)"))

            let release = try await httpRequest(
                port: server.port, "POST", "/v1/locks/jobs%2Fqueue/release", json: #"{"epoch": \#(epoch)}"#)
            #expect(release.status == 200)
            #expect(release.text == "{}\n")
        }
    }

    @Test func pagesAnswersAJSONArrayOfRowObjects() async throws {
        try await withHTTPServer { server, service in
            let response = try await httpRequest(port: server.port, "GET", "/v1/pages?from=0x2000&count=3")
            #expect(response.status == 200)
            guard case .array(let rows) = response.json else {
                Issue.record("not an array: \(response.text)")
                return
            }
            #expect(rows.count == 3)
            #expect(rows.first?.objectValue?["page"] == .uint(2))
            #expect(rows.first?.objectValue?["version"] == .uint(UInt64.max))
            #expect(rows.last?.objectValue?["addr"] == .string("0x4000"))
            #expect(service.calls.contains("pages(0x2000, 3)"))
        }
    }

    @Test func snapshotAnswersItsIndex() async throws {
        try await withHTTPServer { server, _ in
            let response = try await httpRequest(port: server.port, "POST", "/v1/snapshot")
            #expect(response.status == 200)
            #expect(response.json == .object(["index": .uint(100)]))
        }
    }

    @Test func leaderTransferAndMembershipChangesReachTheService() async throws {
        try await withHTTPServer { server, service in
            let transfer = try await httpRequest(port: server.port, "POST", "/v1/leader/transfer", json: #"{"to": 2}"#)
            #expect(transfer.status == 200)
            #expect(transfer.text == "{}\n")

            let add = try await httpRequest(
                port: server.port, "POST", "/v1/members", json: #"{"add": {"id": 4, "peer": "127.0.0.1:7004"}}"#)
            #expect(add.status == 200)
            let remove = try await httpRequest(port: server.port, "POST", "/v1/members", json: #"{"remove": 3}"#)
            #expect(remove.status == 200)

            let status = try await httpRequest(port: server.port, "GET", "/v1/status")
            #expect(status.object["leader"] == .uint(2))
            #expect(status.object["members"] == .array([.uint(1), .uint(2), .uint(4)]))
            #expect(service.calls.contains("addMember(4, 127.0.0.1:7004)"))
        }
    }

    @Test func metricsAnswersPrometheusText() async throws {
        try await withHTTPServer { server, _ in
            let response = try await httpRequest(port: server.port, "GET", "/metrics")
            #expect(response.status == 200)
            #expect(response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8")
            #expect(response.text.contains("gallocy_term 3"))
        }
    }
}
