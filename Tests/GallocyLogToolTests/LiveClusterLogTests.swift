import Foundation
import Gallocy
import GallocyStateMachine
import Glibc
import Testing

/// The log tool on the data directories of a live three-member cluster of real `gallocy node`
/// processes: `info` and `verify` beside the running members; after they stop, every member's
/// replayed state at the commit index is the same, `diff` finds nothing, and the exported heap
/// holds the bytes the members served over HTTP.
///
/// Needs a `gallocy` with the `node` command (the one next to the tests once the engine is in, or
/// `GALLOCY_NODE_BIN`) and `curl`; without them the test returns early and says so.
@Suite struct LiveClusterLogTests {
    typealias S = LogToolSupport

    static func nodeBinary() -> String? {
        let candidates = [ProcessInfo.processInfo.environment["GALLOCY_NODE_BIN"], try? S.gallocyBinary()].compactMap {
            $0
        }
        for path in candidates {
            // `gallocy node --help` would print the top-level help where there is no `node`:
            // look for the subcommand in the list instead.
            let probe = Process()
            probe.executableURL = URL(fileURLWithPath: path)
            probe.arguments = ["--help"]
            let out = Pipe()
            probe.standardOutput = out
            probe.standardError = FileHandle.nullDevice
            guard (try? probe.run()) != nil else { continue }
            let help = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            probe.waitUntilExit()
            if help.contains("\n  node ") { return path }
        }
        return nil
    }

    /// A port nobody listens on now (bound to 0, then closed).
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length)
                return getsockname(fd, pointer, &length)
            }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// `curl` with `arguments`; its stdout.
    static func curl(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["-s", "--max-time", "15"] + arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    @Test(.timeLimit(.minutes(3))) func everyMembersReplayedStateAgreesAndHoldsWhatTheMembersServed() throws {
        guard let node = Self.nodeBinary(), FileManager.default.isExecutableFile(atPath: "/usr/bin/curl") else {
            print("LiveClusterLogTests: no gallocy with a node command (or no curl); set GALLOCY_NODE_BIN to run it")
            return
        }
        let base = try S.temporaryDirectory("live")
        defer { try? FileManager.default.removeItem(atPath: base) }
        let peerPorts = (1...3).map { _ in Self.freePort() }
        let httpPorts = (1...3).map { _ in Self.freePort() }
        var members: [Process] = []
        defer {
            for member in members where member.isRunning {
                _ = Glibc.kill(member.processIdentifier, SIGKILL)
                member.waitUntilExit()
            }
        }
        for id in 1...3 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: node)
            var arguments = [
                "node", "--id", "\(id)", "--data", "\(base)/d\(id)", "--listen", "127.0.0.1:\(peerPorts[id - 1])",
                "--http", "127.0.0.1:\(httpPorts[id - 1])", "--heap-size", "16M", "--snapshot-every", "40",
            ]
            for other in 1...3 where other != id {
                arguments += ["--peer", "\(other)=127.0.0.1:\(peerPorts[other - 1])"]
            }
            process.arguments = arguments
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            members.append(process)
        }
        let http = httpPorts.map { "http://127.0.0.1:\($0)" }
        // Wait for a leader: an allocation succeeds once the cluster is bootstrapped.
        var address = ""
        for _ in 0..<100 {
            let answer = try Self.curl(["-X", "POST", "\(http[0])/v1/alloc", "-d", "{\"size\": 64}"])
            if let value = try? JSONParser.parse(answer)["addr"]?.stringValue {
                address = value
                break
            }
            usleep(100_000)
        }
        #expect(!address.isEmpty, "the cluster never answered an allocation")
        guard !address.isEmpty else { return }
        for k in 0..<60 {
            _ = try Self.curl(["-X", "PUT", "--data-binary", "value \(k)", "\(http[k % 3])/v1/memory/\(address)"])
        }
        let served = try Self.curl(["\(http[1])/v1/memory/\(address)?len=8"])
        #expect(served == "value 59")
        // Beside the running members: read-only, nothing disturbed.
        for id in 1...3 {
            let info = try S.run(["log", "info", "--data", "\(base)/d\(id)", "--json"])
            #expect(info.status == 0, "\(info.stderr)")
            let verify = try S.run(["log", "verify", "--data", "\(base)/d\(id)"])
            #expect(verify.status == 0, "\(verify.stderr)")
        }
        let status = try JSONParser.parse(try Self.curl(["\(http[0])/v1/status"]))
        #expect(status["role"]?.stringValue != nil)
        // What the running members report for the written page, to compare with the replays.
        let reported = try (0..<3).map { k -> [String: JSONValue] in
            let answer = try JSONParser.parse(try Self.curl(["\(http[k])/v1/pages?from=\(address)&count=1"]))
            guard case .array(let rows) = answer, let row = rows.first?.objectValue else {
                throw LiveClusterError("member \(k + 1) answered /v1/pages with \(answer)")
            }
            return row
        }
        for member in members {
            _ = Glibc.kill(member.processIdentifier, SIGTERM)
            member.waitUntilExit()
        }
        var digests: [String] = []
        for id in 1...3 {
            let digest = try S.run(["log", "replay", "--data", "\(base)/d\(id)", "--digest"])
            #expect(digest.status == 0, "\(digest.stderr)")
            digests.append(digest.stdout)
        }
        #expect(Set(digests).count == 1, "\(digests)")
        // Each member's replayed page table holds the row its running member reported.
        let columns = ["page", "state", "blocks", "last_writer", "last_write_index", "write_count"]
        for id in 1...3 {
            let row = reported[id - 1]
            let page = try #require(row["page"]?.uint64Value)
            let sql = "SELECT \(columns.joined(separator: ", ")) FROM pages WHERE page = \(page)"
            let replay = try S.run(["log", "replay", "--data", "\(base)/d\(id)", "--sql", sql, "--json"])
            #expect(replay.status == 0, "\(replay.stderr)")
            let replayed = try #require(try replay.jsonLines().first?.objectValue, "no row for page \(page)")
            for column in columns {
                #expect(replayed[column] == row[column], "member \(id), \(column): replayed \(String(describing: replayed[column])), reported \(String(describing: row[column]))")
            }
            #expect(row["write_count"]?.uint64Value == 60)
        }
        let diff = try S.run(["log", "diff", "--data", "\(base)/d1", "--data", "\(base)/d3"])
        #expect(diff.status == 0, "\(diff.stdout)\(diff.stderr)")
        // The exported heap holds what the members served.
        let out = base + "/heap.bin"
        #expect(try S.run(["log", "export", "--data", "\(base)/d2", "--out", out]).status == 0)
        let heap = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        let info = try #require(try S.run(["log", "info", "--data", "\(base)/d2", "--json"]).jsonLines().first)
        let heapBase = try #require(info["heap_base"]?.stringValue.flatMap { HexAddress.parse($0) })
        let offset = Int(try #require(HexAddress.parse(address)) - heapBase)
        #expect(heap.count == Int(info["heap_size"]?.uint64Value ?? 0))
        #expect(Array(heap[offset..<offset + 8]) == Array("value 59".utf8))
    }
}

private struct LiveClusterError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
