import ArgumentParser
import Gallocy

/// `gallocy internal lease-stress`: a member running a workload on sequential memory (page
/// leases) for the multi-process tests; see `LeaseStress`. Prints one JSON line like the examples.
struct InternalLeaseStressCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lease-stress", abstract: "Hammer sequential memory without locks (tests).")

    @OptionGroup var flags: NodeFlags
    @Option(help: "sc or hold.") var workload: String = "sc"
    @Option(help: "sc: the members taking part (ids 1...writers).") var writers: Int = 2
    @Option(help: "sc: iterations per member.") var iterations: Int = 100
    @Option(name: .customLong("lease-ms"), help: "The page lease in milliseconds.") var leaseMillis: Int = 2000
    @Option(help: "sc: where to write this member's history.") var history: String?
    @Option(name: .customLong("holder-id"), help: "hold: the member that holds the page.") var holderID: UInt64 = 1
    @Option(help: "hold: how long to run.") var seconds: Double = 10
    @Flag(name: .customLong("no-align"), help: "sc: do not keep the members in step.") var noAlign = false

    func run() throws {
        let configuration = try flags.makeConfiguration()
        let options = LeaseStress.Options(
            workload: workload, writers: writers, iterations: iterations, lease: .milliseconds(leaseMillis),
            historyPath: history, holderID: holderID, seconds: seconds, align: !noAlign)
        let status = ExampleProcess.run(configuration, example: "lease-stress") { member, logger in
            try await LeaseStress.run(member: member, options: options, logger: logger) { line in writeLine(line) }
        }
        if status != 0 { throw ExitCode(status) }
    }
}
