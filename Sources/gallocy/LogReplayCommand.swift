import ArgumentParser
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage
import Glibc

/// `gallocy log replay --data DIR [--to I] [--sql Q] [--json] [--svg FILE]`.
struct LogReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract:
            "Rebuild the page table and heap up to an index with the members' state machine, and show or query it.",
        discussion: """
            Without --sql, prints the page table: the settings, the pages that are not plain zero memory, \
            the allocations, free ranges, locks, barriers and roots. With --sql, runs one read-only query \
            against it (tables: settings, progress, pages, allocations, free_ranges, locks, leases, barriers, \
            barrier_arrivals, roots, members, sessions; see docs/page-table.md).
            """)

    @Option(help: "The member's data directory.") var data: String
    @Option(help: "Replay up to this index (default: the commit index).") var to: UInt64?
    @Option(help: "A read-only SQL query to run against the replayed page table.") var sql: String?
    @Flag(help: "Print one JSON object per row.") var json = false
    @Option(help: "Also draw the heap as a map of pages into this SVG file.") var svg: String?
    @Option(help: "Print at most this many rows per table.") var maxRows: Int = 10_000
    @Flag(help: "Print only the state's digest (what members compare), as JSON with --json.") var digest = false

    /// The tables shown without --sql, in order, with the query that shows each.
    static let sections: [(String, String)] = [
        (
            "settings",
            "SELECT cluster_id, heap_base, heap_size, page_size, bootstrap_index FROM settings ORDER BY company"
        ),
        (
            "pages",
            "SELECT page, heap_base + page * page_size AS address, state, blocks, last_writer, last_write_index, write_count, lease_holder FROM pages JOIN settings USING (company) ORDER BY company, page"
        ),
        ("allocations", "SELECT address, size, member, allocated_index FROM allocations ORDER BY company, address"),
        ("free_ranges", "SELECT address, size FROM free_ranges ORDER BY company, address"),
        ("locks", "SELECT name, holder, epoch, expires_at, granted_index FROM locks ORDER BY company, name"),
        (
            "barriers",
            "SELECT name, participants, arrived, generation, opened_index FROM barriers ORDER BY company, name"
        ),
        (
            "barrier_arrivals",
            "SELECT name, member, arrived_index FROM barrier_arrivals ORDER BY company, name, member"
        ),
        ("roots", "SELECT name, address, set_index FROM roots ORDER BY company, name"),
        ("members", "SELECT id, role, address FROM members ORDER BY company, id"),
    ]

    func run() throws {
        try runLogTool("replay") { () throws(LogToolError) in
            guard maxRows > 0 else { throw LogToolError(.badArgument, "--max-rows must be positive") }
            let directory = try LogDirectory(path: data)
            let bar = LogProgressBar("replaying")
            let replay: LogReplay
            do {
                defer { bar.finish() }
                replay = try LogReplay(directory, to: to, progress: bar.callback)
            }
            if let svg {
                let text = try HeapMapSVG.render(replay)
                try Self.writeFile(svg, text)
            }
            if digest {
                let value = try replay.digest()
                if json {
                    LogOutput.line(
                        JSONValue.object([
                            "applied_index": .uint(value.appliedIndex), "page_table": .uint(UInt64(value.pageTable)),
                            "heap": .uint(UInt64(value.heap)), "combined": .uint(value.combined),
                        ]).jsonText)
                } else {
                    LogOutput.line(value.description)
                }
                return
            }
            if let sql {
                let result = try replay.query(sql, maxRows: maxRows)
                if json {
                    for row in QueryTable.jsonRows(result) { LogOutput.line(row.jsonText) }
                } else {
                    QueryTable.lines(result).forEach(LogOutput.line)
                }
                return
            }
            let stateDigest = try replay.digest()
            if json {
                for (table, query) in Self.sections {
                    let result = try replay.query(query, maxRows: maxRows)
                    for row in QueryTable.jsonRows(result, extra: ["table": .string(table)]) {
                        LogOutput.line(row.jsonText)
                    }
                }
                return
            }
            let origin = replay.startIndex == 0 ? "the start of the log" : "the snapshot at \(replay.startIndex)"
            LogOutput.line(
                "replayed \(directory.path) from \(origin) to index \(replay.index) (\(replay.entriesApplied) entries applied)"
            )
            if replay.index > directory.commitIndex {
                LogOutput.line(
                    "note: past the commit index \(directory.commitIndex): later entries are not committed yet, "
                        + "and a new leader may replace them")
            }
            LogOutput.line("digest: \(stateDigest)")
            func list(_ ids: [UInt64]) -> String { ids.isEmpty ? "none" : ids.map(String.init).joined(separator: ", ") }
            if replay.confStateKnown {
                LogOutput.line("voters: \(list(replay.confState.voters)); learners: \(list(replay.confState.learners))")
            }
            for (index, change) in replay.membershipChanges {
                LogOutput.line("membership change at \(index): \(change.kind) \(change.node)")
            }
            if let svg { LogOutput.line("heap map: \(svg)") }
            for (table, query) in Self.sections {
                LogOutput.line("")
                LogOutput.line("== \(table)")
                QueryTable.lines(try replay.query(query, maxRows: maxRows)).forEach(LogOutput.line)
            }
        }
    }

    static func writeFile(_ path: String, _ text: String) throws(LogToolError) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw LogToolError(.badArgument, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw LogToolError(.badArgument, "writing \(path): \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }
}
