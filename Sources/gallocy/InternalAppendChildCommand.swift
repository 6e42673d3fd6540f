import ArgumentParser
import GallocyRaft
import GallocyStorage

/// `gallocy internal append-child --data DIR --seed S`: performs `StorageWorkload(seed: S)` on
/// the data directory, one durable storage call per step, and after each one prints
/// `ack <step> <lastIndex> <term> <checksum>`. The crash-safety test kills it with SIGKILL at a
/// random instant and checks that everything acknowledged is on disk.
struct InternalAppendChildCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "append-child", abstract: "Append to a log until killed.")

    @Option(help: "The data directory.") var data: String
    @Option(help: "The workload's seed.") var seed: UInt64
    @Option(help: "Initial LMDB map size in bytes (small, so that the map grows under the workload).")
    var mapSize: Int = 256 << 10
    @Option(help: "Snapshot chunk size in bytes (small, so that a snapshot takes many chunks).")
    var snapshotChunkSize: Int = 64 << 10
    @Option(help: "Stop after this many steps (default: run until killed).") var steps: Int = .max

    func run() throws {
        do {
            let storage = try RaftStorage(
                path: data, options: .init(mapSize: mapSize, snapshotChunkSize: snapshotChunkSize))
            var workload = StorageWorkload(seed: seed)
            while workload.stepsTaken < steps {
                let step = workload.next()
                try StorageWorkload.perform(step, on: storage)
                writeLine(
                    "ack \(workload.stepsTaken) \(workload.model.lastIndex) \(workload.model.hardState.term) \(StorageWorkload.checksum(of: step))"
                )
            }
        } catch {
            throw InternalFailure(message: error.message)
        }
    }
}
