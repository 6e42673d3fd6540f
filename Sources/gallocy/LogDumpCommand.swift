import ArgumentParser
import Foundation
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log dump --data DIR [--from I] [--to I] [--json] [--results]`.
struct LogDumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump", abstract: "Print the log's entries, decoded by type.")

    @Option(help: "The member's data directory.") var data: String
    @Option(help: "The first index to print (default: the first in the log).") var from: UInt64?
    @Option(help: "The last index to print (default: the last in the log).") var to: UInt64?
    @Option(help: "Print only entries of these types, comma-separated (write,alloc,lock_acquire,...).")
    var type: String?
    @Flag(help: "Print one JSON object per entry.") var json = false
    @Flag(help: "Also replay the log and show what each entry did (allocated addresses, lock epochs, rejections).")
    var results = false

    func run() throws {
        try runLogTool("dump") { () throws(LogToolError) in
            let directory = try LogDirectory(path: data)
            let storage = directory.storage
            let first = from ?? storage.firstIndex
            let last = to ?? storage.lastIndex
            guard first <= last else {
                if from != nil || to != nil {
                    throw LogToolError(.badArgument, "--from \(first) is after --to \(last)")
                }
                return  // an empty log
            }
            try directory.checkRange(from: first, through: last)
            let settings = storage.settings
            let indexWidth = max(5, String(last).count)
            if !json {
                LogOutput.line(
                    "INDEX".padded(indexWidth) + "  TERM  " + "TYPE".padded(12) + "  BYTES  DETAILS")
            }
            let types = type.map { Set($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) }
            func emit(_ description: LogEntryDescription) {
                if let types, !types.contains(description.type) { return }
                if json {
                    LogOutput.line(description.json.jsonText)
                } else {
                    LogOutput.line(
                        String(description.index).leftPadded(indexWidth) + "  " + String(description.term).leftPadded(4)
                            + "  " + description.type.padded(12) + "  " + String(description.bytes).leftPadded(5) + "  "
                            + description.summary)
                }
            }
            guard results else {
                try directory.forEachEntry(from: first, through: last) { (entry, size) throws(LogToolError) in
                    emit(LogEntryDescription(entry, storedSize: size, settings: settings))
                }
                return
            }
            // Entries at or below the snapshot were applied before it: no result to show.
            let start = try LogReplay.startIndex(of: directory)
            if first <= start {
                try directory.forEachEntry(from: first, through: min(last, start)) {
                    (entry, size) throws(LogToolError) in
                    emit(LogEntryDescription(entry, storedSize: size, settings: settings))
                }
            }
            guard last > start else { return }
            let bar = LogProgressBar("replaying")
            defer { bar.finish() }
            _ = try LogReplay(directory, to: last, progress: bar.callback) {
                (entry, applied, size) throws(LogToolError) in
                guard entry.index >= first else { return }
                var description = LogEntryDescription(entry, storedSize: size, settings: settings)
                description.addResult(applied.result)
                emit(description)
            }
        }
    }
}

extension String {
    func padded(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
    func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: " ", count: width - count) + self
    }
}
