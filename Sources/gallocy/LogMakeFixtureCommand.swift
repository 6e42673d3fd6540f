import ArgumentParser
import Gallocy
import GallocyCodec
import GallocyRaft
import GallocyStateMachine
import GallocyStorage

/// `gallocy log make-fixture --out DIR --seed S ...`: writes a data directory for tests and for
/// `Fixtures/` (see Fixtures/make-log-fixtures.sh). Hidden from help.
struct LogMakeFixtureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-fixture", abstract: "Write a realistic data directory for tests.", shouldDisplay: false)

    @Option(help: "The directory to create.") var out: String
    @Option(help: "The seed of the generator.") var seed: UInt64 = 1
    @Option(help: "How many entries to write.") var entries: Int = 200
    @Option(help: "Snapshot the state at this index and compact the log through it.") var snapshotAt: UInt64?
    @Option(help: "Draw the entries from this index on from another random stream.") var divergeAt: UInt64?
    @Option(help: "Then flip a byte of the stored entry at this index.") var corruptIndex: UInt64?

    func run() throws {
        try runLogTool("make-fixture") { () throws(LogToolError) in
            let summary = try LogFixture.write(
                to: out, options: .init(seed: seed, entries: entries, snapshotAt: snapshotAt, divergeAt: divergeAt))
            if let corruptIndex { try LogFixture.corrupt(path: out, index: corruptIndex) }
            LogFixture.removeLockFiles(path: out)
            LogOutput.line(
                "wrote \(out): entries up to \(summary.lastIndex), commit \(summary.commitIndex), snapshot \(summary.snapshotIndex), digest at commit: \(summary.digestAtCommit)"
                    + (corruptIndex.map { ", entry \($0) corrupted" } ?? ""))
        }
    }
}
