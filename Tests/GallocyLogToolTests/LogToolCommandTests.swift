import Foundation
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Glibc
import Testing

/// The command-line contract of `gallocy log` (CONTRACT.md 1.3), through the real binary, on the
/// fixtures in `Fixtures/log-v1-*`.
@Suite struct LogToolCommandTests {
    typealias S = LogToolSupport

    @Test func infoJSONHasTheContractFieldsWithTheFixturesValues() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let run = try S.run(["log", "info", "--data", dir, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let info = try #require(try run.jsonLines().first)
        #expect(info["first_index"] == .uint(1))
        #expect(info["last_index"] == .uint(200))
        #expect(info["commit_index"] == .uint(197))
        #expect(info["term"] == .uint(2))
        #expect(info["voted_for"] == .uint(2))
        #expect(info["snapshot_index"] == .uint(0))
        #expect(info["snapshot_term"] == .uint(0))
        #expect(info["members"] == .array([.uint(1), .uint(2), .uint(3), .uint(4)]))
        #expect(info["heap_base"] == .string("0x7f0000000000"))
        #expect(info["heap_size"] == .uint(1 << 20))
        #expect(info["page_size"] == .uint(4096))
    }

    @Test func infoOfASnapshottedDirectoryShowsTheSnapshotAndTheCompactedLog() throws {
        let dir = try S.copyFixture("log-v1-snapshot")
        defer { S.remove(dir) }
        let run = try S.run(["log", "info", "--data", dir, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let info = try #require(try run.jsonLines().first)
        #expect(info["snapshot_index"] == .uint(150))
        #expect(info["first_index"] == .uint(151))
        #expect(info["last_index"] == .uint(240))
        #expect(info["snapshot_term"]?.uint64Value ?? 0 >= 1)
        // The readable form names the same things.
        let text = try S.run(["log", "info", "--data", dir])
        #expect(text.stdout.contains("index 150"))
        #expect(text.stdout.contains("0x7f0000000000"))
    }

    @Test func votedForIsNullWhenNobodyWasVotedFor() throws {
        let dir = try S.temporaryDirectory() + "/data"
        defer { S.remove(dir) }
        do {
            let storage = try RaftStorage(path: dir)
            try storage.persist(hardState: .init(term: 3, vote: 0, commit: 0))
        }
        let run = try S.run(["log", "info", "--data", dir, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let info = try #require(try run.jsonLines().first)
        #expect(info["voted_for"] == .null)
        #expect(info["heap_base"] == .null)
    }

    @Test func dumpJSONPrintsOneObjectPerEntryInIndexOrderDecodedByType() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let run = try S.run(["log", "dump", "--data", dir, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let entries = try run.jsonLines()
        #expect(entries.count == 200)
        let known: Set<String> = [
            "bootstrap", "noop", "alloc", "free", "write", "atomic", "lock_acquire", "lock_release", "lock_expire",
            "barrier", "set_root", "conf_change", "empty", "undecodable",
        ]
        var types = Set<String>()
        for (k, entry) in entries.enumerated() {
            #expect(entry["index"] == .uint(UInt64(k + 1)))
            #expect(entry["term"]?.uint64Value != nil)
            #expect((entry["bytes"]?.uint64Value ?? 0) >= 23)
            let type = try #require(entry["type"]?.stringValue)
            #expect(known.contains(type))
            types.insert(type)
            switch type {
            case "write":
                let pages = try #require(entry["pages"]?.arrayValue)
                #expect(!pages.isEmpty)
                for page in pages {
                    #expect(page["page"]?.uint64Value != nil)
                    #expect((page["compressed"]?.uint64Value ?? 0) > 0)
                    #expect((page["raw"]?.uint64Value ?? 0) > 0)
                }
            case "alloc":
                #expect((entry["size"]?.uint64Value ?? 0) > 0)
                #expect(entry["member"]?.uint64Value != nil)
            case "lock_acquire":
                #expect(entry["name"]?.stringValue != nil)
            case "lock_release", "lock_expire":
                #expect(entry["epoch"]?.uint64Value != nil)
            case "conf_change":
                #expect(entry["change"]?.stringValue != nil)
                #expect(entry["node"] == .uint(4))
            default:
                break
            }
        }
        #expect(entries[0]["type"] == .string("bootstrap"))
        #expect(entries[1]["type"] == .string("empty"))
        for type in ["alloc", "free", "write", "atomic", "lock_acquire", "conf_change", "barrier", "set_root"] {
            #expect(types.contains(type), "the fixture has no \(type) entry")
        }
    }

    @Test func dumpHonoursFromAndToAndResultsShowAllocationAddresses() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let run = try S.run(["log", "dump", "--data", dir, "--from", "3", "--to", "5", "--json", "--results"])
        #expect(run.status == 0, "\(run.stderr)")
        let entries = try run.jsonLines()
        #expect(entries.map { $0["index"] } == [.uint(3), .uint(4), .uint(5)])
        #expect(entries[0]["result"]?["address"] == .string("0x7f0000000000"))
        let changes = try S.run(["log", "dump", "--data", dir, "--type", "conf_change", "--json"]).jsonLines()
        #expect(changes.map { $0["change"] } == [.string("add_learner"), .string("add_voter")])
        let table = try S.run(["log", "dump", "--data", dir, "--to", "4"])
        #expect(table.lines.count == 5)
        #expect(table.lines[0].hasPrefix("INDEX"))
    }

    @Test func verifyExitsZeroOnIntactDirectories() throws {
        for fixture in ["log-v1-small", "log-v1-snapshot"] {
            let dir = try S.copyFixture(fixture)
            defer { S.remove(dir) }
            let run = try S.run(["log", "verify", "--data", dir])
            #expect(run.status == 0, "\(fixture): \(run.stderr)")
            #expect(run.stdout.hasPrefix("intact"))
        }
    }

    @Test func verifyNamesTheCorruptedIndexAndExitsNonZero() throws {
        let dir = try S.copyFixture("log-v1-corrupt")
        defer { S.remove(dir) }
        let run = try S.run(["log", "verify", "--data", dir])
        #expect(run.status == 1)
        #expect(run.firstErrorLine.contains("log entry 57"), "\(run.stderr)")
        // The other commands stop at the same entry, after what is good before it.
        let dump = try S.run(["log", "dump", "--data", dir, "--json"])
        #expect(dump.status == 1)
        #expect(dump.firstErrorLine.contains("log entry 57"))
        #expect(try dump.jsonLines().count == 56)
        let replay = try S.run(["log", "replay", "--data", dir])
        #expect(replay.status == 1)
        #expect(replay.firstErrorLine.contains("57"))
        // Up to the entry before it, the state can still be rebuilt.
        #expect(try S.run(["log", "replay", "--data", dir, "--to", "56", "--sql", "SELECT 1"]).status == 0)
    }

    @Test func missingAndForeignDirectoriesGiveClearErrors() throws {
        let missing = try S.run(["log", "info", "--data", "/nonexistent/gallocy-data"])
        #expect(missing.status == 2)
        #expect(missing.firstErrorLine.contains("/nonexistent/gallocy-data"))
        #expect(missing.firstErrorLine.contains("no such data directory"))
        let empty = try S.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: empty) }
        for command in ["info", "dump", "verify", "replay"] {
            let run = try S.run(["log", command, "--data", empty])
            #expect(run.status == 2, "\(command)")
            #expect(run.firstErrorLine.contains("is not a Gallocy data directory"), "\(command): \(run.stderr)")
            #expect(!run.stderr.contains("Fatal error"))
        }
        let file = empty + "/file"
        _ = FileManager.default.createFile(atPath: file, contents: Data("x".utf8))
        let notDirectory = try S.run(["log", "info", "--data", file])
        #expect(notDirectory.status == 2)
        #expect(notDirectory.firstErrorLine.contains("is not a directory"))
    }

    @Test func replaySQLAnswersWhoLastWroteAPage() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        // The answer from the dump: the last applied write touching page 1 up to index 150.
        let dump = try S.run(["log", "dump", "--data", dir, "--to", "150", "--json", "--results"]).jsonLines()
        var lastWriter: UInt64?
        for entry in dump where entry["type"] == .string("write") && entry["result"]?["outcome"] == .string("written") {
            if entry["pages"]?.arrayValue?.contains(where: { $0["page"] == .uint(1) }) == true {
                lastWriter = entry["member"]?.uint64Value
            }
        }
        let expected = try #require(lastWriter)
        let run = try S.run([
            "log", "replay", "--data", dir, "--to", "150", "--json", "--sql",
            "SELECT last_writer FROM pages WHERE page = 1",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = try run.jsonLines()
        #expect(rows.count == 1)
        #expect(rows.first?["last_writer"]?.uint64Value == expected)
    }

    @Test func replaySQLAnswersWhichLocksWereLiveAtAnIndex() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let at: UInt64 = 100
        let dump = try S.run(["log", "dump", "--data", dir, "--to", "\(at)", "--json", "--results"]).jsonLines()
        var held: [String: UInt64] = [:]
        for entry in dump {
            let outcome = entry["result"]?["outcome"]?.stringValue
            let name = entry["name"]?.stringValue ?? entry["release_lock"]?.stringValue
            switch outcome {
            case "lock_granted": held[name ?? ""] = entry["member"]?.uint64Value
            case "lock_released", "lock_expired": held[name ?? ""] = nil
            case "written" where entry["result"]?["released_lock"] == .bool(true): held[name ?? ""] = nil
            default: break
            }
        }
        let run = try S.run([
            "log", "replay", "--data", dir, "--to", "\(at)", "--json", "--sql",
            "SELECT name, holder FROM locks WHERE holder IS NOT NULL ORDER BY name",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = try run.jsonLines()
        let live = Dictionary(
            uniqueKeysWithValues: rows.map { ($0["name"]?.stringValue ?? "", $0["holder"]?.uint64Value ?? 0) })
        #expect(live == held)
    }

    @Test func replaySQLAnswersWhichBlocksMember3Allocated() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let dump = try S.run(["log", "dump", "--data", dir, "--to", "197", "--json", "--results"]).jsonLines()
        var blocks = Set<String>()
        for entry in dump {
            if entry["type"] == .string("alloc"), entry["member"] == .uint(3),
                let address = entry["result"]?["address"]?.stringValue
            {
                blocks.insert(address)
            }
            if entry["type"] == .string("free"), entry["result"]?["outcome"] == .string("freed"),
                let address = entry["address"]?.stringValue
            {
                blocks.remove(address)
            }
        }
        #expect(!blocks.isEmpty)
        let run = try S.run([
            "log", "replay", "--data", dir, "--sql",
            "SELECT printf('0x%x', address) AS hex, size FROM allocations WHERE member = 3 ORDER BY address", "--json",
        ])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(Set(try run.jsonLines().compactMap { $0["hex"]?.stringValue }) == blocks)
        // The readable table shows addresses in hex.
        let table = try S.run([
            "log", "replay", "--data", dir, "--sql", "SELECT address, size FROM allocations WHERE member = 3",
        ])
        #expect(table.lines[0].hasPrefix("address"))
        #expect(table.stdout.contains("0x7f"))
    }

    @Test func replayRefusesWritingSQLAndIndexesBeforeTheSnapshot() throws {
        let dir = try S.copyFixture("log-v1-snapshot")
        defer { S.remove(dir) }
        let write = try S.run(["log", "replay", "--data", dir, "--sql", "DELETE FROM pages"])
        #expect(write.status == 5)
        #expect(write.firstErrorLine.contains("read-only"))
        let early = try S.run(["log", "replay", "--data", dir, "--to", "100"])
        #expect(early.status == 4)
        #expect(early.firstErrorLine.contains("snapshot at 150"))
        let defaultTables = try S.run(["log", "replay", "--data", dir])
        #expect(defaultTables.status == 0, "\(defaultTables.stderr)")
        #expect(defaultTables.stdout.contains("from the snapshot at 150 to index 237"))
        #expect(defaultTables.stdout.contains("== pages"))
        #expect(defaultTables.stdout.contains("== locks"))
    }

    @Test func replayDigestIsTheStateMachinesDigestAndRepeats() throws {
        let dir = try S.copyFixture("log-v1-snapshot")
        defer { S.remove(dir) }
        let first = try S.run(["log", "replay", "--data", dir, "--digest"])
        let second = try S.run(["log", "replay", "--data", dir, "--digest"])
        #expect(first.status == 0, "\(first.stderr)")
        #expect(first.stdout == second.stdout)
        #expect(first.stdout == "index 237 table 8d672b43 heap d4627c5b\n")
        let json = try #require(try S.run(["log", "replay", "--data", dir, "--digest", "--json"]).jsonLines().first)
        #expect(json["applied_index"]?.uint64Value == 237)
        #expect(json["page_table"]?.uint64Value == 0x8d67_2b43)
        #expect(json["heap"]?.uint64Value == 0xd462_7c5b)
    }

    @Test func replayDrawsTheHeapAsAnSVGMapWithALegend() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let svg = (dir as NSString).deletingLastPathComponent + "/heap.svg"
        let run = try S.run(["log", "replay", "--data", dir, "--svg", svg, "--sql", "SELECT 1"])
        #expect(run.status == 0, "\(run.stderr)")
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        #expect(text.hasPrefix("<svg"))
        #expect(text.contains("last written by member"))
        #expect(text.contains(">free<"))
        #expect(text.components(separatedBy: "<rect").count - 1 >= 256)
    }

    @Test func exportWritesHeapSizeBytesMatchingTheReplayedHeap() throws {
        let dir = try S.copyFixture("log-v1-snapshot")
        defer { S.remove(dir) }
        let out = (dir as NSString).deletingLastPathComponent + "/heap.bin"
        let run = try S.run(["log", "export", "--data", dir, "--to", "200", "--out", out])
        #expect(run.status == 0, "\(run.stderr)")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
        #expect(bytes.count == 1 << 20)
        let replay = try LogReplay(try LogDirectory(path: dir), to: 200)
        let heap = try #require(replay.machine.heap)
        let expected = try heap.read(address: heap.settings.heapBase, length: heap.size)
        #expect(bytes == expected)
        #expect(bytes.contains { $0 != 0 })
    }

    @Test func diffFindsTheFirstIndexWhereTwoLogsDiffer() throws {
        let a = try S.copyFixture("log-v1-small")
        let b = try S.copyFixture("log-v1-diverged")
        defer {
            S.remove(a)
            S.remove(b)
        }
        let run = try S.run(["log", "diff", "--data", a, "--data", b, "--json"])
        #expect(run.status == 1)
        #expect(run.firstErrorLine.contains("index 121"))
        let report = try #require(try run.jsonLines().first)
        #expect(report["first_log_difference"] == .uint(121))
        #expect(report["first_state_difference"] == .uint(121))
        let c = try S.copyFixture("log-v1-small")
        defer { S.remove(c) }
        let same = try S.run(["log", "diff", "--data", a, "--data", c])
        #expect(same.status == 0, "\(same.stderr)")
        #expect(same.stdout.contains("identical"))
        let one = try S.run(["log", "diff", "--data", a])
        #expect(one.status != 0)
    }

    @Test func infoWorksBesideAProcessHoldingTheDirectoryLock() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: try S.gallocyBinary())
        holder.arguments = ["internal", "hold-lock", "--data", dir, "--seconds", "30"]
        let out = Pipe()
        holder.standardOutput = out
        try holder.run()
        defer {
            // SIGKILL: the holder sleeps, and the kernel drops its lock however it ends.
            _ = Glibc.kill(holder.processIdentifier, SIGKILL)
            holder.waitUntilExit()
        }
        let line = String(decoding: out.fileHandleForReading.availableDataUntilNewline(), as: UTF8.self)
        #expect(line.hasPrefix("locked"))
        let info = try S.run(["log", "info", "--data", dir, "--json"])
        #expect(info.status == 0, "\(info.stderr)")
        #expect(try info.jsonLines().first?["last_index"] == .uint(200))
        let verify = try S.run(["log", "verify", "--data", dir])
        #expect(verify.status == 0, "\(verify.stderr)")
        #expect(holder.isRunning)
        // The lock is still held: a writer would still be refused.
        #expect(throws: StorageError.self) { _ = try RaftStorage(path: dir) }
    }

    @Test func infoAndReplayWorkBesideAWriterThatKeepsAppending() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let storage = try RaftStorage(path: dir)
        let before = try S.run(["log", "info", "--data", dir, "--json"])
        #expect(before.status == 0, "\(before.stderr)")
        #expect(try before.jsonLines().first?["last_index"] == .uint(200))
        // The writer carries on undisturbed, and a new reader sees what it wrote.
        try storage.persist(
            entries: [.init(term: 2, index: 201), .init(term: 2, index: 202)],
            hardState: .init(term: 2, vote: 2, commit: 202))
        let after = try S.run(["log", "info", "--data", dir, "--json"])
        #expect(try after.jsonLines().first?["last_index"] == .uint(202))
        let replay = try S.run([
            "log", "replay", "--data", dir, "--sql", "SELECT applied_index FROM progress", "--json",
        ])
        #expect(replay.status == 0, "\(replay.stderr)")
        #expect(try replay.jsonLines().first?["applied_index"]?.uint64Value == 202)
        try storage.persist(entries: [.init(term: 2, index: 203)], hardState: .init(term: 2, vote: 2, commit: 203))
        #expect(storage.lastIndex == 203)
    }
}

extension FileHandle {
    /// Reads until a newline (or end of file).
    func availableDataUntilNewline() -> Data {
        var data = Data()
        while true {
            let chunk = readData(ofLength: 1)
            if chunk.isEmpty || chunk == Data([0x0A]) { return data }
            data.append(chunk)
        }
    }
}

/// The progress bar: on stderr only when stderr is a terminal.
@Suite struct LogToolProgressTests {
    typealias S = LogToolSupport

    @Test func theProgressBarAppearsOnATerminalAndNeverInAPipe() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        let piped = try S.run(["log", "replay", "--data", dir, "--sql", "SELECT 1"])
        #expect(piped.status == 0)
        #expect(piped.stderr.isEmpty)
        // `script` gives the child a pseudo-terminal (util-linux); skip where it is missing.
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/script") else { return }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/script")
        let command = "'\(try S.gallocyBinary())' log replay --data '\(dir)' --sql 'SELECT 1' >/dev/null"
        process.arguments = ["-qec", command, "/dev/null"]
        let out = Pipe()
        process.standardOutput = out
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationStatus == 0)
        #expect(text.contains("replaying ["), "\(text)")
        #expect(text.contains("197/197 entries"))
    }
}
