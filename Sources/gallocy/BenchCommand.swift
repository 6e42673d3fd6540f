import ArgumentParser

/// `gallocy bench ...`: benchmarks that print figures (never pass/fail on time).
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the layers on this machine and print the figures.",
        subcommands: [
            BenchStorageCommand.self, BenchDiffCommand.self, BenchPageTableCommand.self, BenchClusterCommand.self,
            BenchFaultCommand.self, BenchReleaseCommand.self, BenchAllocCommand.self,
        ]
    )
}
