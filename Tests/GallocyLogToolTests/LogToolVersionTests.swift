import Foundation
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStorage
import Testing

/// Records of a version this build does not read are named as such, never misread.
@Suite struct LogToolVersionTests {
    typealias S = LogToolSupport

    /// Puts `value` under `key` in database `name` of the directory, through the raw LMDB API.
    private func put(_ value: [UInt8], key: [UInt8], database name: String, in dir: String) throws {
        let environment = try LMDBEnvironment(path: dir, configuration: .init(mapSize: 1 << 20, maxDatabases: 4))
        let database = try environment.openDatabase(name, create: false)
        try environment.write { txn in try txn.put(value, forKey: key, in: database) }
    }

    @Test func aDirectoryOfAnUnknownLayoutVersionIsRefusedNamingTheVersion() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        // "GALLOCYD" | u16 layout version 2 | crc32c: a directory written by a future build.
        var record = Array("GALLOCYD".utf8) + [2, 0]
        let crc = CRC32C.checksum(record)
        record += (0..<4).map { UInt8(truncatingIfNeeded: crc >> (8 * UInt32($0))) }
        try put(record, key: Array("format".utf8), database: "meta", in: dir)
        for command in ["info", "dump", "replay"] {
            let run = try S.run(["log", command, "--data", dir])
            #expect(run.status == 3, "\(command): \(run.stderr)")
            #expect(run.firstErrorLine.contains("layout version 2"), "\(command): \(run.stderr)")
        }
        let verify = try S.run(["log", "verify", "--data", dir])
        #expect(verify.status != 0)
        #expect(verify.firstErrorLine.contains("version"), "\(verify.stderr)")
    }

    @Test func anEntryOfAnUnknownVersionIsNamedByIndex() throws {
        let dir = try S.copyFixture("log-v1-small")
        defer { S.remove(dir) }
        // Entry 30 rewritten with format version 2 in byte 0 (and a checksum that fits it).
        let entry = try LogDirectory(path: dir).storage.entry(at: 30)
        var bytes = EntryCodec.encode(entry)
        bytes[0] = 2
        let body = Array(bytes.dropLast(4))
        let crc = CRC32C.checksum(body)
        bytes = body + (0..<4).map { UInt8(truncatingIfNeeded: crc >> (8 * UInt32($0))) }
        let key: [UInt8] = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(30) >> (56 - 8 * UInt64($0))) }
        try put(bytes, key: key, database: "log", in: dir)
        let verify = try S.run(["log", "verify", "--data", dir])
        #expect(verify.status == 1)
        #expect(verify.firstErrorLine.contains("log entry 30"), "\(verify.stderr)")
        #expect(verify.firstErrorLine.contains("unknownVersion"), "\(verify.stderr)")
        let dump = try S.run(["log", "dump", "--data", dir, "--json"])
        #expect(dump.status == 1)
        #expect(dump.firstErrorLine.contains("log entry 30"))
        #expect(try dump.jsonLines().count == 29)
    }

    @Test func replayWithoutSQLPrintsEveryTableAsJSONRows() throws {
        let dir = try S.copyFixture("log-v1-snapshot")
        defer { S.remove(dir) }
        let run = try S.run(["log", "replay", "--data", dir, "--json"])
        #expect(run.status == 0, "\(run.stderr)")
        let rows = try run.jsonLines()
        let tables = Set(rows.compactMap { $0["table"]?.stringValue })
        #expect(tables.isSuperset(of: ["settings", "pages", "allocations", "free_ranges", "locks"]))
        #expect(rows.first { $0["table"] == .string("settings") }?["page_size"]?.uint64Value == 4096)
    }
}
