import ArgumentParser
import Gallocy

/// `gallocy example <name>` (CONTRACT.md 1.4): workloads that share memory across processes.
/// Each process is a member (the flags of `gallocy node`) and cooperates on one job through the
/// shared heap; it prints one JSON line and exits 0 only if the result it verified is correct.
struct ExampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "example",
        abstract: "Run a shared-memory example as one member of a cluster.",
        discussion: """
            Start one process per member, each with the flags of `gallocy node`. A process killed at \
            any instant and started again with the same flags resumes the job. See docs/examples.md.
            """,
        subcommands: [CounterExampleCommand.self])
}

struct CounterExampleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "counter", abstract: "Increment one shared counter under a lock until it reaches --target.")

    @OptionGroup var flags: NodeFlags
    @Option(help: "The value the counter must reach.") var target: UInt64 = 300
    @Option(name: .customLong("lease-ms"), help: "The lock's lease in milliseconds.") var leaseMillis: Int = 2000

    func validate() throws {
        guard target > 0 else { throw ValidationError("--target must be positive") }
        guard leaseMillis > 0 else { throw ValidationError("--lease-ms must be positive") }
    }

    func run() throws {
        let configuration = try flags.makeConfiguration()
        let participants = 1 + configuration.peers.count
        let target = self.target
        let lease = Duration.milliseconds(leaseMillis)
        let status = ExampleProcess.run(configuration, example: "counter") { member, logger in
            try await CounterExample.run(
                member: member, target: target, participants: participants, lease: lease, logger: logger)
        }
        if status != 0 { throw ExitCode(status) }
    }
}
